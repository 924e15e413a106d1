"""Routing rules (spec section 6): strict loading, an index, shadow detection.

Rules are evaluated top to bottom and the first match wins; no match is a
denial. A rule set is validated strictly when it loads (an unknown match key
or operator would make a rule broader than it reads), compiled into per-field
bitsets so that finding the first match costs a handful of integer ANDs
whatever the number of rules, and checked once for shadowed rules with the
same bitsets, never per request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from ._yaml import load_document
from .errors import RuleError
from .models import DataLabel, Env, Escalation, PreconditionsChecked, QoSClass, TenantRisk

__all__ = [
    "MATCH_FIELDS",
    "CandidateSpec",
    "Rule",
    "RuleDecision",
    "RuleSet",
    "canonical_control",
    "detect_shadow_rules",
    "load_rule_set",
    "load_rules",
    "load_rules_from_dict",
    "route_first_match",
]

#: Match keys in index order, with the closed set of values where there is one.
_ENUMS: dict[str, tuple[str, ...] | None] = {
    "capability_id": None,
    "env": get_args(Env),
    "data_label": get_args(DataLabel),
    "tenant_risk": get_args(TenantRisk),
    "qos_class": get_args(QoSClass),
    "tenant_id": None,
}
MATCH_FIELDS: tuple[str, ...] = tuple(_ENUMS)
_OPERATORS = ("in", "any")
_RULE_KEYS = {"rule_id", "match", "decision", "description"}
_FILE_KEYS = {"rules", "version", "description"}


def canonical_control(control_id: str) -> str:
    """One spelling per control: legacy ``_`` ids equal their ``-`` form."""
    return control_id.replace("_", "-")


BLAST_CONTROL = canonical_control("ctrl.blast_radius_scoring")
PRIVILEGE_CONTROL = canonical_control("ctrl.privilege_envelopes_required")


class CandidateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Printable: ids from configuration reach events without further cleaning.
    worker_species_id: str = Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$")
    score_hint: float | None = None
    requires_controls_minimum: tuple[str, ...] | None = None


class RuleDecision(BaseModel):
    """A rule's ``decision`` block, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate_workers_ranked: tuple[CandidateSpec, ...] = ()
    required_controls_suggested: tuple[str, ...] = ()
    recommended_profiles: tuple[Any, ...] = ()
    escalation: Escalation = Field(default_factory=Escalation)
    preconditions: PreconditionsChecked = Field(default_factory=PreconditionsChecked)
    max_blast_score: StrictInt | None = Field(default=None, ge=0, le=100)

    @field_validator("required_controls_suggested")
    @classmethod
    def _controls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for control in value:
            if not control.startswith("ctrl."):
                raise ValueError(f"control ids start with 'ctrl.', got {control!r}")
        return value

    @cached_property  # frozen model: computed once per rule
    def required_controls(self) -> frozenset[str]:
        return frozenset(canonical_control(c) for c in self.required_controls_suggested)


@dataclass(frozen=True, eq=False)
class Rule:
    """One routing rule, as written. Construct freely; a RuleSet validates it."""

    rule_id: str
    match: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)


_Accepts = tuple[frozenset[str] | None, ...]


@dataclass(frozen=True)
class _Compiled:
    rule: Rule
    decision: RuleDecision
    #: Per match field: None for "anything", else the frozenset of accepted values.
    accepts: _Accepts
    #: ``escalation.human_required_if``, each condition compiled like ``match``.
    human_if: tuple[_Accepts, ...] = ()


def _fail(
    message: str, *, source: str | None, rule_id: str | None, index: int, fix: str
) -> RuleError:
    where = f"rules[{index}]" + (f" (rule_id: {rule_id})" if rule_id else "")
    return RuleError(message, file=source, location=where, fix=fix)


def _compile_condition(
    key: str,
    cond: Any,
    *,
    source: str | None,
    rule_id: str,
    index: int,
    where: str = "match",
) -> frozenset[str] | None:
    allowed = _ENUMS[key]

    def check_value(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise _fail(
                f"{where}.{key}: expected a non-empty string, got {value!r}",
                source=source,
                rule_id=rule_id,
                index=index,
                fix=f'write {key}: "<value>"',
            )
        if allowed is not None and value not in allowed:
            raise _fail(
                f"{where}.{key}: {value!r} is not one of {', '.join(allowed)}",
                source=source,
                rule_id=rule_id,
                index=index,
                fix="use one of the listed values",
            )
        return value

    if isinstance(cond, dict):
        unknown = set(cond) - set(_OPERATORS)
        if unknown or len(cond) != 1:
            raise _fail(
                f"{where}.{key}: unknown or combined operator(s) {sorted(cond)}",
                source=source,
                rule_id=rule_id,
                index=index,
                fix='use a plain value, {"in": [...]} or {"any": true}',
            )
        if "any" in cond:
            if cond["any"] is not True:
                raise _fail(
                    f"{where}.{key}: 'any' must be true",
                    source=source,
                    rule_id=rule_id,
                    index=index,
                    fix="write {any: true} or drop the key",
                )
            return None
        values = cond["in"]
        if not isinstance(values, list) or not values:
            raise _fail(
                f"{where}.{key}: 'in' needs a non-empty list",
                source=source,
                rule_id=rule_id,
                index=index,
                fix="list the accepted values",
            )
        accepted = frozenset(check_value(v) for v in values)
        # "in" every value of a closed set is the same as "any".
        return None if allowed is not None and accepted >= set(allowed) else accepted
    return frozenset((check_value(cond),))


def _compile_rule(rule: Rule, *, source: str | None, index: int) -> _Compiled:
    rule_id = rule.rule_id
    if not isinstance(rule_id, str) or not rule_id.strip() or not rule_id.isprintable():
        raise _fail(
            "rule_id must be a non-empty printable string",
            source=source,
            rule_id=None,
            index=index,
            fix="give every rule a unique rule_id",
        )
    if not isinstance(rule.match, dict):
        raise _fail(
            "match must be a mapping",
            source=source,
            rule_id=rule_id,
            index=index,
            fix="write match: {capability_id: ...}",
        )
    accepts = _compile_match(rule.match, source=source, rule_id=rule_id, index=index)
    if not isinstance(rule.decision, dict):
        raise _fail(
            "decision must be a mapping",
            source=source,
            rule_id=rule_id,
            index=index,
            fix="write decision: {candidate_workers_ranked: [...]}",
        )
    try:
        decision = RuleDecision.model_validate(rule.decision)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _fail(
            f"decision.{where}: {first['msg']}",
            source=source,
            rule_id=rule_id,
            index=index,
            fix="see the rule format in docs/reference.md#rule-files",
        ) from None
    escalation = decision.escalation
    if escalation.msavx_step_up:
        raise _fail(
            "decision.escalation.msavx_step_up: step-up is not supported; the call would "
            "run without it",
            source=source,
            rule_id=rule_id,
            index=index,
            fix="hold such calls for a person: human_required_default or human_required_if",
        )
    human_if = tuple(
        _compile_match(
            condition,
            source=source,
            rule_id=rule_id,
            index=index,
            where=f"decision.escalation.human_required_if[{at}]",
        )
        for at, condition in enumerate(escalation.human_required_if)
    )
    return _Compiled(rule=rule, decision=decision, accepts=accepts, human_if=human_if)


def _compile_match(
    match: dict[str, Any],
    *,
    source: str | None,
    rule_id: str,
    index: int,
    where: str = "match",
) -> _Accepts:
    """A ``match`` mapping (or a condition of the same form), per field of MATCH_FIELDS."""
    unknown = set(match) - set(MATCH_FIELDS)
    if unknown:
        raise _fail(
            f"unknown {where} key(s): {', '.join(sorted(unknown))}",
            source=source,
            rule_id=rule_id,
            index=index,
            fix=f"use only {', '.join(MATCH_FIELDS)}",
        )
    return tuple(
        _compile_condition(
            key, match[key], source=source, rule_id=rule_id, index=index, where=where
        )
        if key in match
        else None
        for key in MATCH_FIELDS
    )


def _accepted(accepts: _Accepts, values: Sequence[Any], start: int = 0) -> bool:
    """Whether field ``values`` (MATCH_FIELDS order) meet ``accepts`` from ``start`` on."""
    for at in range(start, len(accepts)):
        accepted, value = accepts[at], values[at]
        if accepted is not None and not (isinstance(value, str) and value in accepted):
            return False
    return True


class RuleSet(Sequence[Rule]):
    """An ordered, validated, indexed and shadow-checked set of rules.

    A ``RuleSet`` is a read-only sequence of ``Rule``, so code written for the
    reference's ``list[Rule]`` iterates it unchanged.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        source: str | None = None,
        origins: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        """``origins``: each rule's file and index there, when the set spans files."""
        compiled: list[_Compiled] = []
        seen: dict[str, tuple[str | None, int]] = {}
        for index, rule in enumerate(rules):
            file, at = origins[index] if origins is not None else (source, index)
            item = _compile_rule(rule, source=file, index=at)
            if item.rule.rule_id in seen:
                first_file, first_at = seen[item.rule.rule_id]
                where = f"{first_file}: " if first_file and first_file != file else ""
                raise _fail(
                    f"duplicate rule_id (first at {where}rules[{first_at}])",
                    source=file,
                    rule_id=item.rule.rule_id,
                    index=at,
                    fix="give every rule a unique rule_id",
                )
            seen[item.rule.rule_id] = (file, at)
            compiled.append(item)
        self.source = source
        self._compiled = tuple(compiled)
        self._rules = tuple(c.rule for c in compiled)
        self._index = self._build_index()
        self._all = (1 << len(compiled)) - 1
        self.shadowed: tuple[dict[str, str], ...] = self._find_shadowed()

    @cached_property
    def digest(self) -> str:
        """``sha256:`` over every rule's id, match and decision, in order: an approval is
        bound to it, so that editing the rules (not only the policies) invalidates it."""
        from .canonical import digest

        return digest(
            [{"rule_id": r.rule_id, "match": r.match, "decision": r.decision} for r in self]
        )

    # -- Sequence -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rules)

    def __getitem__(self, index):  # type: ignore[override]
        return self._rules[index]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({len(self)} rules, source={self.source!r})"

    # -- index -----------------------------------------------------------------
    def _build_index(self) -> tuple[tuple[dict[str, int], int], ...]:
        """Per field: (value -> bitset of rules accepting it, bitset of wildcard rules)."""
        index = []
        for position, key in enumerate(MATCH_FIELDS):
            wild = 0
            specific: dict[str, int] = {}
            for bit, item in enumerate(self._compiled):
                accepted = item.accepts[position]
                if accepted is None:
                    wild |= 1 << bit
                else:
                    for value in accepted:
                        specific[value] = specific.get(value, 0) | (1 << bit)
            values = set(specific) | set(_ENUMS[key] or ())
            index.append(({v: specific.get(v, 0) | wild for v in values}, wild))
        return tuple(index)

    def first_match_index(self, values: Sequence[Any]) -> int | None:
        """Position of the first rule matching field values in ``MATCH_FIELDS`` order."""
        bits = self._all
        for at, ((by_value, wild), value) in enumerate(zip(self._index, values, strict=True)):
            bits &= by_value.get(value, wild) if isinstance(value, str) else wild
            if not bits & (bits - 1):
                # None or one rule left: check the one directly rather than go on
                # and-ing bitsets as wide as the rule set.
                return self._sole_match(bits, values, at + 1)
        return (bits & -bits).bit_length() - 1

    def _sole_match(self, bits: int, values: Sequence[Any], start: int) -> int | None:
        if not bits:
            return None
        position = bits.bit_length() - 1
        return position if _accepted(self._compiled[position].accepts, values, start) else None

    def first_match(self, inp: Mapping[str, Any]) -> Rule | None:
        position = self.first_match_index([inp.get(k) for k in MATCH_FIELDS])
        return None if position is None else self._rules[position]

    def decision_of(self, position: int) -> RuleDecision:
        return self._compiled[position].decision

    def asks_attestation_in_prod(self) -> bool:
        """Whether any rule's preconditions ask for worker attestation in prod/edge."""
        return any(
            c.decision.preconditions.deny_if_no_attestation_in_prod
            or c.decision.preconditions.deny_if_unsigned_artifact_in_prod
            for c in self._compiled
        )

    def human_required_if(self, position: int, values: Sequence[Any]) -> bool:
        """Whether a condition of that rule's ``escalation.human_required_if`` holds."""
        return any(_accepted(c, values) for c in self._compiled[position].human_if)

    # -- shadowing -------------------------------------------------------------
    def _find_shadowed(self) -> tuple[dict[str, str], ...]:
        """Each rule that an earlier rule covers on every field, with its first shadower."""
        found = []
        for bit, item in enumerate(self._compiled):
            earlier = (1 << bit) - 1
            for (by_value, wild), key, accepted in zip(
                self._index, MATCH_FIELDS, item.accepts, strict=True
            ):
                if not earlier:
                    break
                if accepted is None:
                    closed = _ENUMS[key]
                    # Only rules that accept every possible value cover a wildcard.
                    if closed is None:
                        earlier &= wild
                    else:
                        for value in closed:
                            earlier &= by_value[value]
                else:
                    for value in accepted:
                        earlier &= by_value[value]
            if earlier:
                shadower = self._rules[(earlier & -earlier).bit_length() - 1]
                found.append(
                    {
                        "shadower": shadower.rule_id,
                        "shadowed": item.rule.rule_id,
                        "reason": f"rule '{shadower.rule_id}' matches every input that "
                        f"'{item.rule.rule_id}' matches, so '{item.rule.rule_id}' is never reached",
                    }
                )
        return tuple(found)

    @property
    def shadowed_rule_ids(self) -> list[str]:
        return [w["shadowed"] for w in self.shadowed]


# -- loading -------------------------------------------------------------------


def _rules_from_document(doc: Any, source: str | None) -> list[Rule]:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleError(
            "expected a mapping with a `rules` list",
            file=source,
            fix='write {"rules": [{rule_id, match, decision}, ...]}',
        )
    unknown = set(doc) - _FILE_KEYS
    if unknown:
        raise RuleError(
            f"unknown top-level key(s): {', '.join(sorted(unknown))}",
            file=source,
            fix="only `rules`, `version` and `description` are allowed",
        )
    rules = []
    for index, raw in enumerate(doc["rules"]):
        if not isinstance(raw, dict):
            raise _fail(
                "a rule must be a mapping",
                source=source,
                rule_id=None,
                index=index,
                fix="write {rule_id, match, decision}",
            )
        rule_id = raw.get("rule_id") if isinstance(raw.get("rule_id"), str) else None
        extra = set(raw) - _RULE_KEYS
        if extra:
            raise _fail(
                f"unknown rule key(s): {', '.join(sorted(extra))}",
                source=source,
                rule_id=rule_id,
                index=index,
                fix="only rule_id, match, decision and description are allowed",
            )
        if "rule_id" not in raw:
            raise _fail(
                "rule_id is missing",
                source=source,
                rule_id=None,
                index=index,
                fix="give every rule a unique rule_id",
            )
        rules.append(
            Rule(
                rule_id=raw["rule_id"], match=raw.get("match", {}), decision=raw.get("decision", {})
            )
        )
    return rules


def load_rules_from_dict(doc: Mapping[str, Any], *, source: str | None = None) -> RuleSet:
    """Validate and compile ``{"rules": [...]}``; raises ``RuleError``."""
    return RuleSet(_rules_from_document(doc, source), source=source)


def load_rules(path: str | Path) -> RuleSet:
    """Load one JSON or YAML rule file strictly; raises ``RuleError`` naming file and rule."""
    source = str(path)
    return RuleSet(_rules_from_document(load_document(path), source), source=source)


def load_rule_set(paths: Iterable[str | Path]) -> RuleSet:
    """Load several rule files as one ordered set (files in the given order)."""
    rules: list[Rule] = []
    sources = []
    origins: list[tuple[str, int]] = []
    for path in paths:
        found = _rules_from_document(load_document(path), str(path))
        rules.extend(found)
        origins.extend((str(path), index) for index in range(len(found)))
        sources.append(str(path))
    return RuleSet(rules, source=", ".join(sources) or None, origins=origins)


# -- compatibility with code that passes a plain list -------------------------------

_cache_lock = threading.Lock()
_cache: dict[tuple[int, ...], tuple[tuple[Rule, ...], RuleSet]] = {}


def as_rule_set(rules: Sequence[Rule]) -> RuleSet:
    """A RuleSet for ``rules``: itself, or a compiled copy cached by rule identity."""
    if isinstance(rules, RuleSet):
        return rules
    key = tuple(map(id, rules))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit[1]
    compiled = RuleSet(rules)
    with _cache_lock:
        if len(_cache) >= 16:
            _cache.pop(next(iter(_cache)))
        _cache[key] = (tuple(rules), compiled)  # keeps the rules alive, so ids stay unique
    return compiled


def route_first_match(rules: Sequence[Rule], inp: Mapping[str, Any]) -> Rule | None:
    """The first rule matching ``inp`` (a RouteInput as a dict), or None: fail closed."""
    return as_rule_set(rules).first_match(inp)


def detect_shadow_rules(rules: Sequence[Rule]) -> list[dict[str, str]]:
    """Rules an earlier rule makes unreachable: ``[{shadower, shadowed, reason}]``."""
    return list(as_rule_set(rules).shadowed)
