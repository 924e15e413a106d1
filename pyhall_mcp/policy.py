"""The policy gate (spec section 10): one protocol, the embedded YAML engine, policy tests.

``evaluate(context) -> (decision, policy_version, reason)`` with ``decision``
one of ``ALLOW``, ``DENY``, ``REQUIRE_HUMAN``. Engines plug in through
:class:`PolicyEngine`; :func:`load_policy_engine` picks one from a hall's
``policies/`` directory (``*.yaml`` here, ``*.cedar`` in :mod:`.policy_cedar`).

Policy files (``policies/*.yaml`` and ``*.yml``; ``tests.yaml`` and
``*.tests.yaml`` are policy *test* files and are not loaded as policies)::

    default: deny                  # optional; "deny" is the only value allowed
    policies:
      - id: pol.demo.read-workspace          # unique across the hall
        effect: allow                        # allow | deny | require_human
        description: The file reader may read inside workspace/.
        supervisor_level: gatekeeper         # optional, require_human only
        when:                                # conditions on the call context
          worker_id: org.demo.file-reader
          env: {in: [dev, stage]}
        arguments:                           # conditions on the tool arguments
          path: {under: workspace}

All conditions of a statement must hold for it to match. A condition is a
plain value (equality) or a mapping of operators that must all hold:
``in``/``not_in`` (lists), ``lt``/``le``/``gt``/``ge`` (numbers), ``prefix``,
``glob`` (``fnmatch``, case-sensitive, ``*`` crosses ``/``), ``regex``
(``re.fullmatch`` with DOTALL: the whole value must match, ``$`` cannot be
satisfied by a trailing newline), ``under`` (path inside a directory),
``present: true|false`` and ``not: <condition>``.

- A missing value (absent argument, or a context key that is ``None`` such as
  ``tool`` or ``blast_score``) matches only ``present: false``; every other
  operator, ``not`` included, is false on it.
- ``under``: both paths are normalised lexically (``..`` resolved, no
  filesystem access, symlinks **not** followed; a NUL byte is an error). A
  relative ``under`` directory resolves against the hall directory
  (``base_dir``); a relative path *argument* resolves against ``path_base``,
  the hall's workspace, because that is where the file workers resolve it
  (``path_base`` defaults to the hall directory). The directory itself counts
  as under itself. Workers that touch files must still confine themselves
  with ``realpath`` (the demo file workers do).
- Combining: any matching ``deny`` wins, then ``require_human``, then
  ``allow``; when nothing matches the answer is ``DENY`` (default deny).
- An operator that cannot judge a value (a string operator on a number, a
  number operator on a string, equality against a list or object, a NUL in a
  path) raises :class:`~pyhall_mcp.errors.PolicyError` at run time. Statements
  are tried deny first, then require_human, then allow, and the first that
  matches decides; one that errors stops the evaluation instead of being
  skipped. The router turns any gate exception into ``DENY_INTERNAL_ERROR``
  (spec section 10), so a run-time evaluation error is always a denial.

A statement with ``arguments:`` must target specific workers or tools (an
equality or ``in`` condition on ``worker_id`` or ``tool``) and, when the
loader is given the tools' input schemas, every argument it names must be a
property of every targeted schema. Unknown fields and operators, malformed
regular expressions, values outside an enumeration (``env: production``) and
duplicate ids are load errors naming the file, the statement and the fix.

The policy version is ``sha256:`` over the canonical JSON of every statement
as written, sorted by id: independent of file names and order, stable across
runs and hosts.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._yaml import load_document
from .canonical import digest
from .errors import ConfigError, PolicyError
from .models import DataLabel, Env, QoSClass, SupervisorLevel, TenantRisk

__all__ = [
    "CONTEXT_DEFAULTS",
    "CONTEXT_KEYS",
    "DECISIONS",
    "CaseResult",
    "Decision",
    "NoPolicyEngine",
    "PolicyEngine",
    "PolicyGate",
    "PolicyResult",
    "PolicyTestReport",
    "YamlPolicyEngine",
    "is_policy_test_file",
    "load_policy_engine",
    "policy_test_files",
    "run_policy_tests",
]

Decision = Literal["ALLOW", "DENY", "REQUIRE_HUMAN"]
DECISIONS: frozenset[str] = frozenset(get_args(Decision))
RiskTier = Literal["low", "medium", "high", "critical"]

#: Keys of the context the router passes (``request`` holds the tool arguments).
CONTEXT_KEYS: tuple[str, ...] = (
    "capability_id",
    "tenant_id",
    "env",
    "data_label",
    "tenant_risk",
    "qos_class",
    "worker_id",
    "worker_species_id",
    "worker_risk_tier",
    "blast_score",
    "tool",
    "request",
    "policy_version",
)

#: Context values a policy test case gets for keys it does not give.
CONTEXT_DEFAULTS: Mapping[str, Any] = {
    "capability_id": None,
    "tenant_id": "test-tenant",
    "env": "dev",
    "data_label": "PUBLIC",
    "tenant_risk": "low",
    "qos_class": "P2",
    "worker_id": None,
    "worker_species_id": None,
    "worker_risk_tier": "low",
    "blast_score": None,
    "tool": None,
    "request": {},
    "policy_version": None,
}

# Closed vocabularies: a condition naming a value outside them is a typo that
# would silently never match, so it is a load error.
_ENUMS: dict[str, frozenset[str]] = {
    "env": frozenset(get_args(Env)),
    "data_label": frozenset(get_args(DataLabel)),
    "tenant_risk": frozenset(get_args(TenantRisk)),
    "qos_class": frozenset(get_args(QoSClass)),
    "worker_risk_tier": frozenset(get_args(RiskTier)),
}
_NUMERIC_KEYS = frozenset({"blast_score"})
_WHEN_KEYS: tuple[str, ...] = (
    "tenant_id",
    "env",
    "data_label",
    "tenant_risk",
    "qos_class",
    "capability_id",
    "worker_id",
    "worker_species_id",
    "worker_risk_tier",
    "tool",
    "blast_score",
)
_TARGET_KEYS = ("worker_id", "tool")  # what an `arguments:` statement must pin down

#: Worker ids and tool names to each tool's input schema; ``None`` for a quarantined
#: worker, which statements may still name (it cannot be called meanwhile).
ToolSchemas = Mapping[str, Mapping[str, Any] | None]
# Context keys whose values are fixed strings for a given kind of call (the
# tenant and env are fixed at launch, the worker by the tool called): statements
# are filtered on them once per distinct combination, then cached.
_STATIC_KEYS = tuple(k for k in _WHEN_KEYS if k not in _NUMERIC_KEYS)
# A statement naming its worker, tool or capability exactly is filed under it,
# so that a new call shape only looks at the statements that can apply.
_INDEX_KEYS = ("worker_id", "tool", "capability_id")

_EFFECT_RANK = {"deny": 0, "require_human": 1, "allow": 2}
_EFFECT_DECISION: dict[str, Decision] = {
    "deny": "DENY",
    "require_human": "REQUIRE_HUMAN",
    "allow": "ALLOW",
}
_OPERATORS = frozenset(
    {"in", "not_in", "lt", "le", "gt", "ge", "prefix", "glob", "regex", "under", "present", "not"}
)
_STRING_OPS = frozenset({"prefix", "glob", "regex"})
_NUMBER_OPS = frozenset({"lt", "le", "gt", "ge"})
_CACHE_LIMIT = 4096
_TEST_FILE_NAMES = ("tests.yaml", "tests.yml")
_TEST_FILE_SUFFIXES = (".tests.yaml", ".tests.yml")

Predicate = Callable[[Any], bool]


# ---------------------------------------------------------------------------
# The seam
# ---------------------------------------------------------------------------


@runtime_checkable
class PolicyEngine(Protocol):
    """What the router needs from a policy engine (YAML, Cedar, or yours)."""

    #: ``sha256:<hex>`` digest of the loaded policy set.
    version: str

    def evaluate(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        """``(decision, policy_version, reason)``; may raise (the router denies)."""
        ...

    def describe(self) -> list[dict[str, Any]]:
        """The loaded statements, for ``pyhall policy show``."""
        ...


@dataclass(frozen=True)
class PolicyResult:
    """A decision with the statement that made it (``None`` for the default deny)."""

    decision: Decision
    policy_version: str
    reason: str
    statement_id: str | None = None
    supervisor_level: str | None = None

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.decision, self.policy_version, self.reason)


class PolicyGate:
    """Drop-in for the reference ``pyhall.policy_gate.PolicyGate``.

    Subclass it and override ``evaluate(context)`` as with the reference, or
    pass an engine: ``PolicyGate(engine).evaluate`` delegates to it.

    Difference from the reference: the reference base class allows every
    request (``"stub_allow"``); this one, with no engine, **denies** every
    request with reason ``no_policy_configured``. Governance that was never
    configured must not look like governance that said yes.
    """

    def __init__(self, engine: PolicyEngine | None = None) -> None:
        self.engine = engine

    @property
    def version(self) -> str:
        return self.engine.version if self.engine is not None else NoPolicyEngine.VERSION

    def evaluate(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        if self.engine is None:
            return ("DENY", NoPolicyEngine.VERSION, "no_policy_configured")
        return self.engine.evaluate(context)

    def __call__(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        return self.evaluate(context)  # a subclass's evaluate, too


class NoPolicyEngine:
    """The engine of a hall without policy files: every request is denied."""

    VERSION = digest({"engine": "none", "statements": []})

    def __init__(self, reason: str = "no_policy_configured") -> None:
        self.version = self.VERSION
        self.reason = reason
        self.warnings: list[str] = [reason]

    def evaluate(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        return ("DENY", self.version, self.reason)

    def describe(self) -> list[dict[str, Any]]:
        return []


# ---------------------------------------------------------------------------
# File schema
# ---------------------------------------------------------------------------


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    default: Literal["deny"] | None = None
    policies: list[Any]


class _Statement(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
    effect: Literal["allow", "deny", "require_human"]
    description: str = Field(min_length=1, max_length=2000)
    supervisor_level: SupervisorLevel | None = None
    when: dict[str, Any] = Field(default_factory=dict)
    arguments: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------------------
# Condition compiler
# ---------------------------------------------------------------------------


class _Where:
    """Where a condition sits, for load errors and run-time error messages."""

    def __init__(self, file: str, location: str) -> None:
        self.file = file
        self.location = location

    def at(self, suffix: str) -> _Where:
        return _Where(self.file, f"{self.location} {suffix}" if suffix else self.location)

    def error(self, message: str, fix: str) -> PolicyError:
        return PolicyError(message, file=self.file, location=self.location, fix=fix)


def _is_number(value: Any) -> bool:
    kind = type(value)
    return (kind is int) or (kind is float and math.isfinite(value))


def _is_scalar(value: Any) -> bool:
    return type(value) in (str, int, float, bool)


def _runtime_error(where: _Where, message: str) -> PolicyError:
    # No argument value in the message: it may be large or sensitive, and the
    # router never shows gate exception text anyway.
    return PolicyError(f"evaluation error: {message}", file=where.file, location=where.location)


def _equals(expected: Any, where: _Where) -> Predicate:
    if type(expected) is bool:

        def same_bool(value: Any) -> bool:
            if not _is_scalar(value):
                raise _runtime_error(where, f"cannot compare a {type(value).__name__} for equality")
            return value is expected

        return same_bool
    if type(expected) in (int, float):

        def same_number(value: Any) -> bool:
            if not _is_scalar(value):
                raise _runtime_error(where, f"cannot compare a {type(value).__name__} for equality")
            return type(value) in (int, float) and value == expected

        return same_number

    def same_string(value: Any) -> bool:
        if type(value) is str:
            return value == expected
        if not _is_scalar(value):
            raise _runtime_error(where, f"cannot compare a {type(value).__name__} for equality")
        return False

    return same_string


def _member(options: Sequence[Any], where: _Where) -> Predicate:
    strings = frozenset(o for o in options if type(o) is str)
    others = [_equals(o, where) for o in options if type(o) is not str]

    def member(value: Any) -> bool:
        if type(value) is str:
            return value in strings
        if not _is_scalar(value):
            raise _runtime_error(where, f"cannot test a {type(value).__name__} for membership")
        return any(check(value) for check in others)

    return member


def _number_op(op: str, bound: float, where: _Where) -> Predicate:
    compare: Callable[[Any, Any], bool] = {
        "lt": float.__lt__,
        "le": float.__le__,
        "gt": float.__gt__,
        "ge": float.__ge__,
    }[op]

    def number(value: Any) -> bool:
        if not _is_number(value):
            raise _runtime_error(where, f"`{op}` needs a number, got {type(value).__name__}")
        return compare(float(value), bound)

    return number


def _string_op(check: Callable[[str], Any], op: str, where: _Where) -> Predicate:
    def string(value: Any) -> bool:
        if type(value) is not str:
            raise _runtime_error(where, f"`{op}` needs a string, got {type(value).__name__}")
        return bool(check(value))

    return string


def _normalise(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, path))


class _Bases(NamedTuple):
    """Absolute directories relative paths resolve against."""

    hall: str  # relative `under` directories in policy files
    arguments: str  # relative path arguments (the hall's workspace, where file workers look)


def _under(directory: str, bases: _Bases, where: _Where) -> Predicate:
    if "\x00" in directory:
        raise where.error("`under` directory contains a NUL byte", "remove it")
    root = _normalise(directory, bases.hall)
    base = bases.arguments
    prefix = root if root.endswith(os.sep) else root + os.sep

    def under(value: Any) -> bool:
        if type(value) is not str:
            raise _runtime_error(where, f"`under` needs a path string, got {type(value).__name__}")
        if "\x00" in value:
            raise _runtime_error(where, "path contains a NUL byte")
        path = _normalise(value, base)
        return path == root or path.startswith(prefix)

    return under


def _compile_regex(pattern: Any, where: _Where, op: str) -> re.Pattern[str]:
    if type(pattern) is not str:
        raise where.error(f"`{op}` takes a string", f"quote the {op} pattern")
    source = fnmatch.translate(pattern) if op == "glob" else pattern
    try:
        return re.compile(source, re.DOTALL)
    except re.error as exc:
        raise where.error(
            f"malformed {op} {pattern!r}: {exc}", f"correct the {op} (Python `re` syntax)"
        ) from None


def _check_value(value: Any, kind: str, key: str, where: _Where) -> None:
    """Load-time check of one literal compared with a context or argument value."""
    if not _is_scalar(value) or (type(value) is float and not math.isfinite(value)):
        raise where.error(
            f"{value!r} is not a plain value",
            "compare with a string, number or boolean; use `present` for absence",
        )
    if kind == "number" and not _is_number(value):
        raise where.error(f"{key} is a number, got {value!r}", "use an integer")
    if kind in _ENUMS and value not in _ENUMS[kind]:
        raise where.error(f"{value!r} is not a valid {key}", f"use one of {sorted(_ENUMS[kind])}")
    if kind == "string" and type(value) is not str:
        raise where.error(f"{key} is a string, got {value!r}", "quote the value")


def _compile_ops(spec: Any, kind: str, key: str, bases: _Bases, where: _Where) -> list[Predicate]:
    """Predicates that must all hold on a present value (``present`` handled by the caller)."""
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise where.error("a list is not a condition", "write `{in: [...]}` for membership")
        if spec is None:
            raise where.error("null is not a condition", "use `present: false` for absence")
        _check_value(spec, kind, key, where)
        return [_equals(spec, where)]
    if not spec:
        raise where.error("empty condition", "give a value or at least one operator")
    predicates: list[Predicate] = []
    for op, operand in spec.items():
        here = where.at(op)
        if op not in _OPERATORS:
            raise here.error(
                f"unknown operator {op!r}", f"use one of {sorted(_OPERATORS)} or a plain value"
            )
        if op == "present":
            continue
        if op in ("in", "not_in"):
            if not isinstance(operand, list) or not operand:
                raise here.error(f"`{op}` takes a non-empty list", f"write `{op}: [a, b]`")
            for item in operand:
                _check_value(item, kind, key, here)
            member = _member(operand, here)
            predicates.append(member if op == "in" else (lambda v, m=member: not m(v)))
        elif op in _NUMBER_OPS:
            if kind not in ("number", "any"):
                raise here.error(f"`{op}` does not apply to {key}", "use equality or `in`")
            if not _is_number(operand):
                raise here.error(f"`{op}` takes a number, got {operand!r}", "use a number")
            predicates.append(_number_op(op, float(operand), here))
        elif op in _STRING_OPS:
            if kind in _ENUMS or kind == "number":
                raise here.error(f"`{op}` does not apply to {key}", "use equality or `in`")
            if op == "prefix":
                if type(operand) is not str:
                    raise here.error("`prefix` takes a string", "quote the prefix")
                predicates.append(_string_op(lambda s, p=operand: s.startswith(p), op, here))
            else:
                fullmatch = _compile_regex(operand, here, op).fullmatch
                predicates.append(_string_op(fullmatch, op, here))
        elif op == "under":
            if kind != "any":
                raise here.error(f"`under` applies to tool arguments, not {key}", "remove it")
            if type(operand) is not str or not operand:
                raise here.error("`under` takes a directory path", "e.g. `under: workspace`")
            predicates.append(_under(operand, bases, here))
        else:  # not
            if isinstance(operand, dict) and "present" in operand:
                raise here.error("`not` cannot wrap `present`", "use `present: false`")
            inner = _compile_ops(operand, kind, key, bases, here)
            predicates.append(lambda v, ps=inner: not all(p(v) for p in ps))
    return predicates


def _compile_condition(spec: Any, kind: str, key: str, bases: _Bases, where: _Where) -> Predicate:
    predicates = _compile_ops(spec, kind, key, bases, where)
    present = spec.get("present") if isinstance(spec, dict) else None
    if present is not None and type(present) is not bool:
        raise where.at("present").error("`present` takes true or false", "write `present: true`")
    if present is False:
        if predicates:
            raise where.error(
                "`present: false` cannot be combined with other operators",
                "split the condition or drop the other operators",
            )
        return lambda v: v is None
    if len(predicates) == 0:
        return lambda v: v is not None
    if len(predicates) == 1:
        only = predicates[0]
        return lambda v: v is not None and only(v)
    return lambda v: v is not None and all(p(v) for p in predicates)


def _literal_targets(spec: Any) -> list[str] | None:
    """The finite set of values an equality or ``in`` condition accepts, else None."""
    if type(spec) is str:
        return [spec]
    if isinstance(spec, dict) and set(spec) == {"in"} and isinstance(spec["in"], list):
        return [v for v in spec["in"] if type(v) is str]
    return None


# ---------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Compiled:
    id: str
    effect: str
    rank: int
    order: int
    decision: Decision
    reason: str
    supervisor_level: str | None
    #: Conditions on string context keys: decided once per call shape, then cached.
    static: tuple[tuple[str, Predicate], ...]
    #: Conditions checked on every call: (from_arguments, key, predicate).
    checks: tuple[tuple[bool, str, Predicate], ...]
    #: (key, values): the statement can only apply when ``key`` has one of ``values``.
    index: tuple[str, tuple[str, ...]] | None
    file: str
    raw: dict[str, Any]

    def applies(self, values: Mapping[str, str | None]) -> bool:
        for name, predicate in self.static:  # noqa: SIM110 - a loop beats all() on a generator
            if not predicate(values[name]):
                return False
        return True

    def matches(self, context: Mapping[str, Any], arguments: Mapping[str, Any]) -> bool:
        for from_arguments, key, predicate in self.checks:
            if not predicate((arguments if from_arguments else context).get(key)):
                return False
        return True


def _compile_statement(
    raw: Any,
    *,
    order: int,
    where: _Where,
    bases: _Bases,
    tool_schemas: ToolSchemas | None,
    notices: list[PolicyError],
) -> _Compiled:
    if not isinstance(raw, dict):
        raise where.error("a statement must be a mapping", "see the policy file format")
    try:
        stmt = _Statement.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = f"unknown field {loc!r}"
        raise where.at(loc).error(
            message, "allowed fields: id, effect, description, supervisor_level, when, arguments"
        ) from None
    where = _Where(where.file, f"{where.location} (id: {stmt.id})")
    if stmt.supervisor_level is not None and stmt.effect != "require_human":
        raise where.at("supervisor_level").error(
            "supervisor_level applies only to require_human statements",
            "remove it or set effect: require_human",
        )

    static: list[tuple[str, Predicate]] = []
    checks: list[tuple[bool, str, Predicate]] = []
    withdrawn: list[str] = []
    index: tuple[str, tuple[str, ...]] | None = None
    for key, spec in stmt.when.items():
        here = where.at(f"when.{key}")
        if key not in _WHEN_KEYS:
            raise here.error(f"unknown context key {key!r}", f"use one of {list(_WHEN_KEYS)}")
        kind = key if key in _ENUMS else ("number" if key in _NUMERIC_KEYS else "string")
        predicate = _compile_condition(spec, kind, key, bases, here)
        targets = _literal_targets(spec)
        if key in _NUMERIC_KEYS:
            checks.append((False, key, predicate))
        else:
            static.append((key, predicate))
        if key in _INDEX_KEYS and targets and (index is None or len(targets) < len(index[1])):
            index = (key, tuple(targets))
        if key in _TARGET_KEYS and targets and tool_schemas is not None:
            unknown = [t for t in targets if t not in tool_schemas]
            if unknown and not stmt.arguments:
                notices.append(
                    here.error(f"no enrolled {key} {unknown}", "fix the name or enroll the worker")
                )
            withdrawn += [t for t in targets if t in tool_schemas and tool_schemas[t] is None]

    if withdrawn:
        notices.append(
            where.error(
                f"names the quarantined {' and '.join(dict.fromkeys(withdrawn))}: it applies "
                "once the record is mended",
                "mend that worker's record; its quarantine message says how",
            )
        )
    if stmt.arguments:
        _check_argument_targets(stmt, where, tool_schemas)
    for name, spec in stmt.arguments.items():
        here = where.at(f"arguments.{name}")
        checks.append((True, name, _compile_condition(spec, "any", name, bases, here)))

    checks.sort(key=lambda c: c[0])  # the cheap context checks first
    return _Compiled(
        id=stmt.id,
        effect=stmt.effect,
        rank=_EFFECT_RANK[stmt.effect],
        order=order,
        decision=_EFFECT_DECISION[stmt.effect],
        reason=f"{stmt.id}: {stmt.description.rstrip('.')}",
        supervisor_level=stmt.supervisor_level,
        static=tuple(static),
        checks=tuple(checks),
        index=index,
        file=where.file,
        raw=raw,
    )


def _check_argument_targets(
    stmt: _Statement, where: _Where, tool_schemas: ToolSchemas | None
) -> None:
    targets: list[str] = []
    for key in _TARGET_KEYS:
        if key in stmt.when:
            named = _literal_targets(stmt.when[key])
            if named is None:
                raise where.at(f"when.{key}").error(
                    f"a statement with `arguments` must name its {key}s exactly",
                    f"use `{key}: name` or `{key}: {{in: [names]}}`",
                )
            targets += named
    if not targets:
        raise where.at("arguments").error(
            "`arguments` conditions need a target: argument names differ between tools",
            "add `when: {worker_id: <worker>}` or `when: {tool: <tool name>}`",
        )
    if tool_schemas is None:
        return
    for target in targets:
        schema = tool_schemas.get(target)
        if schema is None and target in tool_schemas:
            continue  # quarantined: it cannot be called, and its schema is not to be trusted
        if schema is None:
            raise where.error(
                f"{target!r} is not an enrolled worker or tool",
                "fix the worker_id/tool name or enroll the worker",
            )
        properties = schema.get("properties") if isinstance(schema, Mapping) else None
        known = set(properties) if isinstance(properties, Mapping) else set()
        for name in stmt.arguments:
            if name not in known:
                raise where.at(f"arguments.{name}").error(
                    f"{target!r} has no argument {name!r} in its input schema",
                    f"use one of {sorted(known)} or target another worker",
                )


# ---------------------------------------------------------------------------
# The YAML engine
# ---------------------------------------------------------------------------


def is_policy_test_file(path: Path) -> bool:
    """``tests.yaml`` and ``*.tests.yaml`` hold policy test cases, not policies."""
    name = path.name.lower()
    return name in _TEST_FILE_NAMES or name.endswith(_TEST_FILE_SUFFIXES)


def policy_test_files(policies_dir: Path) -> list[Path]:
    """The policy test case files of a ``policies/`` directory (for ``pyhall validate``)."""
    if not policies_dir.is_dir():
        return []
    return sorted(p for p in policies_dir.iterdir() if p.is_file() and is_policy_test_file(p))


def _yaml_files(policies_dir: Path) -> list[Path]:
    # Every *.yaml entry, files or not: reading a dangling link (an unmounted shared
    # policy) or a directory then fails, where skipping it would drop its denials.
    return sorted(
        p
        for p in policies_dir.iterdir()
        if p.suffix.lower() in (".yaml", ".yml") and not is_policy_test_file(p)
    )


class YamlPolicyEngine:
    """The embedded engine: YAML statements compiled into closures.

    Conditions on the string context keys (tenant, env, label, risk, QoS,
    capability, worker, species, risk tier, tool) are decided once for each
    distinct combination of their values and the surviving statements cached
    in precedence order; a call then only checks blast score and arguments.
    """

    def __init__(
        self, statements: Sequence[_Compiled], *, notices: Sequence[PolicyError] = ()
    ) -> None:
        self._statements = tuple(sorted(statements, key=lambda s: s.order))
        #: What loads but looks wrong: statements naming unknown or quarantined workers.
        self.notices = tuple(notices)
        self.version = digest(
            {
                "engine": "pyhall-yaml/1",
                "statements": sorted((s.raw for s in self._statements), key=lambda r: r["id"]),
            }
        )
        self._unindexed: list[_Compiled] = []
        self._index: dict[str, dict[str, list[_Compiled]]] = {k: {} for k in _INDEX_KEYS}
        for stmt in self._statements:
            if stmt.index is None:
                self._unindexed.append(stmt)
            else:
                key, targets = stmt.index
                for target in dict.fromkeys(targets):
                    self._index[key].setdefault(target, []).append(stmt)
        self._default_reason = "default_deny: no policy statement matched"
        self._cache: dict[tuple[Any, ...], tuple[_Compiled, ...]] = {}

    @property
    def warnings(self) -> list[str]:
        return [notice.describe() for notice in self.notices]

    # -- loading -------------------------------------------------------------

    @classmethod
    def load(
        cls,
        paths_or_dir: str | Path | Iterable[str | Path],
        *,
        base_dir: str | Path,
        tool_schemas: ToolSchemas | None = None,
        path_base: str | Path | None = None,
    ) -> YamlPolicyEngine:
        """Load, validate and compile policy files; any problem is a ``PolicyError``.

        ``base_dir`` (the hall directory) anchors relative ``under`` directories;
        ``path_base`` (the hall's workspace; default ``base_dir``) anchors relative
        path arguments, as the file workers resolve them. ``tool_schemas`` maps
        worker ids and tool names to the tool's JSON input schema (``None`` for a
        quarantined worker); with it, argument conditions are checked against them.
        """
        if isinstance(paths_or_dir, (str, Path)) and Path(paths_or_dir).is_dir():
            files = _yaml_files(Path(paths_or_dir))
        elif isinstance(paths_or_dir, (str, Path)):
            files = [Path(paths_or_dir)]
        else:
            files = [Path(p) for p in paths_or_dir]
        documents = [(str(path), _read_policy_file(path)) for path in sorted(files)]
        return cls.load_documents(
            documents, base_dir=base_dir, tool_schemas=tool_schemas, path_base=path_base
        )

    @classmethod
    def load_documents(
        cls,
        documents: Sequence[tuple[str, Any]],
        *,
        base_dir: str | Path,
        tool_schemas: ToolSchemas | None = None,
        path_base: str | Path | None = None,
    ) -> YamlPolicyEngine:
        """Validate and compile parsed policy documents, each given with its source name."""
        bases = _bases(base_dir, path_base)
        notices: list[PolicyError] = []
        compiled: list[_Compiled] = []
        seen: dict[str, str] = {}
        for source, doc in documents:
            for stmt in _compile_document(source, doc, len(compiled), bases, tool_schemas, notices):
                if stmt.id in seen:
                    raise PolicyError(
                        f"duplicate statement id {stmt.id!r} (also in {seen[stmt.id]})",
                        file=source,
                        location=f"id: {stmt.id}",
                        fix="give every statement a unique id",
                    )
                seen[stmt.id] = source
                compiled.append(stmt)
        return cls(compiled, notices=notices)

    @classmethod
    def from_statements(
        cls,
        statements: Sequence[Mapping[str, Any]],
        *,
        base_dir: str | Path,
        tool_schemas: ToolSchemas | None = None,
        path_base: str | Path | None = None,
        source: str = "<statements>",
    ) -> YamlPolicyEngine:
        """An engine from statements already in memory (tests, benchmarks, generated policy)."""
        return cls.load_documents(
            [(source, {"policies": list(statements)})],
            base_dir=base_dir,
            tool_schemas=tool_schemas,
            path_base=path_base,
        )

    # -- evaluation ----------------------------------------------------------

    def _candidates(self, context: Mapping[str, Any]) -> tuple[_Compiled, ...]:
        get = context.get
        key = (
            get("tenant_id"),
            get("env"),
            get("data_label"),
            get("tenant_risk"),
            get("qos_class"),
            get("capability_id"),
            get("worker_id"),
            get("worker_species_id"),
            get("worker_risk_tier"),
            get("tool"),
        )
        try:
            found = self._cache.get(key)
        except TypeError:
            found = None  # unhashable: refused below
        if found is None:
            found = self._select(key)
        return found

    def _select(self, key: tuple[Any, ...]) -> tuple[_Compiled, ...]:
        values = dict(zip(_STATIC_KEYS, key, strict=True))
        for name, value in values.items():
            if value is not None and type(value) is not str:
                raise PolicyError(f"evaluation error: context key {name} must be a string")
        pool = list(self._unindexed)
        for name in _INDEX_KEYS:
            value = values[name]
            if value is not None:
                pool += self._index[name].get(value, ())
        # Deny first, then require_human, then allow: the first match decides.
        pool.sort(key=lambda s: (s.rank, s.order))
        # A statement sits under one index key only, so the pool has no duplicates.
        found = tuple(stmt for stmt in pool if stmt.applies(values))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # call shapes are few; this only bounds memory
        self._cache[key] = found
        return found

    def decide(self, context: Mapping[str, Any]) -> PolicyResult:
        """Evaluate ``context``; raises ``PolicyError`` on an evaluation error."""
        if not isinstance(context, Mapping):
            raise PolicyError("evaluation error: the policy context must be a mapping")
        arguments = context.get("request")
        if arguments is None:
            arguments = {}
        elif not isinstance(arguments, Mapping):
            raise PolicyError("evaluation error: `request` (the tool arguments) must be a mapping")
        for stmt in self._candidates(context):
            if stmt.matches(context, arguments):
                return PolicyResult(
                    stmt.decision, self.version, stmt.reason, stmt.id, stmt.supervisor_level
                )
        return PolicyResult("DENY", self.version, self._default_reason)

    def evaluate(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        return self.decide(context).as_tuple()

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for stmt in self._statements:
            entry = {"file": stmt.file, **stmt.raw}
            out.append(entry)
        return out


def _read_policy_file(path: Path) -> Any:
    try:
        return load_document(path)
    except PolicyError:
        raise
    except ConfigError as exc:
        raise PolicyError(exc.message, file=exc.file, location=exc.location, fix=exc.fix) from None


def _bases(base_dir: str | Path, path_base: str | Path | None) -> _Bases:
    hall = os.path.abspath(os.fspath(base_dir))
    arguments = hall if path_base is None else os.path.join(hall, os.fspath(path_base))
    return _Bases(hall, os.path.normpath(arguments))


def _compile_document(
    source: str,
    doc: Any,
    first_order: int,
    bases: _Bases,
    tool_schemas: ToolSchemas | None,
    notices: list[PolicyError],
) -> list[_Compiled]:
    fix = "a policy file is `{policies: [...]}` with an optional `default: deny`"
    if not isinstance(doc, dict):
        raise PolicyError("expected a mapping with a `policies` list", file=source, fix=fix)
    try:
        parsed = _PolicyFile.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "extra_forbidden":
            message = f"unknown top-level field {loc!r}"
        raise PolicyError(message, file=source, location=loc, fix=fix) from None
    return [
        _compile_statement(
            raw,
            order=first_order + i,
            where=_Where(source, f"policies[{i}]"),
            bases=bases,
            tool_schemas=tool_schemas,
            notices=notices,
        )
        for i, raw in enumerate(parsed.policies)
    ]


# ---------------------------------------------------------------------------
# Picking an engine for a hall
# ---------------------------------------------------------------------------


def load_policy_engine(
    policies_dir: str | Path,
    *,
    base_dir: str | Path,
    tool_schemas: ToolSchemas | None = None,
    path_base: str | Path | None = None,
) -> PolicyEngine:
    """The engine for a hall's ``policies/`` directory.

    ``*.yaml``/``*.yml`` load the embedded engine, ``*.cedar`` (with one
    ``*.cedarschema`` or ``*.cedarschema.json``) the Cedar engine; a directory
    with both is refused. A missing or empty directory gives a
    :class:`NoPolicyEngine` that denies everything (``pyhall validate`` warns).
    ``base_dir`` is the hall directory and ``path_base`` the hall's workspace
    (relative path arguments resolve against it; default ``base_dir``).
    """
    directory = Path(policies_dir)
    if not directory.is_dir():
        return NoPolicyEngine(f"no_policy_configured: {directory} does not exist")
    yaml_files = _yaml_files(directory)
    cedar_files = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".cedar")
    if yaml_files and cedar_files:
        raise PolicyError(
            "the directory mixes YAML and Cedar policies",
            file=str(directory),
            fix="keep one engine per hall: move the other files out of policies/",
        )
    if cedar_files:
        from .policy_cedar import CedarPolicyEngine

        return CedarPolicyEngine.load(
            directory, base_dir=base_dir, tool_schemas=tool_schemas, path_base=path_base
        )
    if yaml_files:
        return YamlPolicyEngine.load(
            yaml_files, base_dir=base_dir, tool_schemas=tool_schemas, path_base=path_base
        )
    return NoPolicyEngine(f"no_policy_configured: no policy files in {directory}")


# ---------------------------------------------------------------------------
# Policy tests
# ---------------------------------------------------------------------------


class _Case(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    expect: Literal["allow", "deny", "require_human"]
    #: Optional: the reason must contain this text (e.g. the deciding statement id).
    reason_contains: str | None = None


class _CaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cases: list[Any]


@dataclass(frozen=True)
class CaseResult:
    name: str
    expected: str
    actual: str
    reason: str
    passed: bool
    reason_contains: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expected": self.expected,
            "actual": self.actual,
            "reason": self.reason,
            "reason_contains": self.reason_contains,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class PolicyTestReport:
    file: str
    policy_version: str
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "policy_version": self.policy_version,
            "passed": self.passed,
            "total": len(self.results),
            "failed": len(self.failures),
            "results": [r.as_dict() for r in self.results],
        }


def run_policy_tests(engine: PolicyEngine, cases_file: str | Path) -> PolicyTestReport:
    """Run a case file ``{cases: [{name, context, expect, reason_contains?}]}`` against ``engine``.

    A case's context gets :data:`CONTEXT_DEFAULTS` for the keys it leaves out
    (tenant ``test-tenant``, env ``dev``, label ``PUBLIC``, tenant risk ``low``,
    QoS ``P2``, worker risk tier ``low``, no worker, tool or blast score, empty
    arguments under ``request``). An engine error counts as the answer ``deny``
    with reason ``evaluation_error``, as the router would record it.
    """
    path = Path(cases_file)
    source = str(path)
    doc = load_document(path)
    try:
        parsed = _CaseFile.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PolicyError(
            first["msg"],
            file=source,
            location=".".join(str(p) for p in first["loc"]) or None,
            fix="a policy test file is `{cases: [{name, context, expect}]}`",
        ) from None
    results = []
    names: set[str] = set()
    for i, raw in enumerate(parsed.cases):
        try:
            case = _Case.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise PolicyError(
                first["msg"],
                file=source,
                location=f"cases[{i}] {loc}",
                fix="each case has name, context, expect (allow|deny|require_human)",
            ) from None
        unknown = sorted(set(case.context) - set(CONTEXT_KEYS))
        if unknown:
            raise PolicyError(
                f"unknown context keys {unknown}",
                file=source,
                location=f"cases[{i}] (name: {case.name}) context",
                fix=f"use keys from {list(CONTEXT_KEYS)}",
            )
        if case.name in names:
            raise PolicyError(
                f"duplicate case name {case.name!r}", file=source, fix="name every case uniquely"
            )
        names.add(case.name)
        context = {**CONTEXT_DEFAULTS, **case.context}
        try:
            decision, _, reason = engine.evaluate(context)
        except Exception as exc:  # any engine failure is a denial, as in the router
            decision, reason = "DENY", f"evaluation_error: {exc}"
        if decision not in DECISIONS:
            decision, reason = "DENY", f"invalid engine response {decision!r}"
        actual = decision.lower()
        passed = actual == case.expect and (
            case.reason_contains is None or case.reason_contains in reason
        )
        results.append(
            CaseResult(case.name, case.expect, actual, reason, passed, case.reason_contains)
        )
    return PolicyTestReport(source, engine.version, tuple(results))
