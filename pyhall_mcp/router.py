"""``make_decision``: the Hall's pipeline (spec section 8).

Pure: no disk, no network; the only inputs are the arguments (plus the clock
and a random source for ids, which determinism excludes). Each stage is a
small function over one ``_Call`` that either returns or raises ``_Deny``;
``_deny`` is the single place a denial is built. ``make_decision`` never
raises: whatever a rule, a registry callback or a policy gate does, the answer
is a decision.
"""

from __future__ import annotations

import hashlib
import operator
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import telemetry as evt
from .canonical import canonical_json, is_plain_json, sorted_json
from .credentials import CredentialError, verify_credential
from .errors import report_failure
from .models import (
    CandidateWorker,
    Escalation,
    HallConfig,
    PreconditionsChecked,
    RouteDecision,
    RouteInput,
)
from .registry import Registry, WorkerRecord, is_sha256_hex, worker_blast_score
from .rules import (
    BLAST_CONTROL,
    MATCH_FIELDS,
    PRIVILEGE_CONTROL,
    RuleDecision,
    RuleSet,
    as_rule_set,
    canonical_control,
)

__all__ = ["GATE_DECISIONS", "blast_heuristic", "make_decision"]

GATE_DECISIONS = frozenset({"ALLOW", "DENY", "REQUIRE_HUMAN"})
_PROD = frozenset({"prod", "edge"})
_DEFAULT_CONFIG = HallConfig()
# Frozen, so one instance can stand in every decision that matched no rule.
_NO_ESCALATION = Escalation()
_NO_PRECONDITIONS = PreconditionsChecked()
_NONE: frozenset[str] = frozenset()
_M = TypeVar("_M", bound=BaseModel)


class _Deny(Exception):
    """Raised by a stage to stop the pipeline with a denial."""

    def __init__(self, code: str, message: str, held: bool = False, **details: Any) -> None:
        self.code = code
        self.message = message
        self.held = held
        self.details = details


def blast_heuristic(inp: RouteInput) -> int:
    """The reference's request heuristic (spec section 8), 10..100."""
    score = 10 + {"INTERNAL": 20, "RESTRICTED": 40}.get(inp.data_label, 0)
    if inp.env in _PROD:
        score += 15
    if inp.qos_class == "P0":
        score += 10
    request = inp.request
    if request.get("egress") or request.get("external_call"):
        score += 15
    if request.get("writes") or request.get("mutates_state"):
        score += 15
    return min(100, score)


def _uuid4() -> str:
    """A random (version 4) UUID string; twice as fast as ``str(uuid.uuid4())``."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_match_values = operator.itemgetter(*MATCH_FIELDS)


class _Call:
    """Everything one decision knows, filled in stage by stage.

    Defaults live on the class, so a call only pays for what its stages set.
    """

    rule_id = "PRE_ROUTING"
    decision: RuleDecision | None = None
    required: frozenset[str] = frozenset()
    escalation = _NO_ESCALATION
    preconditions = _NO_PRECONDITIONS
    selected: WorkerRecord | str | None = None
    missing: Sequence[str] = ()
    blast_score: int | None = None
    blast_passed: bool | None = None
    policy_version: str | None = None
    gate_reason = "no_gate_required"
    privilege_ok: bool | None = None
    attestation_checked = False
    attestation_valid: bool | None = None
    supervisor_level: str | None = None
    hold: _Deny | None = None  # a hold, raised once the later stages pass
    chain_blast = 0
    human_approved = False
    human_if = False  # a condition of the rule's escalation.human_required_if holds
    task_id = "task_default"
    tool: str | None = None

    def __init__(self, inp: RouteInput, rules: RuleSet, config: HallConfig, when: datetime) -> None:
        self.inp = inp
        self.rules = rules
        self.config = config
        self.when = when
        self.timestamp = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
        self.decision_id = _uuid4()
        # What every event of this decision starts with. Ids from the caller are
        # cleaned of control characters once, here; ids from configuration (rules,
        # records) are refused at load if not printable.
        self.base = {
            "event_id": None,
            "timestamp": self.timestamp,
            "correlation_id": evt.sanitize_id(inp.correlation_id),
            "tenant_id": evt.sanitize_id(inp.tenant_id),
            "capability_id": evt.sanitize_id(inp.capability_id),
        }
        self.candidates: list[CandidateWorker] = []
        self.events: list[dict[str, Any]] = []

    @property
    def species(self) -> str | None:
        selected = self.selected
        return selected.worker_species_id if isinstance(selected, WorkerRecord) else selected

    @property
    def worker_id(self) -> str | None:
        selected = self.selected
        return selected.worker_id if isinstance(selected, WorkerRecord) else None


# -- the registry as the router sees it ----------------------------------------------


class _View:
    """One interface over a ``Registry`` and/or the reference's callables."""

    __slots__ = ("available", "pinned", "pooled", "registry")

    def __init__(
        self,
        registry: Registry | None,
        controls: set[str] | None,
        available: Callable[[str], bool] | None,
        pinned: str | None,
    ) -> None:
        self.registry = registry
        # Without a registry, no controls set means no control is present (fail closed).
        self.pooled = frozenset(map(canonical_control, controls)) if controls else _NONE
        self.available = available
        self.pinned = pinned

    def resolve(
        self, species: str, env: str, required: frozenset[str], enforce: bool
    ) -> tuple[WorkerRecord | str | None, str | None, frozenset[str]]:
        """(worker or species, skip reason, missing controls) for one ranked candidate."""
        if self.registry is None:
            try:
                ok = bool(self.available is not None and self.available(species))
            except Exception:
                ok = False
            missing = required - self.pooled
            return (species if ok else None), (None if ok else "unavailable"), missing
        reason, missing = "unavailable", frozenset[str]()
        for record in self.registry.of_species(species):
            if self.pinned is not None and record.worker_id != self.pinned:
                reason = "not_the_called_tool" if reason == "unavailable" else reason
                continue
            if not self.registry.is_available(record) or not self._callable_ok(species):
                continue
            if env not in record.allowed_environments:
                reason = "env_not_allowed"
                continue
            lacking = required - self.registry.controls_of(record)
            if lacking and enforce:
                reason, missing = "missing_controls", lacking
                continue
            return record, None, lacking
        return None, reason, missing

    def _callable_ok(self, species: str) -> bool:
        if self.available is None:
            return True
        try:
            return bool(self.available(species))
        except Exception:
            return False


# -- stages (spec section 8, in order) --------------------------------------------------


def _check_tenant(call: _Call) -> None:
    inp, config = call.inp, call.config
    if config.require_signatory and inp.tenant_id not in config.allowed_tenants:
        raise _Deny(
            "DENY_UNKNOWN_TENANT",
            "Tenant is not a registered signatory of this hall.",
            tenant_id=evt.sanitize_id(inp.tenant_id),
        )
    if config.require_credential:
        try:
            verify_credential(
                inp.tenant_credential,
                tenant_id=inp.tenant_id,
                issuers=config.credential_issuers,
                now=int(call.when.timestamp()),
            )
        except CredentialError as exc:
            raise _Deny("DENY_INVALID_CREDENTIAL", f"Tenant credential refused: {exc}.") from None
    if not inp.tenant_id or not inp.tenant_id.strip():
        raise _Deny("DENY_MISSING_TENANT_ID", "tenant_id is required and must not be blank.")


def _check_input(call: _Call) -> None:
    score = call.inp.blast_score
    if score is not None and not 0 <= score <= 100:
        raise _Deny("DENY_INVALID_INPUT", "blast_score must be in [0, 100].", blast_score=score)


def _check_shadowing(call: _Call) -> None:
    if call.inp.env in _PROD and call.rules.shadowed:
        raise _Deny(
            "DENY_SHADOW_RULES_DETECTED",
            "The rule set contains shadowed rules; prod and edge refuse to route on it.",
            shadowed_rule_ids=call.rules.shadowed_rule_ids,
        )


def _match_rule(call: _Call) -> None:
    inp = call.inp
    values = _match_values(inp.__dict__)
    position = call.rules.first_match_index(values)
    if position is None:
        call.rule_id = "NO_MATCH"
        raise _Deny("DENY_NO_MATCHING_RULE", "No routing rule matched; the hall fails closed.")
    decision = call.rules.decision_of(position)
    call.rule_id = call.rules[position].rule_id
    call.decision = decision
    call.required = decision.required_controls
    call.escalation = decision.escalation
    call.preconditions = decision.preconditions
    call.human_if = bool(decision.escalation.human_required_if) and call.rules.human_required_if(
        position, values
    )


def _check_correlation(call: _Call) -> None:
    if (call.preconditions.must_have_correlation_id or call.config.enforce_correlation_id) and (
        not call.inp.correlation_id.strip()
    ):
        raise _Deny(
            "DENY_MISSING_CORRELATION_ID", "correlation_id is required and must not be blank."
        )


def _resolve_candidates(call: _Call, view: _View) -> None:
    """Rank candidates (pure); denials for them come later, in spec order."""
    assert call.decision is not None
    enforce = call.preconditions.deny_if_missing_required_controls or (
        call.config.enforce_required_controls
    )
    first_missing: frozenset[str] | None = None
    for spec in call.decision.candidate_workers_ranked:
        required = call.required
        if spec.requires_controls_minimum:
            required = required | {canonical_control(c) for c in spec.requires_controls_minimum}
        found, reason, missing = view.resolve(
            spec.worker_species_id, call.inp.env, required, enforce
        )
        if found is not None and call.selected is not None:
            reason = "already_selected"
        elif found is not None:
            call.selected = found
        if reason == "missing_controls" and first_missing is None:
            first_missing = missing
        if view.registry is None and missing and first_missing is None:
            first_missing = missing
        call.candidates.append(
            _construct(
                CandidateWorker,
                {
                    "worker_species_id": spec.worker_species_id,
                    "score_hint": spec.score_hint,
                    "requires_controls_minimum": list(spec.requires_controls_minimum)
                    if spec.requires_controls_minimum is not None
                    else None,
                    "skip_reason": reason,
                    "worker_id": found.worker_id if isinstance(found, WorkerRecord) else None,
                },
            )
        )
    if first_missing and enforce and (view.registry is None or call.selected is None):
        call.missing = sorted(first_missing)


def _check_controls(call: _Call) -> None:
    if call.missing:
        raise _Deny(
            "DENY_MISSING_REQUIRED_CONTROLS",
            "Required controls are not implemented by any candidate worker.",
            missing=call.missing,
        )


def _hold(call: _Call, code: str, message: str, **details: Any) -> None:
    """Hold the call for a person, once every later stage has passed (``_check_hold``):
    a call that is denied anyway is denied, not put to an operator to approve in vain."""
    if call.hold is None:
        call.hold = _Deny(code, message, held=True, **details)


def _check_hold(call: _Call) -> None:
    if call.hold is not None:
        call.supervisor_level = call.escalation.supervisor_level or "gatekeeper"
        raise call.hold


def _check_blast(call: _Call) -> None:
    """Score every routed call; gate where spec section 8 puts a gate.

    The score is evidence in every env: every routed decision and its receipt say
    how large the call was, and chains add up the same way everywhere. The gate
    holds prod/edge calls at the threshold when the hall enforces it or the rule
    requires blast scoring, and any call over its rule's ``max_blast_score``.
    """
    inp, config, decision = call.inp, call.config, call.decision
    assert decision is not None
    worker = call.selected if isinstance(call.selected, WorkerRecord) else None
    own = max(
        blast_heuristic(inp),
        worker_blast_score(inp.blast_radius) if inp.blast_radius else 0,
        worker.blast_radius.score() if worker is not None and worker.blast_radius else 0,
        inp.blast_score or 0,
    )
    # Blast adds up along a chain of calls sharing a correlation id (spec section 8).
    score = min(100, own + call.chain_blast)
    call.blast_score = score
    ceiling = decision.max_blast_score
    over = (
        inp.env in _PROD
        and (config.enforce_blast_scoring_in_prod or BLAST_CONTROL in call.required)
        and score >= config.blast_gate_threshold
    ) or (ceiling is not None and score > ceiling)
    call.blast_passed = not over or call.human_approved
    if over and not call.human_approved:
        _hold(
            call,
            "DENY_REQUIRES_HUMAN",
            "Blast radius is too high for autonomous execution; a person must approve.",
            blast_score=score,
        )


def _gate_context(call: _Call) -> dict[str, Any]:
    inp = call.inp
    worker = call.selected if isinstance(call.selected, WorkerRecord) else None
    return {
        "capability_id": inp.capability_id,
        "tenant_id": inp.tenant_id,
        "env": inp.env,
        "data_label": inp.data_label,
        "tenant_risk": inp.tenant_risk,
        "qos_class": inp.qos_class,
        "worker_id": worker.worker_id if worker else None,
        "worker_species_id": call.species,
        "worker_risk_tier": worker.risk_tier if worker else None,
        "blast_score": call.blast_score,
        # Unpinned routes (pyhall route) still name the selected worker's tool.
        "tool": call.tool or (worker.tool.name if worker and worker.tool else None),
        "request": inp.request,
        "policy_version": inp.policy_version,
    }


def _check_policy(call: _Call, gate: Any) -> None:
    if call.escalation.policy_gate or call.config.enforce_policy_gate:
        if gate is None:
            raise _Deny(
                "DENY_POLICY_GATE_UNCONFIGURED",
                "A policy gate is required here but none is configured.",
            )
        evaluate = gate.evaluate if hasattr(gate, "evaluate") else gate
        try:
            result = evaluate(_gate_context(call))
        except Exception as exc:
            report_failure("policy gate", exc)
            raise _Deny(
                "DENY_INTERNAL_ERROR", "The policy gate failed; the hall fails closed."
            ) from None
        if (
            not isinstance(result, (tuple, list))
            or len(result) != 3
            or result[0] not in GATE_DECISIONS
            or not isinstance(result[2], str)
            or not isinstance(result[1], (str, type(None)))
        ):
            raise _Deny(
                "DENY_POLICY_GATE_INVALID_RESPONSE",
                "The policy gate answered something other than ALLOW, DENY or "
                "REQUIRE_HUMAN; the hall fails closed.",
            )
        verdict = result[0]
        call.policy_version = evt.sanitize_id(result[1])
        call.gate_reason = evt.sanitize_id(result[2])
        if verdict == "DENY":
            raise _Deny(
                "DENY_POLICY_GATE",
                f"Policy denied the call: {call.gate_reason}.",
                reason=call.gate_reason,
                policy_version=call.policy_version,
            )
        if verdict == "REQUIRE_HUMAN" and not call.human_approved:
            _hold(
                call,
                "DENY_REQUIRES_HUMAN_APPROVAL",
                f"Policy requires a person to approve this call: {call.gate_reason}.",
                reason=call.gate_reason,
                policy_version=call.policy_version,
            )
    escalation = call.escalation
    if (escalation.human_required_default or call.human_if) and not call.human_approved:
        why = "human_required_default" if escalation.human_required_default else "human_required_if"
        _hold(
            call,
            "DENY_REQUIRES_HUMAN_APPROVAL",
            "The matched rule requires a person to approve this call.",
            reason=escalation.rationale or why,
        )


def _check_worker(call: _Call) -> None:
    if call.selected is None:
        raise _Deny(
            "DENY_NO_AVAILABLE_WORKER",
            "No candidate worker is available (enrolled, allowed in this env, "
            "implementing the required controls).",
        )


def _check_attestation(call: _Call, view: _View, registered_fn: Any, current_fn: Any) -> None:
    # The floor asks for it everywhere; a rule's preconditions can ask for it in prod/edge
    # (the reference records those two and enforces neither).
    pre = call.preconditions
    in_prod = call.inp.env in _PROD and (
        pre.deny_if_no_attestation_in_prod or pre.deny_if_unsigned_artifact_in_prod
    )
    if not (call.config.require_worker_attestation or in_prod):
        return
    call.attestation_checked = True
    worker_id, species = call.worker_id, call.species
    registered: Any = None
    current_reader: Callable[[], Any] | None = None
    if registered_fn is not None and current_fn is not None:
        registered = _quietly(registered_fn, species)
        current_reader = partial(current_fn, species)
    elif view.registry is not None and worker_id is not None:
        pair = view.registry.attestation_of(worker_id)
        if pair is not None:
            registered, current_reader = pair
    else:
        raise _Deny(
            "DENY_ATTESTATION_UNCONFIGURED",
            "Worker attestation is required but no attestation source is configured.",
        )
    if registered is None:
        raise _Deny(
            "DENY_WORKER_ATTESTATION_MISSING", "The selected worker has no verified attestation."
        )
    if not is_sha256_hex(registered):
        raise _Deny(
            "DENY_WORKER_ATTESTATION_INVALID_HASH",
            "The selected worker's registered digest is not a SHA-256 hex digest.",
        )
    current = _quietly(current_reader) if current_reader is not None else None
    if not is_sha256_hex(current):
        raise _Deny(
            "DENY_WORKER_HASH_UNAVAILABLE",
            "The selected worker's current digest could not be computed.",
        )
    if current != registered:
        call.attestation_valid = False
        # Never return either hash: that would tell an attacker the target.
        raise _Deny(
            "DENY_WORKER_TAMPERED",
            "The selected worker's package changed since it was attested.",
            worker_species_id=species,
        )
    call.attestation_valid = True


def _check_privilege(call: _Call, view: _View, get_envelope: Any, allows: Any) -> None:
    registry = view.registry
    worker = call.selected if isinstance(call.selected, WorkerRecord) else None
    # A tool that names files (path_arguments) is always held to its envelope:
    # confinement is not left to a floor or a rule.
    names_files = (
        worker is not None and worker.tool is not None and bool(worker.tool.path_arguments)
    )
    if not (
        PRIVILEGE_CONTROL in call.required or call.config.enforce_privilege_envelopes or names_files
    ):
        return
    if get_envelope is None and registry is not None:

        def get_envelope(_species: str) -> Any:
            if worker is not None:
                envelope = worker.privilege_envelope
                return envelope.model_dump() if envelope is not None else None
            return registry.get_privilege_envelope(_species)

    if allows is None and registry is not None:
        allows = registry.policy_allows_privilege
    if get_envelope is None or allows is None:
        raise _Deny(
            "DENY_PRIVILEGE_ENVELOPE_UNCONFIGURED",
            "A privilege envelope check is required but not configured.",
        )
    argument = None
    try:
        envelope = get_envelope(call.species)
        ok, reason = allows(call.inp.env, call.inp.data_label, envelope)
        if ok and names_files:
            assert registry is not None and worker is not None  # a WorkerRecord came from it
            # Resolving the paths is I/O, reached through the registry like a worker's
            # current hash; the resolved paths stay out of the decision and its messages.
            named = registry.files_named(worker, call.inp.request)
            ok, reason, argument = registry.filesystem_allows(envelope, named)
    except Exception:
        report_failure("privilege check")
        raise _Deny(
            "DENY_INTERNAL_ERROR", "The privilege envelope check failed; the hall fails closed."
        ) from None
    call.privilege_ok = bool(ok)
    if ok:
        return
    if argument is not None:
        access = {"read_outside_envelope": "read", "write_outside_envelope": "write"}
        message = (
            f"The argument {argument!r} names a file outside the directories the "
            f"worker's privilege envelope lets it {access[reason]}."
            if reason in access
            else f"The argument {argument!r} is not a path the hall can resolve."
        )
        details = {"argument": argument}
    else:
        message = (
            f"The worker's privilege envelope is not allowed for "
            f"{call.inp.env}/{call.inp.data_label}: {reason}."
        )
        details = {}
    raise _Deny(
        "DENY_PRIVILEGE_ENVELOPE_VIOLATED",
        message,
        reason=str(reason),
        worker_species_id=call.species,
        **details,
    )


# -- building the decision --------------------------------------------------------------------


def _quietly(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def _artifact_hash(inp: RouteInput) -> str:
    """SHA-256 of the RFC 8785 form of the RouteInput."""
    fields = inp.__dict__
    # The model fixed every top-level type; only the free-form parts need a look.
    score = fields["blast_score"]
    radius, context = fields["blast_radius"], fields["privilege_context"]
    plain = (
        (score is None or -(2**53) < score < 2**53)
        and is_plain_json(fields["request"])
        and (radius is None or is_plain_json(radius))
        and (context is None or is_plain_json(context))
    )
    try:
        return hashlib.sha256(sorted_json(fields) if plain else canonical_json(fields)).hexdigest()
    except (TypeError, ValueError):
        return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()


def _construct(model: type[_M], values: dict[str, Any]) -> _M:
    """``model.model_construct(**values)`` without its per-field default scan.

    The router supplies every field, already of the right type, so there is
    nothing to validate or default; this halves the cost of a decision.
    """
    instance = model.__new__(model)
    object.__setattr__(instance, "__dict__", values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def _decision(
    call: _Call,
    *,
    denied: bool,
    reason: dict[str, Any] | None,
    pending: tuple[str, str] | None = None,
) -> RouteDecision:
    inp = call.inp
    if inp.dry_run:
        for event in call.events:
            event["dry_run"] = True
    return _construct(
        RouteDecision,
        {
            "decision_id": call.decision_id,
            "timestamp": call.timestamp,
            "correlation_id": inp.correlation_id,
            "tenant_id": inp.tenant_id,
            "capability_id": inp.capability_id,
            "matched_rule_id": call.rule_id,
            "env": inp.env,
            "data_label": inp.data_label,
            "tenant_risk": inp.tenant_risk,
            "qos_class": inp.qos_class,
            "denied": denied,
            "deny_reason_if_denied": reason,
            "selected_worker_species_id": None if denied else call.species,
            "selected_worker_id": None if denied else call.worker_id,
            "candidate_workers_ranked": call.candidates,
            "required_controls_effective": sorted(call.required),
            "recommended_profiles_effective": list(call.decision.recommended_profiles)
            if call.decision is not None
            else [],
            "escalation_effective": call.escalation,
            "preconditions_checked": call.preconditions,
            "artifact_hash": _artifact_hash(inp),
            "worker_attestation_checked": call.attestation_checked,
            "worker_attestation_valid": call.attestation_valid,
            "dry_run": inp.dry_run,
            "telemetry_envelopes": call.events,
            "blast_score": call.blast_score,
            "blast_gate_passed": call.blast_passed,
            "privilege_envelope_ok": call.privilege_ok,
            "supervisor_required": bool(reason and reason.get("supervisor_required")),
            "supervisor_level": call.supervisor_level,
            "pending_approval_id": pending[0] if pending else None,
            "approval_expires_at": pending[1] if pending else None,
            "policy_version": call.policy_version,
            "receipt_hash": None,
        },
    )


def _deny(call: _Call, denial: _Deny) -> RouteDecision:
    """The one way a denial is built: reason, telemetry, decision."""
    reason: dict[str, Any] = {"code": denial.code, "message": denial.message, **denial.details}
    pending = None
    if denial.held:
        if not call.inp.dry_run:  # a dry run stores no approval: it names none either
            expires = call.when + timedelta(seconds=call.config.approval_ttl_s)
            pending = (
                "apr_" + secrets.token_urlsafe(18),
                expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
            )
        reason["supervisor_required"] = True
    event = call.base.copy()
    event["event_id"] = evt.TASK_DENIED
    event["matched_rule_id"] = call.rule_id
    event["deny_code"] = denial.code
    event["deny_message"] = evt.sanitize_id(denial.message)
    event["policy_version"] = call.policy_version
    event["worker_species_id"] = call.species
    event["worker_id"] = call.worker_id
    call.events = [event]
    return _decision(call, denied=True, reason=reason, pending=pending)


def _allow(call: _Call) -> RouteDecision:
    """The events of an allowed decision, in the order of spec section 9, and the decision.

    Every event is a copy of the decision's common fields (``call.base``, with
    ``event_id`` first) filled in key by key: half the cost of a dict display with
    ``**base``, and a decision builds up to six of them. Every value is already
    clean: the caller's ids were cleaned in ``_Call``, the gate's words in
    ``_check_policy``, denials in ``_deny``; configuration ids cannot hold control
    characters (refused at load).
    """
    inp, base = call.inp, call.base
    rule, version = call.rule_id, call.policy_version
    species, worker_id = call.species, call.worker_id
    events = call.events
    if call.blast_score is not None:
        event = base.copy()
        event["event_id"] = evt.BLAST_SCORED
        event["env"] = inp.env
        event["data_label"] = inp.data_label
        event["matched_rule_id"] = rule
        event["policy_version"] = version
        event["blast_score"] = call.blast_score
        event["decision"] = "ALLOW"
        events.append(event)
    if call.privilege_ok is not None:
        event = base.copy()
        event["event_id"] = evt.PRIVILEGE_ENVELOPE_CHECKED
        event["env"] = inp.env
        event["data_label"] = inp.data_label
        event["matched_rule_id"] = rule
        event["policy_version"] = version
        event["worker_species_id"] = species
        event["worker_id"] = worker_id
        event["decision"] = "ALLOW"
        events.append(event)
    if not call.attestation_checked and inp.env in _PROD:
        event = base.copy()
        event["event_id"] = evt.ATTESTATION_SKIPPED
        event["env"] = inp.env
        event["worker_species_id"] = species
        event["worker_id"] = worker_id
        event["reason"] = "require_worker_attestation is off"
        event["severity"] = "warn"
        events.append(event)
    event = base.copy()
    event["event_id"] = evt.TASK_ROUTED
    event["task_id"] = call.task_id
    event["matched_rule_id"] = rule
    event["selected_worker_species_id"] = species
    event["worker_id"] = worker_id
    event["policy_version"] = version
    event["qos_class"] = inp.qos_class
    events.append(event)
    event = base.copy()
    event["event_id"] = evt.WORKER_SELECTED
    event["matched_rule_id"] = rule
    event["selected_worker_species_id"] = species
    event["worker_id"] = worker_id
    event["reason"] = "first_available_candidate"
    events.append(event)
    event = base.copy()
    event["event_id"] = evt.POLICY_GATED
    event["matched_rule_id"] = rule
    event["decision"] = "ALLOW"
    event["policy_version"] = version
    event["reason"] = call.gate_reason
    events.append(event)
    return _decision(call, denied=False, reason=None)


def _invalid_input(inp: Any, message: str, when: datetime) -> RouteDecision:
    """A decision for input that is not a valid RouteInput at all."""
    raw = inp if isinstance(inp, Mapping) else {}

    def text(key: str, default: str = "") -> str:
        value = raw.get(key, default)
        return evt.sanitize_id(value)[:256] if isinstance(value, str) else default

    shell = RouteInput.model_construct(
        capability_id=text("capability_id"),
        env=text("env"),
        data_label=text("data_label"),
        tenant_risk=text("tenant_risk"),
        qos_class=text("qos_class"),
        tenant_id=text("tenant_id"),
        correlation_id=text("correlation_id"),
        request={},
        blast_radius=None,
        blast_score=None,
        privilege_context=None,
        policy_version=None,
        dry_run=raw.get("dry_run") is True,
        tenant_credential=None,
    )
    call = _Call(shell, RuleSet(()), _DEFAULT_CONFIG, when)
    return _deny(call, _Deny("DENY_INVALID_INPUT", message))


def make_decision(
    inp: RouteInput | Mapping[str, Any],
    rules: Sequence[Any],
    registry_controls_present: set[str] | None = None,
    registry_worker_available: Callable[[str], bool] | None = None,
    registry_get_privilege_envelope: Callable[[str], dict[str, Any] | None] | None = None,
    registry_policy_allows_privilege: Callable[[str, str, Any], tuple[bool, str]] | None = None,
    policy_gate_eval: Any = None,
    conformance_spec: Mapping[str, Any] | None = None,
    task_id: str = "task_default",
    hall_config: HallConfig | None = None,
    registry_get_worker_hash: Callable[[str], str | None] | None = None,
    get_current_worker_hash: Callable[[str], str | None] | None = None,
    *,
    registry: Registry | None = None,
    pinned_worker_id: str | None = None,
    tool: str | None = None,
    human_approved: bool = False,
    chain_blast: int = 0,
    now: datetime | None = None,
) -> RouteDecision:
    """Route a capability request: a RouteDecision, allowed or denied. Never raises.

    The positional parameters are the reference's (``pyhall-wcp`` 0.2.x). With
    ``registry=`` the router reads per-worker controls, allowed environments,
    blast radius, privilege envelopes and attestations from it; the pooled
    ``registry_controls_present`` set is then ignored, ``registry_worker_available``
    further narrows availability, and the privilege and attestation callables,
    when given, are used instead of the registry's. ``pinned_worker_id`` limits
    candidates to one worker (the MCP gateway pins the called tool's worker);
    ``human_approved`` records that a person approved exactly this call;
    ``chain_blast`` is the blast already spent by earlier calls of the same chain.
    ``policy_gate_eval`` may be a callable or an object with ``evaluate``.
    """
    when = now or datetime.now(UTC)
    try:
        if not isinstance(inp, RouteInput):
            try:
                inp = RouteInput.model_validate(inp)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "input"
                return _invalid_input(inp, f"Invalid RouteInput: {field}: {first['msg']}.", when)
        try:
            rule_set = as_rule_set(rules)
        except Exception:
            report_failure("rule compilation")
            call = _Call(inp, RuleSet(()), hall_config or _DEFAULT_CONFIG, when)
            return _deny(
                call,
                _Deny("DENY_INTERNAL_ERROR", "The rule set is invalid; the hall fails closed."),
            )
        call = _Call(inp, rule_set, hall_config or _DEFAULT_CONFIG, when)
        # Only what differs from the class defaults is set (the common call sets none).
        if task_id != _Call.task_id:
            call.task_id = evt.sanitize_id(task_id)
        if tool is not None:
            call.tool = tool
        if human_approved:
            call.human_approved = True
        if chain_blast:
            call.chain_blast = max(0, min(100, int(chain_blast)))
        view = _View(
            registry, registry_controls_present, registry_worker_available, pinned_worker_id
        )
        try:
            _check_tenant(call)
            _check_input(call)
            _check_shadowing(call)
            _match_rule(call)
            _check_correlation(call)
            _resolve_candidates(call, view)
            _check_controls(call)
            _check_blast(call)
            _check_policy(call, policy_gate_eval)
            _check_worker(call)
            _check_attestation(call, view, registry_get_worker_hash, get_current_worker_hash)
            _check_privilege(
                call, view, registry_get_privilege_envelope, registry_policy_allows_privilege
            )
            _check_hold(call)
        except _Deny as denial:
            return _deny(call, denial)
        decision = _allow(call)
        if conformance_spec is not None:
            problems = _conformance_problems(decision, conformance_spec)
            if problems:
                return _deny(
                    call,
                    _Deny(
                        "DENY_INTERNAL_ERROR",
                        "The decision failed the conformance check.",
                        conformance_errors=problems,
                    ),
                )
        return decision
    except Exception:
        report_failure("make_decision")
        try:
            safe = inp if isinstance(inp, RouteInput) else None
            if safe is None:
                return _invalid_input(inp, "Invalid RouteInput.", when)
            return _deny(
                _Call(safe, RuleSet(()), _DEFAULT_CONFIG, when),
                _Deny("DENY_INTERNAL_ERROR", "The hall failed; it fails closed."),
            )
        except Exception:  # pragma: no cover - last resort
            return _invalid_input({}, "The hall failed; it fails closed.", when)


def _conformance_problems(decision: RouteDecision, spec: Mapping[str, Any]) -> list[str]:
    from .conformance import validate_required_fields, validate_required_telemetry

    return [
        *(f"missing_field:{f}" for f in validate_required_fields(decision.model_dump(), spec)),
        *validate_required_telemetry(decision.telemetry_envelopes, spec),
    ]
