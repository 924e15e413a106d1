"""A Cedar policy engine (optional extra ``pyhall-mcp[cedar]``, the ``cedarpy`` package).

A hall's ``policies/`` holds ``*.cedar`` files and exactly one schema,
``*.cedarschema`` (Cedar syntax) or ``*.cedarschema.json``. Every policy is
validated against the schema when the hall loads; a policy that does not
validate stops the hall from starting (Cedar skips a policy that errors at run
time, so a typo in a ``forbid`` would otherwise quietly allow).

The request the engine builds for each call:

- principal ``Tenant::"<tenant_id>"``, action ``Action::"call"``, resource
  ``Worker::"<worker_id>"`` (no entity data: everything else is in the context);
- context: ``env``, ``data_label``, ``tenant_risk``, ``qos_class``,
  ``capability_id``, ``worker_species_id``, ``worker_risk_tier``, ``tool`` and
  ``blast_score`` (each left out when ``None``: declare those optional),
  ``arguments`` (the tool arguments), ``paths`` and ``human_approved``;
- ``paths.<arg>`` is each string argument that can be a path (no NUL, at most
  4,096 characters) resolved as the file workers resolve it (relative to
  ``path_base``, the hall's workspace), normalised lexically and made relative
  to the hall directory: with the workspace ``workspace/``, ``notes.txt``
  becomes ``workspace/notes.txt`` and ``../keys/x`` becomes ``keys/x``;
  anything outside the hall starts with ``../``. Write ``context.paths.path
  like "workspace/*"``, never a ``like`` on the raw argument.

Human approval convention: a policy that needs a human is a ``forbid ...
unless { context.human_approved };``. The engine evaluates with
``human_approved: false``; on Deny it evaluates again with ``true``, and an
Allow then means ``REQUIRE_HUMAN`` (only the human gate stood in the way).

Fail closed: a Cedar evaluation error (diagnostics errors, a request Cedar
cannot build, an argument value Cedar cannot represent such as a float, or a
JSON object using Cedar's reserved ``__entity``/``__extn``/``__expr`` keys)
raises ``PolicyError``, which the router records as ``DENY_INTERNAL_ERROR``.
The schema is used to validate policies at load, not each request, so an
argument the schema does not declare does not by itself deny a call; a policy
reading an attribute of the wrong type errors and denies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._yaml import MAX_DOCUMENT_BYTES, read_regular_file
from .canonical import digest
from .errors import PolicyError
from .policy import PolicyResult, ToolSchemas

__all__ = ["ACTION", "CedarPolicyEngine"]

ACTION = {"type": "Action", "id": "call"}
_MAX_PATH = 4096
_RESERVED = frozenset({"__entity", "__extn", "__expr"})
_CONTEXT_STRINGS = (
    "env",
    "data_label",
    "tenant_risk",
    "qos_class",
    "capability_id",
    "worker_species_id",
    "worker_risk_tier",
    "tool",
)


def _cedarpy() -> Any:
    try:
        import cedarpy
    except ImportError:
        raise PolicyError(
            "Cedar policies need the cedarpy package, which is not installed",
            fix="pip install 'pyhall-mcp[cedar]'",
        ) from None
    return cedarpy


def _check_value(value: Any, where: str) -> None:
    """Refuse values Cedar would misread (reserved keys) or cannot represent (floats)."""
    kind = type(value)
    if kind is str or kind is bool:
        return
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise PolicyError(f"evaluation error: {where} is out of Cedar's integer range")
        return
    if kind is list:
        for item in value:
            _check_value(item, where)
        return
    if kind is dict:
        if _RESERVED.intersection(value):
            raise PolicyError(f"evaluation error: {where} uses a key reserved by Cedar")
        for item in value.values():
            _check_value(item, where)
        return
    raise PolicyError(f"evaluation error: {where} holds a {kind.__name__}, which Cedar cannot hold")


class CedarPolicyEngine:
    """Cedar policies, parsed and validated once; Allow/Deny plus the human-gate convention."""

    def __init__(
        self,
        *,
        policy_text: str,
        schema_text: str,
        base_dir: str | Path,
        path_base: str | Path | None,
        statements: list[dict[str, Any]],
        version: str,
    ) -> None:
        cedarpy = _cedarpy()
        self._is_authorized = cedarpy.is_authorized
        self._policies = cedarpy.PolicySet.from_str(policy_text)
        self._entities = cedarpy.Entities.from_json_str("[]")
        self._schema_text = schema_text
        self._base = os.path.abspath(os.fspath(base_dir))
        self._path_base = os.path.normpath(os.path.join(self._base, os.fspath(path_base or ".")))
        self._statements = statements
        self._names = {s["policy_id"]: s["id"] for s in statements}
        self.version = version
        self.warnings: list[str] = []

    # -- loading -------------------------------------------------------------

    @classmethod
    def load(
        cls,
        paths_or_dir: str | Path | Iterable[str | Path],
        *,
        base_dir: str | Path,
        tool_schemas: ToolSchemas | None = None,
        path_base: str | Path | None = None,
    ) -> CedarPolicyEngine:
        """Load ``*.cedar`` files and their schema; any problem is a ``PolicyError``.

        ``base_dir`` is the hall directory, ``path_base`` the hall's workspace
        (relative path arguments resolve against it; default ``base_dir``).
        ``tool_schemas`` is accepted for symmetry with the YAML engine; Cedar's
        own schema is what policies are checked against.
        """
        cedarpy = _cedarpy()
        if isinstance(paths_or_dir, (str, Path)) and Path(paths_or_dir).is_dir():
            directory = Path(paths_or_dir)
            files = sorted(directory.iterdir())
        else:
            items = [paths_or_dir] if isinstance(paths_or_dir, (str, Path)) else paths_or_dir
            files = sorted(Path(p) for p in items)
            directory = files[0].parent if files else Path(".")
        # Files or not: a dangling link or a directory must fail to read, never be skipped.
        policy_files = [p for p in files if p.suffix.lower() == ".cedar"]
        schemas = [
            p for p in files if p.name.lower().endswith((".cedarschema", ".cedarschema.json"))
        ]
        if not policy_files:
            raise PolicyError("no *.cedar policy files", file=str(directory))
        if len(schemas) != 1:
            raise PolicyError(
                f"expected exactly one Cedar schema, found {len(schemas)}",
                file=str(directory),
                fix="add one schema.cedarschema (or schema.cedarschema.json) next to the policies",
            )
        schema_text, schema_json = _read_schema(cedarpy, schemas[0])

        texts: list[str] = []
        statements: list[dict[str, Any]] = []
        bodies: list[bytes] = []
        for path in policy_files:
            text = _read_text(path)
            try:
                parsed = json.loads(cedarpy.policies_to_json_str(text))
            except ValueError as exc:
                raise PolicyError(
                    f"Cedar syntax error: {exc}", file=str(path), fix="correct the policy syntax"
                ) from None
            if parsed.get("templates"):
                raise PolicyError(
                    "policy templates are not supported",
                    file=str(path),
                    fix="write static policies",
                )
            # Cedar names policies policy0, policy1, ... in the concatenated text.
            for local_id, body in _in_text_order(parsed.get("staticPolicies", {})):
                policy_id = f"policy{len(statements)}"
                annotations = body.get("annotations") or {}
                statements.append(
                    {
                        "id": annotations.get("id", policy_id),
                        "policy_id": policy_id,
                        "effect": body.get("effect"),
                        "description": annotations.get("description", ""),
                        "file": str(path),
                        "local_id": local_id,
                    }
                )
                bodies.append(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
            texts.append(text)
        policy_text = "\n".join(texts)

        ids = [s["id"] for s in statements]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise PolicyError(
                f"duplicate @id annotations {duplicates}",
                file=str(directory),
                fix="give every policy a unique @id",
            )
        result = cedarpy.validate_policies(policy_text, schema_text)
        if not result.validation_passed:
            by_policy = {s["policy_id"]: s for s in statements}
            first = result.errors[0]
            stmt = by_policy.get(first.policy_id)
            raise PolicyError(
                f"policy does not validate against the schema: {first.error}"
                + (f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""),
                file=stmt["file"] if stmt else str(directory),
                location=f"@id {stmt['id']}" if stmt else first.policy_id,
                fix="fix the policy or declare what it uses in the schema",
            )
        for stmt in statements:
            del stmt["local_id"]
        version = digest(
            {
                "engine": "cedar/4",
                "policies": sorted(b.decode() for b in bodies),
                "schema": schema_json,
            }
        )
        return cls(
            policy_text=policy_text,
            schema_text=schema_text,
            base_dir=base_dir,
            path_base=path_base,
            statements=statements,
            version=version,
        )

    # -- evaluation ----------------------------------------------------------

    def _request(self, context: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(context, Mapping):
            raise PolicyError("evaluation error: the policy context must be a mapping")
        arguments = context.get("request")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise PolicyError("evaluation error: `request` (the tool arguments) must be a mapping")
        _check_value(arguments, "an argument")
        cedar_context: dict[str, Any] = {}
        for key in _CONTEXT_STRINGS:
            value = context.get(key)
            if value is not None:
                if type(value) is not str:
                    raise PolicyError(f"evaluation error: {key} must be a string")
                cedar_context[key] = value
        blast = context.get("blast_score")
        if blast is not None:
            if type(blast) is not int:
                raise PolicyError("evaluation error: blast_score must be an integer")
            cedar_context["blast_score"] = blast
        cedar_context["arguments"] = arguments
        cedar_context["paths"] = self._paths(arguments)
        tenant, worker = context.get("tenant_id"), context.get("worker_id")
        if type(tenant) is not str or (worker is not None and type(worker) is not str):
            raise PolicyError("evaluation error: tenant_id and worker_id must be strings")
        return {
            "principal": {"type": "Tenant", "id": tenant},
            "action": ACTION,
            "resource": {"type": "Worker", "id": worker or ""},
            "context": cedar_context,
        }

    def _paths(self, arguments: Mapping[str, Any]) -> dict[str, str]:
        paths = {}
        for name, value in arguments.items():
            if type(value) is str and len(value) <= _MAX_PATH and "\x00" not in value:
                absolute = os.path.normpath(os.path.join(self._path_base, value))
                paths[name] = os.path.relpath(absolute, self._base)
        return paths

    def _authorize(self, request: dict[str, Any], approved: bool) -> tuple[bool, list[str]]:
        request["context"]["human_approved"] = approved
        try:
            result = self._is_authorized(request, self._policies, self._entities)
        except Exception as exc:  # cedarpy raising is an engine error: deny
            raise PolicyError(f"evaluation error: Cedar failed: {type(exc).__name__}") from None
        diagnostics = result.diagnostics
        if diagnostics.errors:
            raise PolicyError(f"evaluation error: {diagnostics.errors[0]}")
        reasons = [self._names.get(r, r) for r in diagnostics.reasons]
        return result.allowed is True and result.decision.name == "Allow", reasons

    def decide(self, context: Mapping[str, Any]) -> PolicyResult:
        request = self._request(context)
        allowed, reasons = self._authorize(request, approved=False)
        if allowed:
            return PolicyResult("ALLOW", self.version, _reason("permit", reasons), _first(reasons))
        approved, approved_reasons = self._authorize(request, approved=True)
        if approved:
            # Only policies reading `context.human_approved` stood in the way.
            reason = f"{_reason('human gate', reasons)}; {_reason('then permit', approved_reasons)}"
            return PolicyResult("REQUIRE_HUMAN", self.version, reason, _first(approved_reasons))
        if not reasons:
            return PolicyResult("DENY", self.version, "default_deny: no Cedar policy permits this")
        return PolicyResult("DENY", self.version, _reason("forbid", reasons), _first(reasons))

    def evaluate(self, context: Mapping[str, Any]) -> tuple[str, str, str]:
        return self.decide(context).as_tuple()

    def describe(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self._statements]


def _first(reasons: list[str]) -> str | None:
    return reasons[0] if reasons else None


def _reason(kind: str, reasons: list[str]) -> str:
    return f"{kind}: {', '.join(reasons)}" if reasons else kind


def _in_text_order(policies: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return sorted(policies.items(), key=lambda item: int(item[0].removeprefix("policy") or 0))


def _read_text(path: Path) -> str:
    try:
        data = read_regular_file(path)
    except OSError as exc:
        raise PolicyError(f"cannot read file: {exc.strerror}", file=str(path)) from None
    if data is None:
        raise PolicyError("not a regular file", file=str(path), fix="replace it with a plain file")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise PolicyError("file is larger than 1 MiB", file=str(path), fix="split it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError("file is not UTF-8 text", file=str(path)) from None


def _read_schema(cedarpy: Any, path: Path) -> tuple[str, str]:
    """The schema as given (for validation) and a normalised rendering (for the version)."""
    text = _read_text(path)
    try:
        if path.name.endswith(".json"):
            schema = cedarpy.Schema.from_json_str(text)
        else:
            schema = cedarpy.Schema.from_str(text)
    except ValueError as exc:
        raise PolicyError(
            f"invalid Cedar schema: {exc}", file=str(path), fix="correct the schema"
        ) from None
    return text, str(schema)
