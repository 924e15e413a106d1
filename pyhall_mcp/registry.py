"""Worker enrollment records and the registry that answers the router (spec section 7).

A record is a worker's WCP enrollment plus what the gateway needs to serve it
as an MCP tool: the tool definition, the worker's default data label, how it
runs and its timeout. A bad record is quarantined with a message naming its
file and field; the good ones keep serving.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._yaml import load_document, read_regular_file
from .errors import ConfigError, RegistryError
from .models import DataLabel, Env
from .rules import canonical_control

__all__ = [
    "BlastRadius",
    "PrivilegeEnvelope",
    "Registry",
    "ToolSpec",
    "WorkerRecord",
    "check_identifier",
    "resolve_path",
    "worker_blast_score",
]

_ID = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+){1,3}$")
_LEGACY_ID = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+){1,5}$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RECORD_FILES = ("worker.yaml", "worker.yml", "registry_record.json")
_REVERSIBILITY_SCORE = {"reversible": 0, "partially-reversible": 3, "irreversible": 5}
_ALL_ENVS: tuple[Env, ...] = ("dev", "stage", "prod", "edge")


def check_identifier(value: str) -> str | None:
    """None when ``value`` is a conforming WCP id, else a warning (legacy ids pass)."""
    if len(value) <= 64 and _ID.match(value):
        return None
    if _LEGACY_ID.match(value):
        return f"{value!r} is a legacy id (underscores or more than 4 segments); accepted"
    return f"{value!r} is not a WCP identifier (2-4 dot-separated lowercase segments)"


def _hidden_characters(text: str) -> list[str]:
    """Invisible or bidirectional-control characters (tool poisoning hides instructions in them)."""
    return sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if unicodedata.category(c) in ("Cf", "Co", "Cs")
            or (unicodedata.category(c) == "Cc" and c not in "\n\t")
        }
    )


class ToolSpec(BaseModel):
    """The MCP tool a worker is served as."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str | None = Field(default=None, max_length=200)
    description: str = Field(min_length=1, max_length=4000)
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = Field(default_factory=dict)
    #: Arguments that name a file, and whether the worker reads or writes it: each call's
    #: real paths are checked against the worker's privilege envelope before it runs.
    path_arguments: dict[str, Literal["read", "write"]] = Field(default_factory=dict)

    @field_validator("annotations")
    @classmethod
    def _hints_are_booleans(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The SDK would read "yes" as true: a client must see what the record says.
        for key, hint in value.items():
            if key.endswith("Hint") and not isinstance(hint, bool):
                raise ValueError(f"{key} must be true or false")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TOOL_NAME.match(value):
            raise ValueError("tool names are 1-64 characters of A-Z a-z 0-9 _ . -")
        return value

    @field_validator("title", "description")
    @classmethod
    def _visible(cls, value: str | None) -> str | None:
        if value and (hidden := _hidden_characters(value)):
            raise ValueError(f"contains invisible or bidi control characters {', '.join(hidden)}")
        return value

    @field_validator("input_schema", "output_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if value.get("type") != "object":
            raise ValueError('must be a JSON Schema with "type": "object"')
        from ._schema import check_schema

        try:
            check_schema(value)
        except ValueError as exc:
            raise ValueError(f"is not a valid JSON Schema: {exc}") from None
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = {"title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unknown annotation(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        return value

    @field_validator("path_arguments")
    @classmethod
    def _string_arguments(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        input_schema = info.data.get("input_schema") or {}  # absent: that field's own error
        properties = input_schema.get("properties")
        for name in value:
            schema = properties.get(name) if isinstance(properties, dict) else None
            if not isinstance(schema, dict) or schema.get("type") != "string":
                raise ValueError(f"{name!r} is not a string property of input_schema")
        return value


class BlastRadius(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: int = Field(default=0, ge=0, le=5, strict=True)  # `true` is not a 1
    network: int = Field(default=0, ge=0, le=5, strict=True)
    financial: int = Field(default=0, ge=0, le=5, strict=True)
    time: int = Field(default=0, ge=0, le=5, strict=True)
    reversibility: Literal["reversible", "partially-reversible", "irreversible"] = "reversible"

    def score(self) -> int:
        """The five dimensions (0..5 each) scaled to 0..100."""
        total = self.data + self.network + self.financial + self.time
        return (total + _REVERSIBILITY_SCORE[self.reversibility]) * 4


def worker_blast_score(dimensions: Mapping[str, Any] | None) -> int:
    """Score a blast-radius mapping; an invalid one scores the maximum (fail closed)."""
    if not dimensions:
        return 0
    try:
        return BlastRadius.model_validate(dict(dimensions)).score()
    except ValidationError:
        return 100


class PrivilegeEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    secrets_access: tuple[str, ...] = ()
    #: "none", or the hosts the worker may reach.
    network_egress: Literal["none"] | tuple[str, ...] = "none"
    #: Directories (relative to the hall, or absolute) the worker may read / write below.
    filesystem_reads: tuple[str, ...] = ()
    filesystem_writes: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()

    @field_validator("filesystem_reads", "filesystem_writes")
    @classmethod
    def _non_empty_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not entry or "\x00" in entry:
                raise ValueError("directories must be non-empty paths without NUL bytes")
        return value


class WorkerRecord(BaseModel):
    """One enrolled worker: its WCP record and how the gateway serves it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker_id: str = Field(min_length=3, max_length=128)
    worker_species_id: str = Field(min_length=3, max_length=128)
    version: str = "0.0.0"
    capabilities: tuple[str, ...] = Field(min_length=1)
    risk_tier: Literal["low", "medium", "high", "critical"] = "medium"
    idempotency: str | None = None
    determinism: str | None = None
    required_controls: tuple[str, ...] = ()
    currently_implements: tuple[str, ...] = ()
    allowed_environments: tuple[Env, ...] = _ALL_ENVS
    blast_radius: BlastRadius | None = None
    privilege_envelope: PrivilegeEnvelope | None = None
    owner: str | None = None
    contact: str | None = None
    notes: str | None = None
    catalog_version_min: str | None = None
    artifact_hash: str | None = None
    attestation: dict[str, Any] | None = None
    # What the gateway adds.
    data_label: DataLabel = "PUBLIC"
    tool: ToolSpec | None = None
    runner: dict[str, Any] | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=3600, strict=True)

    @field_validator("worker_id", "worker_species_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable() or " " in value:
            raise ValueError("must be printable with no spaces")
        return value

    @field_validator("required_controls", "currently_implements")
    @classmethod
    def _controls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for control in value:
            if not _LEGACY_ID.match(control) or not control.startswith("ctrl."):
                raise ValueError(f"{control!r} is not a control id (ctrl.<area>.<name>)")
        return value

    @model_validator(mode="after")
    def _runner_needs_tool(self) -> WorkerRecord:
        if self.runner is not None and self.tool is None:
            raise ValueError("a worker with a runner must declare its `tool`")
        return self

    @model_validator(mode="after")
    def _paths_need_an_envelope(self) -> WorkerRecord:
        modes = set(self.tool.path_arguments.values()) if self.tool is not None else set()
        if not modes:
            return self
        envelope = self.privilege_envelope
        if envelope is None:
            raise ValueError(
                "tool.path_arguments needs a privilege_envelope naming the directories "
                "the worker may use"
            )
        if "write" in modes and not envelope.filesystem_writes:
            raise ValueError(
                "tool.path_arguments has a write argument but "
                "privilege_envelope.filesystem_writes is empty"
            )
        if "read" in modes and not (envelope.filesystem_reads or envelope.filesystem_writes):
            raise ValueError(
                "tool.path_arguments has a read argument but privilege_envelope "
                "names no filesystem_reads"
            )
        return self

    @cached_property  # frozen model: computed once per record
    def controls(self) -> frozenset[str]:
        return frozenset(canonical_control(c) for c in self.currently_implements)

    @property
    def namespace(self) -> str | None:
        """``org.<name>`` / ``x.<name>``: where trust is attributed (never ``wrk.``)."""
        parts = self.worker_id.split(".")
        return ".".join(parts[:2]) if parts[0] in ("org", "x") and len(parts) >= 2 else None

    def warnings(self) -> list[str]:
        found = [
            w
            for w in (check_identifier(self.worker_id), check_identifier(self.worker_species_id))
            if w
        ]
        if self.namespace is None:
            found.append(f"worker_id {self.worker_id!r} is not under org.<name> or x.<name>")
        return found


def resolve_path(path: str, base: str) -> str:
    """``path`` (relative to ``base``) as an absolute real path, every symlink followed.

    Strict, unlike ``os.path.realpath``'s default, which stops at a symlink loop and
    joins the rest of the path as text (so a later symlink would go unfollowed). A
    file that does not exist yet resolves through its real parent directory.
    ValueError when the path cannot be resolved: a NUL byte, over ``_PATH_MAX``
    characters, a loop, a missing directory, a dangling symlink; TypeError for a
    value that is not a string.
    """
    if "\x00" in path:
        raise ValueError("the path contains a NUL byte")
    if len(path) > _PATH_MAX:  # no open() takes it, and resolving is quadratic in its parts
        raise ValueError("the path is longer than any the system opens")
    joined = os.path.join(base, path)
    try:
        return os.path.realpath(joined, strict=True)
    except FileNotFoundError:
        pass
    except (OSError, RecursionError):  # RecursionError: a chain of ~1,000 symlinks
        raise ValueError("the path cannot be resolved") from None
    parent, name = os.path.split(joined)
    if name in ("", os.curdir, os.pardir) or os.path.lexists(joined):  # lexists: dangling
        raise ValueError("the path cannot be resolved")
    try:
        return os.path.join(os.path.realpath(parent, strict=True), name)
    except (OSError, RecursionError):
        raise ValueError("the path's directory cannot be resolved") from None


_PATH_MAX = 4096  # Linux's PATH_MAX, in bytes; counted in characters here (fewer)


def _inside(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or below it (both absolute real paths)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _within(path: Path, directory: Path, *, strictly: bool = False) -> bool:
    """:func:`_inside`, as written or once resolved; ``strictly``: below, not the same."""
    for a, b in (
        (os.path.normpath(path), os.path.normpath(directory)),
        (os.path.realpath(path), os.path.realpath(directory)),
    ):
        if _inside(a, b) and not (strictly and a == b):
            return True
    return False


def _validation_problem(exc: ValidationError, source: str) -> RegistryError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(record)"
    message = first["msg"].removeprefix("Value error, ")
    return RegistryError(
        message,
        file=source,
        location=field,
        fix="correct the field; see docs/reference.md#worker-records",
    )


class Registry:
    """Enrolled workers, looked up by id, species, capability and tool name.

    Compatible with the reference ``pyhall.Registry``; unlike it, controls are
    per worker, ``allowed_environments`` and ``blast_radius`` are used in
    routing, and the privilege check is real.
    """

    def __init__(self, registry_dir: str | Path | None = None) -> None:
        self._records: dict[str, WorkerRecord] = {}
        self._sources: dict[str, str] = {}
        self._dirs: dict[str, Path] = {}
        self._by_species: dict[str, tuple[WorkerRecord, ...]] = {}
        self._by_tool: dict[str, WorkerRecord] = {}
        self._clashed_tools: set[str] = set()
        self._extra_controls: frozenset[str] = frozenset()
        self._declared_controls: frozenset[str] | None = None
        self._available_override: frozenset[str] | None = None
        self._egress_allowlist: dict[str, tuple[str, ...]] = {}
        self._hall_dir: str | None = None  # relative envelope directories resolve here
        self._path_base: str | None = None  # relative path arguments resolve here
        self._attested: dict[str, tuple[str, Callable[[], str | None]]] = {}
        self.problems: list[RegistryError] = []
        self._withdrawn: set[str] = set()  # ids and tool names of quarantined records
        if registry_dir is not None:
            self.load_dir(registry_dir)

    # -- loading ---------------------------------------------------------------
    @classmethod
    def load(cls, workers_dir: str | Path) -> Registry:
        registry = cls()
        registry.load_dir(workers_dir)
        return registry

    def load_dir(self, workers_dir: str | Path) -> None:
        """Enroll every record below ``workers_dir``; quarantine bad ones in ``problems``."""
        root = Path(workers_dir)
        if not root.is_dir():
            raise RegistryError(
                "workers directory not found",
                file=str(root),
                fix="create it or point --hall at a hall directory",
            )
        files = sorted(root.glob("*.json"))
        for child in sorted(p for p in root.iterdir() if p.is_dir()):
            found = [child / name for name in _RECORD_FILES if (child / name).is_file()]
            if len(found) > 1:  # which one is meant is anyone's guess: neither is served
                for path in found:
                    with contextlib.suppress(ConfigError):
                        self._withdrawn.update(_names_in(load_document(path)))
                self.quarantine(
                    RegistryError(
                        "more than one record file: none of them is served",
                        file=str(child),
                        fix=f"keep one of {', '.join(p.name for p in found)}",
                    )
                )
                continue
            files.extend(found)
        for path in files:
            document: Any = None
            try:
                document = load_document(path)
                self.enroll(document, source=str(path), base_dir=path.parent)
            except ConfigError as exc:
                self._withdrawn.update(
                    _names_in(document) if document is not None else _names_in_text(path)
                )
                self.quarantine(
                    exc
                    if isinstance(exc, RegistryError)
                    else RegistryError(
                        exc.message, file=exc.file, location=exc.location, fix=exc.fix
                    )
                )
        self._reindex()

    def quarantine(self, problem: RegistryError, worker_id: str | None = None) -> None:
        """Record ``problem`` (said on stderr); withdraw ``worker_id`` when it is enrolled."""
        if worker_id is not None:
            record = self._records.get(worker_id)
            if record is not None and record.tool is not None:
                self._withdrawn.add(record.tool.name)
            self._withdrawn.add(worker_id)
            self.remove(worker_id)
        self.problems.append(problem)
        print(f"pyhall: worker quarantined: {problem.describe()}", file=sys.stderr)

    @property
    def withdrawn(self) -> frozenset[str]:
        """Worker ids and tool names of quarantined records that no served worker holds.

        Policy statements may name them: such a worker cannot be called, so a
        statement about it is moot until its record is mended (and the hall reloaded).
        """
        return frozenset(self._withdrawn - self._records.keys() - self._by_tool.keys())

    def enroll(
        self,
        record: Mapping[str, Any] | WorkerRecord,
        *,
        source: str | None = None,
        base_dir: str | Path | None = None,
    ) -> WorkerRecord:
        """Validate and add one record; raises ``RegistryError`` naming the field."""
        source = source or "<record>"
        if isinstance(record, WorkerRecord):
            parsed = record
        else:
            if not isinstance(record, Mapping):
                raise RegistryError("a record must be a mapping", file=source)
            try:
                parsed = WorkerRecord.model_validate(dict(record))
            except ValidationError as exc:
                raise _validation_problem(exc, source) from None
        if parsed.worker_id in self._records and self._sources.get(parsed.worker_id) != source:
            raise RegistryError(
                f"worker_id {parsed.worker_id!r} is already enrolled from "
                f"{self._sources[parsed.worker_id]}",
                file=source,
                location="worker_id",
                fix="give each worker a unique worker_id",
            )
        if parsed.tool is not None:
            name = parsed.tool.name
            other = self._by_tool.get(name)
            if name in self._clashed_tools or (
                other is not None and other.worker_id != parsed.worker_id
            ):
                # Tool shadowing: neither worker gets the name, whichever came first.
                self._clashed_tools.add(name)
                if other is not None:
                    self.quarantine(
                        RegistryError(
                            f"tool name {name!r} is also claimed by {parsed.worker_id}; "
                            "neither is served",
                            file=self._sources.get(other.worker_id),
                            location="tool.name",
                            fix="give each tool a unique name",
                        ),
                        other.worker_id,
                    )
                raise RegistryError(
                    f"tool name {name!r} is claimed by more than one worker; neither is served",
                    file=source,
                    location="tool.name",
                    fix="give each tool a unique name",
                )
        self._records[parsed.worker_id] = parsed
        self._sources[parsed.worker_id] = source
        if self._declared_controls is not None:
            self._declared_controls = self._declared_controls | parsed.controls
        if base_dir is not None:
            self._dirs[parsed.worker_id] = Path(base_dir).resolve()
        self._reindex()
        return parsed

    def remove(self, worker_id: str) -> None:
        self._records.pop(worker_id, None)
        self._sources.pop(worker_id, None)
        self._dirs.pop(worker_id, None)
        self._attested.pop(worker_id, None)
        self._reindex()

    def _reindex(self) -> None:
        species: dict[str, list[WorkerRecord]] = {}
        tools: dict[str, WorkerRecord] = {}
        for worker_id in sorted(self._records):
            record = self._records[worker_id]
            species.setdefault(record.worker_species_id, []).append(record)
            if record.tool is not None:
                tools[record.tool.name] = record
        self._by_species = {k: tuple(v) for k, v in species.items()}
        self._by_tool = tools

    # -- lookups ---------------------------------------------------------------
    @property
    def records(self) -> list[WorkerRecord]:
        return [self._records[k] for k in sorted(self._records)]

    def get(self, worker_id: str) -> WorkerRecord | None:
        return self._records.get(worker_id)

    def source_of(self, worker_id: str) -> str | None:
        return self._sources.get(worker_id)

    def directory_of(self, worker_id: str) -> Path | None:
        return self._dirs.get(worker_id)

    def by_tool(self, name: str) -> WorkerRecord | None:
        return self._by_tool.get(name)

    def of_species(self, species_id: str) -> tuple[WorkerRecord, ...]:
        return self._by_species.get(species_id, ())

    def by_capability(self, capability_id: str) -> list[WorkerRecord]:
        return [r for r in self.records if capability_id in r.capabilities]

    def workers_for_capability(self, capability_id: str) -> list[str]:
        """Species serving ``capability_id`` (reference API)."""
        return sorted({r.worker_species_id for r in self.by_capability(capability_id)})

    def enrolled_workers(self) -> list[dict[str, Any]]:
        return [r.model_dump(exclude_none=True) for r in self.records]

    def enrolled_count(self) -> int:
        return len(self._records)

    # -- controls (per worker) -------------------------------------------------------
    def controls_of(self, record: WorkerRecord) -> frozenset[str]:
        return record.controls | self._extra_controls

    def controls_present(self) -> set[str]:
        """Every control some worker implements (reference API; routing uses per-worker sets).

        After ``set_controls_present`` it is that set (plus what enrolls later), as in
        the reference: an operator narrowing the set must see denials, not a silent pool.
        """
        if self._declared_controls is not None:
            return set(self._declared_controls)
        pooled = set(self._extra_controls)
        for record in self._records.values():
            pooled |= record.controls
        return pooled

    def set_controls_present(self, controls: Iterable[str]) -> None:
        """Controls the hall provides to every worker (replaces the previous set)."""
        self._extra_controls = frozenset(
            canonical_control(c) for c in controls if str(c).startswith("ctrl.")
        )
        self._declared_controls = self._extra_controls

    def add_controls_present(self, controls: Iterable[str]) -> None:
        added = {canonical_control(c) for c in controls if str(c).startswith("ctrl.")}
        self._extra_controls = self._extra_controls | added
        if self._declared_controls is not None:
            self._declared_controls = self._declared_controls | added

    # -- availability ----------------------------------------------------------------
    def set_workers_available(self, worker_species_ids: Iterable[str]) -> None:
        """Restrict availability to these species (reference API)."""
        self._available_override = frozenset(worker_species_ids)

    def is_available(self, record: WorkerRecord) -> bool:
        override = self._available_override
        return override is None or record.worker_species_id in override

    def worker_available(self, worker_species_id: str) -> bool:
        return any(self.is_available(r) for r in self.of_species(worker_species_id))

    # -- privilege envelopes ---------------------------------------------------------
    def get_privilege_envelope(self, worker_species_id: str) -> dict[str, Any] | None:
        for record in self.of_species(worker_species_id):
            if record.privilege_envelope is not None:
                return record.privilege_envelope.model_dump()
        return None

    def set_egress_allowlist(self, env: str, allowlist: Iterable[str]) -> None:
        self._egress_allowlist[env] = tuple(allowlist)

    def policy_allows_privilege(
        self, env: str, data_label: str, envelope: Mapping[str, Any] | None
    ) -> tuple[bool, str]:
        """Whether a privilege envelope may run in ``env`` with ``data_label`` data.

        In prod and edge, a worker touching RESTRICTED data may hold no secrets
        and reach only hosts on the environment's egress allowlist. Anywhere, a
        worker with no envelope at all is refused: undeclared privileges are
        unbounded privileges.
        """
        if envelope is None:
            return False, "no_privilege_envelope_declared"
        try:
            parsed = PrivilegeEnvelope.model_validate(dict(envelope))
        except (ValidationError, TypeError, ValueError):
            return False, "privilege_envelope_invalid"
        if env in ("prod", "edge") and data_label == "RESTRICTED":
            if parsed.secrets_access:
                return False, "secrets_access_not_allowed_for_restricted_data"
            if parsed.network_egress != "none":
                allowed = set(self._egress_allowlist.get(env, ()))
                outside = sorted(set(parsed.network_egress) - allowed)
                if outside:
                    return False, f"egress_not_allowlisted:{outside[0]}"
        return True, "privilege_envelope_ok"

    def set_hall_dir(self, hall_dir: str | Path, workspace: str | Path | None = None) -> None:
        """Where relative envelope directories (the hall) and relative path arguments
        (the workspace, else the hall) resolve."""
        self._hall_dir = os.fspath(hall_dir)
        self._path_base = os.fspath(workspace) if workspace is not None else self._hall_dir

    def files_named(
        self, record: WorkerRecord, request: Mapping[str, Any]
    ) -> dict[str, dict[str, str | None]]:
        """The files a call names through its tool's ``path_arguments``, resolved now:
        ``{"read": {argument: real path}, "write": {...}}``; None for a path that cannot
        be resolved. Resolving is I/O: the router reaches it only through the registry,
        as it reaches a worker's current hash."""
        named: dict[str, dict[str, str | None]] = {}
        declared = record.tool.path_arguments if record.tool is not None else {}
        if not declared:
            return named
        if self._path_base is None:
            raise RuntimeError("the registry has no hall directory to resolve paths against")
        for argument, access in declared.items():
            if argument not in request:
                continue
            # Not a string: only a caller that skips the schema check (pyhall route, the
            # library) gets here, and it is denied as unresolvable.
            value = request[argument]
            try:
                real: str | None = resolve_path(value, self._path_base)
            except (ValueError, TypeError):
                real = None
            named.setdefault(access, {})[argument] = real
        return named

    def filesystem_allows(
        self, envelope: Mapping[str, Any] | None, named: Mapping[str, Mapping[str, str | None]]
    ) -> tuple[bool, str, str | None]:
        """Whether the files a call names (:meth:`files_named`) lie inside the envelope.

        A write needs a ``filesystem_writes`` directory; a read either kind. The
        directories are resolved now, so a symlinked one counts where it points today,
        and one that cannot be resolved confines nothing. ``(ok, reason, argument)``.
        """
        if envelope is None:
            return False, "no_privilege_envelope_declared", None
        try:
            parsed = PrivilegeEnvelope.model_validate(dict(envelope))
        except (ValidationError, TypeError, ValueError):
            return False, "privilege_envelope_invalid", None
        if self._hall_dir is None:
            return False, "filesystem_base_unset", None
        writable = self._directories(parsed.filesystem_writes)
        readable = self._directories(parsed.filesystem_reads) + writable
        for access, arguments in sorted(named.items()):
            directories = writable if access == "write" else readable
            for argument, path in sorted(arguments.items()):
                if path is None:
                    return False, "path_unresolvable", argument
                if not any(_inside(path, d) for d in directories):
                    return False, f"{access}_outside_envelope", argument
        return True, "privilege_envelope_ok", None

    def _directories(self, entries: tuple[str, ...]) -> list[str]:
        assert self._hall_dir is not None
        found = []
        for entry in entries:
            try:
                found.append(os.path.realpath(os.path.join(self._hall_dir, entry), strict=True))
            except (OSError, RecursionError):
                continue  # missing or a loop: confines nothing
        return found

    def quarantine_unsafe_envelopes(
        self, *, secret: Iterable[Path], config: Iterable[Path]
    ) -> None:
        """Quarantine workers whose envelope directories would undo the hall's guarantees.

        A directory may not hold a ``secret`` path (the hall's state: signing key,
        receipts) nor, to be written, a ``config`` one. And no directory may lie strictly
        inside one a worker may write: that worker could replace it with a symlink and
        so widen the other's reach (the checks and the sandbox resolve directories at
        each call). Needs :meth:`set_hall_dir`.
        """
        assert self._hall_dir is not None
        hall, secret, config = Path(self._hall_dir), list(secret), list(config)

        def directories(record: WorkerRecord) -> list[tuple[str, str, Path]]:
            envelope = record.privilege_envelope
            if envelope is None:
                return []
            return [
                (field_name, entry, hall / entry)
                for field_name, entries in (
                    ("filesystem_reads", envelope.filesystem_reads),
                    ("filesystem_writes", envelope.filesystem_writes),
                )
                for entry in entries
            ]

        def refuse(record: WorkerRecord, field_name: str, why: str) -> None:
            problem = RegistryError(
                why,
                file=self.source_of(record.worker_id),
                location=f"privilege_envelope.{field_name}",
                fix="name a directory apart from the hall's files and from what workers write",
            )
            self.quarantine(problem, record.worker_id)

        for record in self.records:
            for field_name, entry, directory in directories(record):
                guarded = secret if field_name == "filesystem_reads" else config
                if any(_within(path, directory) for path in guarded):
                    refuse(record, field_name, f"{entry!r} holds the hall's own files")
                    break
        writable = [
            (record.worker_id, directory)
            for record in self.records
            for field_name, _, directory in directories(record)
            if field_name == "filesystem_writes"
        ]
        for record in self.records:
            for field_name, entry, directory in directories(record):
                owner = next((w for w, d in writable if _within(directory, d, strictly=True)), None)
                if owner is not None:
                    why = f"{entry!r} lies inside a directory {owner} may write"
                    refuse(record, field_name, f"{why}, which could replace it with a symlink")
                    break

    # -- attestation -----------------------------------------------------------------
    def set_attestation(
        self, worker_id: str, registered: str, current: Callable[[], str | None]
    ) -> None:
        """Attest a worker: its verified digest, and a cheap way to read its current one."""
        self._attested[worker_id] = (registered, current)

    def attestation_of(self, worker_id: str) -> tuple[str, Callable[[], str | None]] | None:
        return self._attested.get(worker_id)

    def register_attestation(self, species_id: str, source_file: str | Path) -> str:
        """Reference API: snapshot the hash of one source file for every worker of a species."""
        path = Path(source_file)
        digest = _hash_file(path)
        if digest is None:
            raise RegistryError("worker source file cannot be read", file=str(path))
        workers = self.of_species(species_id)
        if not workers:
            raise RegistryError(f"no enrolled worker of species {species_id!r}")
        for record in workers:
            self._attested[record.worker_id] = (digest, lambda p=path: _hash_file(p))
        return digest

    def get_worker_hash(self, species_id: str) -> str | None:
        for record in self.of_species(species_id):
            if record.worker_id in self._attested:
                return self._attested[record.worker_id][0]
        return None

    def compute_current_hash(self, species_id: str) -> str | None:
        for record in self.of_species(species_id):
            if record.worker_id in self._attested:
                return self._attested[record.worker_id][1]()
        return None

    def attestation_callables(
        self,
    ) -> tuple[Callable[[str], str | None], Callable[[str], str | None]]:
        return self.get_worker_hash, self.compute_current_hash

    # -- introspection ---------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        return {
            "enrolled_workers": len(self._records),
            "available_species": sorted(
                {r.worker_species_id for r in self._records.values() if self.is_available(r)}
            ),
            "controls_present_count": len(self.controls_present()),
            "controls_present": sorted(self.controls_present()),
            "capabilities_mapped": sorted(
                {c for r in self._records.values() for c in r.capabilities}
            ),
            "tools": sorted(self._by_tool),
            "quarantined": [p.describe() for p in self.problems],
        }


def _names_in(document: Any) -> set[str]:
    """The worker id and tool name a record (valid or not) says it has."""
    if not isinstance(document, Mapping):
        return set()
    tool = document.get("tool")
    names = {document.get("worker_id"), tool.get("name") if isinstance(tool, Mapping) else None}
    return {name for name in names if isinstance(name, str)}


#: Best-effort reading of a record that does not parse, in YAML or JSON form. Each
#: pattern matches without nested repetition: the text may be hostile, and a regex that
#: backtracks would stall the hall's load.
_ID_IN_TEXT = re.compile(
    r"""(?:^|[{,])[ \t]*["']?worker_id["']?[ \t]*:[ \t]*["']?([\w.-]+)""", re.M
)
_TOOL_LINE = re.compile(r"""[ \t]*["']?tool["']?[ \t]*:[ \t]*\{?[ \t]*""")
_NAME_LINE = re.compile(r"""[ \t]+["']?name["']?[ \t]*:[ \t]*["']?([\w.-]+)""")
#: JSON on one line: ``name`` among the tool's scalar members.
_TOOL_NAME_INLINE = re.compile(
    r'"tool"[ \t]*:[ \t]*\{(?:[ \t]*"[^"]*"[ \t]*:[ \t]*(?:"[^"]*"|[^{}\[\],"\s]+)[ \t]*,)*'
    r'[ \t]*"name"[ \t]*:[ \t]*"([\w.-]+)"'
)


def _tool_name_in_lines(lines: list[str]) -> str | None:
    """The first indented ``name:`` under the first ``tool:`` line, before the next
    top-level key (one pass: the text may be hostile)."""
    start = next((i for i, line in enumerate(lines) if _TOOL_LINE.fullmatch(line)), None)
    if start is None:
        return None
    for follow in lines[start + 1 :]:
        if follow and not follow[0].isspace():
            return None
        if found := _NAME_LINE.match(follow):
            return found.group(1)
    return None


def _names_in_text(path: Path) -> set[str]:
    """The worker id and tool name a record that does not parse seems to give, so that
    policy statements naming it see a quarantined worker, not a typo."""
    try:
        data = read_regular_file(path)
    except OSError:
        return set()
    text = (data or b"").decode("utf-8", "replace")
    inline = _TOOL_NAME_INLINE.search(text)
    names = {
        found.group(1) if (found := _ID_IN_TEXT.search(text)) else None,
        _tool_name_in_lines(text.splitlines()),
        inline.group(1) if inline else None,
    }
    return {name for name in names if name}


def _hash_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def is_worker_id(value: object) -> bool:
    """Whether ``value`` is a worker id a record may carry (two to four dotted parts)."""
    return isinstance(value, str) and bool(_ID.match(value))


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and bool(_HEX64.match(value))
