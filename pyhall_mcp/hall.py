"""A hall: one directory of configuration, assembled into something that decides and runs.

``Hall.load`` reads ``hall.yaml`` (plus the operator's launch overrides), the
rules, the workers, the policies and the trusted keys, and refuses to start
on anything invalid with a message naming the file, the field and the fix.
``Hall.call`` is the one path a tool call takes: validate the arguments
against the worker's pinned schema, build the RouteInput from the operator's
settings (never from the model's arguments), decide, make the decision
receipt durable, run the worker, receipt the outcome. The gateway and the
CLI sit on top and hold no governance logic of their own.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.lowlevel
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from . import telemetry
from ._schema import SchemaValidator
from ._yaml import load_document
from .audit import Durability
from .canonical import canonical_json, digest
from .errors import (
    AttestationError,
    AuditError,
    ConfigError,
    PyhallError,
    RegistryError,
    report_failure,
    unreadable,
)
from .layout import HallLayout
from .models import (
    DATA_LABEL_ORDER,
    DataLabel,
    Env,
    HallConfig,
    QoSClass,
    RouteDecision,
    RouteInput,
    TenantRisk,
)
from .registry import Registry, WorkerRecord
from .router import make_decision
from .rules import RuleSet, load_rule_set
from .signing import Keyring, SigningKey

if TYPE_CHECKING:
    from .approvals import ApprovalDesk
    from .audit import ReceiptLog
    from .policy import PolicyEngine
    from .runners import ProgressFn, Runner, WorkerResult

__all__ = [
    "META_CORRELATION_ID",
    "META_DATA_LABEL",
    "META_DRY_RUN",
    "META_GOVERNANCE",
    "CallOutcome",
    "Hall",
    "HallSettings",
    "load_hall",
    "load_settings",
    "overrides_from_environ",
    "policy_for",
    "rule_files",
    "settings_warnings",
    "workspace_dir",
]

#: ``_meta`` keys a client may send with a call, and the key of the governance record.
META_CORRELATION_ID = "dev.pyhall/correlation_id"
META_DRY_RUN = "dev.pyhall/dry_run"
META_DATA_LABEL = "dev.pyhall/data_label"
META_GOVERNANCE = "dev.pyhall/governance"

_RULE_SUFFIXES = (".yaml", ".yml", ".json")
_MAX_ERRORS = 5

OutcomeStatus = Literal[
    "allowed", "denied", "held", "dry_run", "invalid_arguments", "unknown_tool", "internal_error"
]


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool = True  # YAML's true or false: "yes" must not switch receipts
    #: When a receipt counts as written: ``fsync`` (on disk, survives a power loss) or
    #: ``os`` (handed to the operating system: survives the gateway's crash, not the machine's).
    durability: Durability = "fsync"
    checkpoint_every: int = Field(default=1000, gt=0)
    checkpoint_interval_s: float = Field(default=30.0, gt=0)


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Far below what the stdio transport reads in one message (_stdio.MAX_MESSAGE_BYTES).
    max_argument_bytes: int = Field(default=256 * 1024, gt=0, le=4 * 1024 * 1024)
    #: At most what a runner reads back from a worker (runners.MAX_LINE_BYTES).
    max_result_bytes: int = Field(default=1024 * 1024, gt=0, le=1024 * 1024)


class ApprovalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: May the person at the MCP client approve a held call through elicitation? That
    #: person answers through software the agent runs, so the governed client could
    #: approve its own call: unset means only in ``dev``; stage/prod/edge need ``true``.
    in_band: StrictBool | None = None


class HallSettings(BaseModel):
    """``hall.yaml``: who this gateway serves, with which floors, from where."""

    model_config = ConfigDict(extra="forbid")

    name: str = "hall"
    description: str | None = None
    env: Env = "dev"
    tenant_id: str = Field(default="default", min_length=1, max_length=256)
    tenant_risk: TenantRisk = "low"
    qos_class: QoSClass = "P2"
    data_label: DataLabel = "PUBLIC"
    #: The operator's tenant credential (normally given at launch, not in the file).
    tenant_credential: str | None = None
    floors: HallConfig = Field(default_factory=lambda: HallConfig(enforce_policy_gate=True))
    rules: list[str] = Field(default_factory=lambda: ["rules"])
    workspace: str | None = "workspace"
    deny_mode: Literal["result", "jsonrpc"] = "result"
    events: Literal["stderr", "off"] = "stderr"
    egress_allowlist: dict[Env, list[str]] = Field(default_factory=dict)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    reload_interval_s: float = Field(default=1.0, ge=0)

    @field_validator("tenant_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @property
    def in_band_approval(self) -> bool:
        """Whether held calls may be approved in band (``approvals.in_band``, else dev only)."""
        if self.approvals.in_band is not None:
            return self.approvals.in_band
        return self.env == "dev"


#: Operator settings taken from the environment, as an MCP client config passes them.
_ENV_SETTINGS = {
    "PYHALL_ENV": "env",
    "PYHALL_TENANT": "tenant_id",
    "PYHALL_TENANT_RISK": "tenant_risk",
    "PYHALL_QOS": "qos_class",
    "PYHALL_DATA_LABEL": "data_label",
    "PYHALL_TENANT_CREDENTIAL": "tenant_credential",
    "PYHALL_DENY_MODE": "deny_mode",
    "PYHALL_EVENTS": "events",
}
#: The ``pyhall-mcp`` flag of each launch setting, for error messages.
_FLAGS = {
    "env": "--env",
    "tenant_id": "--tenant",
    "tenant_risk": "--tenant-risk",
    "qos_class": "--qos",
    "data_label": "--data-label",
    "deny_mode": "--deny-mode",
    "events": "--events",
}
#: Where hall.yaml, rules, worker records and policies are described.
_REFERENCE = "docs/reference.md"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def overrides_from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Launch overrides from ``PYHALL_*`` variables; floors as ``PYHALL_<FLOOR>``."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for var, key in _ENV_SETTINGS.items():
        if environ.get(var):
            out[key] = environ[var]
    floors: dict[str, Any] = {}
    for name in HallConfig.model_fields:
        var = f"PYHALL_{name.upper()}"
        raw = environ.get(var)
        if raw:
            floors[name] = parse_floor(name, raw, f"environment variable {var}")
    if floors:
        out["floors"] = floors
    return out


#: ``PYHALL_*`` variables that are not launch settings.
_OTHER_VARIABLES = ("PYHALL_HALL", "PYHALL_STATE_DIR", "PYHALL_OTEL", "PYHALL_UPDATE_GOLDENS")


def settings_warnings(
    settings: HallSettings,
    records: Iterable[WorkerRecord] = (),
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Settings that weaken what a call proves, or that pyhall would ignore: never silent
    (said at start, by ``--check`` and by ``pyhall validate``). ``records``: the workers,
    whose ``runner.env_allow`` may pass ``PYHALL_*`` variables on."""
    passed_on = {
        name
        for record in records
        for name in (record.runner or {}).get("env_allow") or ()
        if isinstance(name, str)
    }
    warnings = _unknown_environment(os.environ if environ is None else environ, passed_on)
    if not settings.audit.enabled:
        warnings.append("audit.enabled is false: calls leave no receipts")
    if settings.tenant_credential and not settings.floors.require_credential:
        warnings.append(
            "a tenant credential is set but floors.require_credential is false: it is "
            "never checked (set PYHALL_REQUIRE_CREDENTIAL=true to enforce it)"
        )
    return warnings


def _unknown_environment(environ: Mapping[str, str], passed_on: Iterable[str]) -> list[str]:
    # A misspelt floor (PYHALL_REQUIRE_SIGNATORIES) would otherwise be dropped unseen.
    known = [
        *_ENV_SETTINGS,
        *(f"PYHALL_{name.upper()}" for name in HallConfig.model_fields),
        *_OTHER_VARIABLES,
        *passed_on,
    ]
    warnings = []
    for var in sorted(v for v in environ if v.startswith("PYHALL_") and v not in known):
        close = difflib.get_close_matches(var, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"environment variable {var} is not a pyhall setting{hint}: ignored")
    return warnings


def parse_floor(name: str, raw: str, source: str) -> Any:
    """A floor given as text (``PYHALL_<FLOOR>`` or ``--floor NAME=VALUE``), typed by its
    field: true/false for a switch, a comma list of tenants; the rest validates later."""
    info = HallConfig.model_fields.get(name)
    if info is not None and info.annotation is bool:
        lowered = raw.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise ConfigError(
                f"expected true or false, got {raw!r}", file=source, fix="use true or false"
            )
        return lowered in _TRUE
    if name == "allowed_tenants":
        return [tenant.strip() for tenant in raw.split(",") if tenant.strip()]
    return raw.strip()


def load_settings(layout: HallLayout, overrides: Mapping[str, Any]) -> HallSettings:
    """``hall.yaml`` with launch overrides applied, validated."""
    source = str(layout.hall_yaml)
    if not layout.hall_yaml.is_file():
        raise ConfigError(
            "hall.yaml not found",
            file=source,
            fix="point --hall (or PYHALL_HALL) at a hall directory, or run `pyhall init DIR`",
        )
    doc = load_document(layout.hall_yaml)
    if doc is None:
        # An editor that truncates before it writes must not serve the loosest defaults.
        raise ConfigError(
            "hall.yaml is empty",
            file=source,
            fix="declare at least env and tenant_id (`pyhall init DIR` writes a full example)",
        )
    if not isinstance(doc, dict):
        raise ConfigError("expected a mapping", file=source, fix=f"see {_REFERENCE}#hallyaml")
    written = doc.get("floors", {})  # only a missing key means the defaults
    if not isinstance(written, dict):
        raise ConfigError(
            f"expected a mapping of floor names to values, got {written!r}"[:200],
            file=source,
            location="floors",
            fix=f"list floors as `name: value`, or remove the key for the defaults; see "
            f"{_REFERENCE}#floors",
        )
    floors = {"enforce_policy_gate": True, **written}
    merged = {**doc, **{k: v for k, v in overrides.items() if k != "floors"}}
    merged["floors"] = {**floors, **(overrides.get("floors") or {})}
    try:
        return HallSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = [str(p) for p in first["loc"]]
        launch = _launch_origin(path, overrides)
        raise ConfigError(
            first["msg"].removeprefix("Value error, "),
            file=launch or source,
            location=".".join(path),
            fix=f"correct {'it' if launch else 'the value'}; see {_REFERENCE}#hallyaml",
        ) from None


def _launch_origin(path: list[str], overrides: Mapping[str, Any]) -> str | None:
    """The flag or variable that set the launch override at ``path``; None when the
    value came from hall.yaml."""
    if path[0] == "floors" and len(path) > 1:
        given = overrides.get("floors") or {}
        name = path[1]
        var, flag = f"PYHALL_{name.upper()}", f"--floor {name}=..."
    else:
        given, name = overrides, path[0]
        var = next((v for v, key in _ENV_SETTINGS.items() if key == name), "")
        flag = _FLAGS.get(name, "")
    if name not in given:
        return None
    raw = os.environ.get(var) if var else None
    if raw:
        from_environ: Any = raw
        if path[0] == "floors":
            with contextlib.suppress(ConfigError):
                from_environ = parse_floor(name, raw, var)
        if from_environ == given[name] or not flag:  # a flag would have replaced it
            return f"environment variable {var}"
    return f"launch flag {flag}" if flag else "a launch setting"


def policy_for(
    layout: HallLayout,
    settings: HallSettings,
    records: Iterable[WorkerRecord],
    withdrawn: Iterable[str] = (),
) -> PolicyEngine:
    """The hall's policy engine, its argument conditions checked against these workers' tools.

    Statements may also name the ``withdrawn`` (quarantined) workers: one broken record
    takes its own tool out of service, not the whole hall.

    Relative ``under:`` directories resolve against the hall; relative path
    arguments against the workspace, as the file workers read them.
    """
    from .policy import load_policy_engine

    schemas: dict[str, Mapping[str, Any] | None] = dict.fromkeys(withdrawn)
    for record in records:
        if record.tool is not None:
            schemas[record.worker_id] = schemas[record.tool.name] = record.tool.input_schema
    return load_policy_engine(
        layout.policies_dir,
        base_dir=layout.root,
        tool_schemas=schemas or None,
        path_base=workspace_dir(layout, settings),
    )


def _credential_issuers(trusted: Keyring) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        k.key_id: k.public_key
        for k in trusted
        if "credentials" in k.purposes and k.valid_at(now)  # revoked keys drop out
    }


def readiness_problems(
    layout: HallLayout, settings: HallSettings, trusted: Keyring
) -> list[ConfigError]:
    """Settings a hall loads with, although some or all of its calls would then fail:
    reported by ``pyhall validate`` and ``pyhall-mcp --check``."""
    problems = []
    workspace = workspace_dir(layout, settings)
    if workspace is not None and not workspace.is_dir():
        problems.append(
            ConfigError(
                f"{workspace} is not a directory: calls confined to it will fail",
                file=str(layout.hall_yaml),
                location="workspace",
                fix="create the directory, or correct workspace",
            )
        )
    floors = settings.floors
    issuers = floors.credential_issuers or _credential_issuers(trusted)
    if floors.require_credential and not issuers:
        problems.append(
            ConfigError(
                "no credential issuer is trusted: every call will be denied "
                "DENY_INVALID_CREDENTIAL",
                file=str(layout.hall_yaml),
                location="floors.require_credential",
                fix="trust an issuer key (purpose credentials) in keys/trusted.yaml, "
                "or set floors.credential_issuers",
            )
        )
    elif floors.require_credential:
        from .credentials import CredentialError, verify_credential

        try:  # what the router checks on every call, checked once now
            verify_credential(
                settings.tenant_credential, tenant_id=settings.tenant_id, issuers=issuers
            )
        except CredentialError as exc:
            problems.append(
                ConfigError(
                    f"the tenant credential is refused ({exc}): every call will be denied "
                    "DENY_INVALID_CREDENTIAL",
                    file="PYHALL_TENANT_CREDENTIAL",
                    location="tenant_credential",
                    fix=f"issue one for tenant {settings.tenant_id} with `pyhall tenant issue`",
                )
            )
    return problems


def check_state(layout: HallLayout, settings: HallSettings) -> None:
    """Raise ConfigError for what in the state directory would stop the gateway's start,
    writing nothing: the approvals store, the signing key (its permissions), the receipt
    keyring and the audit log's schema."""
    from .approvals import ApprovalStore, store_errors_as_config

    with store_errors_as_config(layout.approvals_db):
        ApprovalStore.check(layout.approvals_db)
    if not settings.audit.enabled:
        return
    from .audit import SQLiteReceiptStore

    if layout.signing_key.exists():
        SigningKey.load(layout.signing_key)
    Keyring.load(layout.receipt_keyring)
    if layout.audit_db.exists():
        try:
            SQLiteReceiptStore(layout.audit_db, readonly=True).close()
        except AuditError as exc:
            raise ConfigError(
                str(exc).replace(f"{layout.audit_db}: ", "", 1),  # named once, as ``file``
                file=str(layout.audit_db),
                fix="restore it from a backup, or move it aside to start a new log; "
                "`pyhall audit verify` says what is wrong with it",
            ) from None


def workspace_dir(layout: HallLayout, settings: HallSettings) -> Path | None:
    """The directory file workers are confined to; relative path arguments resolve here."""
    # Not resolved here: the gateway and the workers resolve paths through it at each
    # call, so a symlinked workspace counts where it points now, for both alike.
    return layout.root / settings.workspace if settings.workspace else None


def _configuration_paths(layout: HallLayout, settings: HallSettings) -> list[Path]:
    """What a hall is loaded from: hall.yaml, its rules, policies, trusted keys and deny
    list, and workers."""
    return [
        layout.hall_yaml,
        *((layout.root / entry).resolve() for entry in settings.rules),
        layout.policies_dir,
        layout.trusted_keys,
        layout.attestation_deny_list,
        layout.workers_dir,
    ]


def rule_files(layout: HallLayout, entries: list[str]) -> list[Path]:
    """The rule files ``hall.yaml`` names, in order (directories sorted)."""
    files: list[Path] = []
    for entry in entries:
        path = (layout.root / entry).resolve()
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in _RULE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(
                "rule path not found",
                file=str(layout.hall_yaml),
                location=f"rules: {entry}",
                fix="create it or remove it from `rules`",
            )
    if not files:
        raise ConfigError(
            "no rule files",
            file=str(layout.hall_yaml),
            location="rules",
            fix="add rules/*.yaml (no rules would deny every call)",
        )
    return files


@dataclass
class _Served:
    """A worker the gateway serves as a tool, ready to run."""

    record: WorkerRecord
    runner: Runner
    validator: SchemaValidator
    output_validator: SchemaValidator | None


@dataclass
class CallOutcome:
    """What became of one tool call; the gateway turns it into MCP."""

    status: OutcomeStatus
    tool: str
    message: str
    governance: dict[str, Any]
    decision: RouteDecision | None = None
    value: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


class Hall:
    """A loaded hall. Build with ``Hall.load``; open its audit log with ``open_audit``."""

    def __init__(
        self,
        layout: HallLayout,
        settings: HallSettings,
        rules: RuleSet,
        registry: Registry,
        policy: PolicyEngine,
        trusted: Keyring,
        served: dict[str, _Served],
        attestation_failures: dict[str, str],
    ) -> None:
        self.layout = layout
        self.settings = settings
        self.config = settings.floors
        self.rules = rules
        self.registry = registry
        self.policy = policy
        self.trusted = trusted
        self.served = served
        self.attestation_failures = attestation_failures
        self.audit: ReceiptLog | None = None
        #: Blast already spent per client-supplied correlation id (bounded, oldest dropped).
        self._chain_blast: OrderedDict[str, int] = OrderedDict()
        self._in_flight = 0  # calls being handled: a lone one commits its receipt on the loop
        self.approvals: ApprovalDesk | None = None  # opened with the audit log
        workspace = workspace_dir(layout, settings)
        self.workspace = str(workspace) if workspace else None

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        root: str | Path,
        *,
        overrides: Mapping[str, Any] | None = None,
        state_dir: str | Path | None = None,
        inspect_only: bool = False,
    ) -> Hall:
        """Load and validate a hall directory; ``ConfigError`` on anything invalid.

        ``inspect_only``: for commands that look and never call (status, route,
        ``--check``): attested packages are verified but not copied into the state
        directory to run from, so the state directory is not written to.
        """
        try:
            return cls._load(root, overrides, state_dir, inspect_only)
        except OSError as exc:  # a directory the gateway's user cannot list, say
            raise unreadable(exc) from None

    @classmethod
    def _load(
        cls,
        root: str | Path,
        overrides: Mapping[str, Any] | None,
        state_dir: str | Path | None,
        inspect_only: bool,
    ) -> Hall:
        layout = HallLayout.for_hall(root, state_dir)
        layout.check(writes=not inspect_only)
        settings = load_settings(layout, overrides or {})
        rules = load_rule_set(rule_files(layout, settings.rules))
        if settings.env in ("prod", "edge") and rules.shadowed:
            first = rules.shadowed[0]
            raise ConfigError(
                f"shadowed rules refuse to serve {settings.env}: {first['reason']}",
                file=rules.source,
                location=f"rule_id: {first['shadowed']}",
                fix="reorder or remove the shadowed rule (run `pyhall validate`)",
            )
        trusted = Keyring.load(layout.trusted_keys)
        config = settings.floors
        if config.require_credential and not config.credential_issuers:
            config = config.model_copy(update={"credential_issuers": _credential_issuers(trusted)})
            settings = settings.model_copy(update={"floors": config})
        registry = Registry.load(layout.workers_dir) if layout.workers_dir.is_dir() else Registry()
        for env, hosts in settings.egress_allowlist.items():
            registry.set_egress_allowlist(env, hosts)
        registry.set_hall_dir(layout.root, workspace_dir(layout, settings))
        registry.quarantine_unsafe_envelopes(
            secret=[layout.state_dir],
            config=[layout.state_dir, *_configuration_paths(layout, settings)],
        )
        # A rule's attestation preconditions ask for it in prod/edge even with the floor off.
        attest = config.require_worker_attestation or (
            settings.env in ("prod", "edge") and rules.asks_attestation_in_prod()
        )
        served, failures = _prepare_workers(layout, registry, attest, trusted, inspect_only)
        policy = policy_for(
            layout, settings, [item.record for item in served.values()], registry.withdrawn
        )
        return cls(layout, settings, rules, registry, policy, trusted, served, failures)

    def check_start(self) -> None:
        """Raise what would stop :meth:`open_audit`, writing nothing (see :func:`check_state`).
        For ``--check`` and the launch check of ``pyhall call``, which must not say OK about
        a hall that will refuse to serve."""
        check_state(self.layout, self.settings)

    def open_audit(self) -> ReceiptLog | None:
        """Open the receipt log (creating the hall's signing key on first start)."""
        if self.audit is None and self.settings.audit.enabled:
            from .audit import ReceiptLog

            self.audit = ReceiptLog.open(
                self.layout,
                durability=self.settings.audit.durability,
                checkpoint_every=self.settings.audit.checkpoint_every,
                checkpoint_interval_s=self.settings.audit.checkpoint_interval_s,
            )
        if self.approvals is None:
            from .approvals import ApprovalDesk, store_errors_as_config

            with store_errors_as_config(self.layout.approvals_db):
                self.approvals = ApprovalDesk.open(self.layout, self._receipt)
        return self.audit

    async def aclose(self) -> None:
        self._close_approvals()
        if self.audit is not None:
            await self.audit.aclose()
            self.audit = None

    def close(self) -> None:
        self._close_approvals()
        if self.audit is not None:
            self.audit.close()
            self.audit = None

    def _close_approvals(self) -> None:
        if self.approvals is not None:
            self.approvals.close()
            self.approvals = None

    # -- what is served ------------------------------------------------------------------
    def tools(self) -> list[WorkerRecord]:
        """Served workers, by tool name."""
        return sorted(
            (s.record for s in self.served.values()), key=lambda r: r.tool.name if r.tool else ""
        )

    def config_paths(self) -> list[Path]:
        """What this hall was loaded from: a change to any of it calls for a reload."""
        return _configuration_paths(self.layout, self.settings)

    @property
    def problems(self) -> list[PyhallError]:
        return list(self.registry.problems)

    # -- deciding --------------------------------------------------------------------------
    def route_input(
        self,
        record: WorkerRecord,
        arguments: Mapping[str, Any],
        *,
        correlation_id: str | None = None,
        dry_run: bool = False,
        data_label: str | None = None,
    ) -> RouteInput:
        """The RouteInput for a call: the operator fixes who and where, never the model."""
        settings = self.settings
        labels = [record.data_label, settings.data_label]
        if data_label in DATA_LABEL_ORDER:
            labels.append(data_label)  # a caller may raise the label, never lower it
        return RouteInput(
            capability_id=record.capabilities[0],
            env=settings.env,
            data_label=max(labels, key=DATA_LABEL_ORDER.__getitem__),
            tenant_risk=settings.tenant_risk,
            qos_class=settings.qos_class,
            tenant_id=settings.tenant_id,
            correlation_id=correlation_id or str(uuid.uuid4()),
            request=dict(arguments),
            dry_run=dry_run,
            tenant_credential=settings.tenant_credential,
        )

    def decide(
        self,
        inp: RouteInput,
        record: WorkerRecord | None = None,
        *,
        human_approved: bool = False,
    ) -> RouteDecision:
        """Route ``inp`` through this hall; pinned to ``record``'s worker when given."""
        decision = make_decision(
            inp,
            self.rules,
            policy_gate_eval=self.policy,
            hall_config=self.config,
            registry=self.registry,
            pinned_worker_id=record.worker_id if record else None,
            tool=record.tool.name if record and record.tool else None,
            human_approved=human_approved,
            chain_blast=self._chain_blast.get(inp.correlation_id, 0),
        )
        worker_id = record.worker_id if record else decision.selected_worker_id
        failure = self.attestation_failures.get(worker_id or "")
        if failure and decision.deny_code == "DENY_WORKER_ATTESTATION_MISSING":
            assert decision.deny_reason_if_denied is not None
            decision.deny_reason_if_denied["attestation_code"] = failure
        return decision

    # -- the one call path ---------------------------------------------------------------------
    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None,
        *,
        meta: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> CallOutcome:
        """Decide on one tool call and run it when allowed. Never raises (except cancellation)."""
        meta = meta or {}
        correlation_id = _meta_text(meta.get(META_CORRELATION_ID)) or str(uuid.uuid4())
        self._in_flight += 1
        try:
            return await self._call(tool, arguments, meta, correlation_id, progress)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            report_failure("call")
            message = "The hall failed while handling this call; nothing was run."
            gov = {
                "tool": telemetry.sanitize_id(tool[:128]),
                "correlation_id": correlation_id,
                "denied": True,
                "deny_code": "DENY_INTERNAL_ERROR",
                "deny_message": message,
            }
            with anyio.CancelScope(shield=True):
                gov.update(
                    await self._receipt_quietly(
                        {
                            "kind": "decision",
                            "decision": "internal_error",
                            "tool": gov["tool"],
                            "correlation_id": correlation_id,
                            "tenant_id": self.settings.tenant_id,
                            "deny_code": "DENY_INTERNAL_ERROR",
                        }
                    )
                )
            return CallOutcome("internal_error", tool, message, gov)
        finally:
            self._in_flight -= 1

    async def _call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None,
        meta: Mapping[str, Any],
        correlation_id: str,
        progress: ProgressFn | None,
    ) -> CallOutcome:
        served = self.served.get(tool)
        arguments = {} if arguments is None else arguments
        if served is None:
            name = telemetry.sanitize_id(tool[:128])
            gov = {
                "tool": name,
                "correlation_id": correlation_id,
                "denied": True,
                "deny_code": "DENY_UNKNOWN_TOOL",
                "deny_message": f"Unknown tool: {name}",
            }
            gov.update(
                await self._receipt(
                    {
                        "kind": "decision",
                        "decision": "unknown_tool",
                        "tool": name,
                        "correlation_id": correlation_id,
                        "tenant_id": self.settings.tenant_id,
                        "deny_code": "DENY_UNKNOWN_TOOL",
                        "arguments_digest": _args_digest(arguments),
                    }
                )
            )
            return CallOutcome("unknown_tool", tool, f"Unknown tool: {name}", gov)

        record = served.record
        errors = self._argument_errors(served, arguments) + _meta_errors(meta)
        if errors:
            message = (
                "The arguments do not match the tool's input schema."
                if not errors[-1].startswith("_meta")
                else "The call's arguments or _meta controls are invalid."
            )
            gov = {
                "tool": tool,
                "worker_id": record.worker_id,
                "correlation_id": correlation_id,
                "denied": True,
                "deny_code": "DENY_INVALID_ARGUMENTS",
                "deny_message": message,
                "errors": errors,
            }
            gov.update(
                await self._receipt(
                    {
                        "kind": "decision",
                        "decision": "invalid_arguments",
                        "tool": tool,
                        "worker_id": record.worker_id,
                        "worker_species_id": record.worker_species_id,
                        "capability_id": record.capabilities[0],
                        "correlation_id": correlation_id,
                        "tenant_id": self.settings.tenant_id,
                        "deny_code": "DENY_INVALID_ARGUMENTS",
                        "arguments_digest": _args_digest(arguments),
                    }
                )
            )
            return CallOutcome("invalid_arguments", tool, message, gov, errors=errors)

        label = meta.get(META_DATA_LABEL)
        inp = self.route_input(
            record,
            arguments,
            correlation_id=correlation_id,
            dry_run=meta.get(META_DRY_RUN) is True,
            data_label=label.strip() if isinstance(label, str) else None,
        )
        decision = self.decide(inp, record)
        settled = None
        if decision.supervisor_required and self.approvals is not None and not inp.dry_run:
            # Held: run now under a person's approval of exactly this call, or hold it (again).
            settled = await self.approvals.settle(
                decision,
                tool=tool,
                worker_id=record.worker_id,
                arguments=inp.request,
                policy_version=getattr(self.policy, "version", None),
                schema=record.tool.input_schema if record.tool else None,
                decide_approved=lambda: self.decide(inp, record, human_approved=True),
                paths=self._paths_shown(record, inp.request),
                rules_digest=self.rules.digest,
            )
            decision = settled.decision
        if META_CORRELATION_ID in meta:
            self._spend_blast(decision)
        self._emit(decision)
        status: OutcomeStatus = (
            "held"
            if decision.supervisor_required
            else "denied"
            if decision.denied
            else "dry_run"
            if decision.dry_run
            else "allowed"
        )
        body = self._decision_body(record, inp, decision, status)
        with anyio.CancelScope(shield=True):
            # Once queued the receipt is committed, cancelled or not: learn its id, so
            # that an allowed decision on record always gets its outcome beside it.
            receipt = await self._receipt({**body, **(settled.receipt_fields if settled else {})})
        decision.receipt_hash = receipt.get("receipt_hash")
        gov = {
            **decision.model_dump(mode="json", exclude={"telemetry_envelopes"}),
            # Every governance record names its deny code at the top, however it arose.
            "deny_code": decision.deny_code,
            "deny_message": decision.deny_message,
            "tool": tool,
            "worker_id": record.worker_id,
            **receipt,
        }
        if settled is not None and self.approvals is not None:
            try:
                gov["approval"] = await self.approvals.record(settled, receipt)
            except BaseException as exc:  # the worker will not run: say so beside "allowed"
                if status == "allowed":
                    from .runners import WorkerResult

                    cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
                    unrun = WorkerResult("cancelled" if cancelled else "error", None, "not run", 0)
                    self._record_outcome(record, decision, gov, unrun)
                raise
        if status != "allowed":
            return CallOutcome(status, tool, _explain(decision, status), gov, decision=decision)
        outcome = await self._execute(served, arguments, decision, gov, progress)
        if settled is not None and self.approvals is not None:
            await self.approvals.returned(settled, outcome)
        return outcome

    def _paths_shown(
        self, record: WorkerRecord, request: Mapping[str, Any]
    ) -> dict[str, str | None]:
        """The declared path arguments as the envelope check resolves them, for the person
        who approves: inside the hall as ``<hall>/...`` (a stable text), else absolute."""
        root = os.path.realpath(self.layout.root)
        shown: dict[str, str | None] = {}
        for named in self.registry.files_named(record, request).values():
            for argument, real in named.items():
                if real is not None and (real == root or real.startswith(root + os.sep)):
                    real = os.path.join("<hall>", os.path.relpath(real, root))
                shown[argument] = real
        return shown

    async def _execute(
        self,
        served: _Served,
        arguments: Mapping[str, Any],
        decision: RouteDecision,
        gov: dict[str, Any],
        progress: ProgressFn | None,
    ) -> CallOutcome:
        from .runners import WorkerContext, WorkerResult

        record = served.record
        assert record.tool is not None
        context = WorkerContext(
            correlation_id=decision.correlation_id,
            decision_id=decision.decision_id,
            tenant_id=decision.tenant_id,
            env=decision.env,
            data_label=decision.data_label,
            worker_id=record.worker_id,
            tool=record.tool.name,
            workspace=self.workspace,
            deadline_s=record.timeout_s,
        )
        started = time.monotonic_ns()
        result: WorkerResult | None = None
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # a cancelled call starts nothing
            result = await served.runner.run(
                arguments, context, timeout_s=record.timeout_s, progress=progress
            )
            result = self._check_result(served, result)
        finally:
            if result is None:  # cancelled (or the runner broke): still receipt the outcome
                result = WorkerResult(
                    status="cancelled",
                    value=None,
                    error="cancelled",
                    duration_us=(time.monotonic_ns() - started) // 1000,
                )
            self._record_outcome(record, decision, gov, result)
        if result.status != "ok":
            return CallOutcome(
                "allowed",
                record.tool.name,
                result.error or f"The worker ended with status {result.status}.",
                gov,
                decision=decision,
                errors=[result.status],
            )
        return CallOutcome(
            "allowed", record.tool.name, "ok", gov, decision=decision, value=result.value
        )

    # -- helpers ---------------------------------------------------------------------------
    def _record_outcome(
        self,
        record: WorkerRecord,
        decision: RouteDecision,
        gov: dict[str, Any],
        result: WorkerResult,
    ) -> None:
        """The outcome receipt of an allowed decision, and its summary in ``gov``.

        The decision receipt was durable before the worker ran; the outcome joins the
        next group commit instead of holding up the answer (close flushes it).
        """
        outcome_receipt = self._receipt_later(
            {
                "kind": "outcome",
                "decision_receipt_id": gov.get("receipt_id"),
                "correlation_id": decision.correlation_id,
                "tool": record.tool.name if record.tool else None,
                "worker_id": record.worker_id,
                "status": result.status,
                "result_digest": digest(result.value) if result.value is not None else None,
                "duration_us": int(result.duration_us),
            }
        )
        gov["outcome"] = {
            "status": result.status,
            "duration_us": int(result.duration_us),
            **{f"outcome_{k}": v for k, v in outcome_receipt.items()},
        }
        if result.stderr_tail:
            sys.stderr.write(
                f"pyhall: worker {record.worker_id} stderr: {result.stderr_tail[-2000:]}\n"
            )

    def _spend_blast(self, decision: RouteDecision) -> None:
        """Record an allowed call's blast on its chain (calls sharing a correlation id)."""
        if decision.denied or decision.dry_run or decision.blast_score is None:
            return
        chain = self._chain_blast
        spent = chain.pop(decision.correlation_id, 0)
        chain[decision.correlation_id] = min(100, max(spent, decision.blast_score))
        while len(chain) > 10_000:
            chain.popitem(last=False)

    def _argument_errors(self, served: _Served, arguments: Any) -> list[str]:
        if not isinstance(arguments, Mapping):
            return ["(arguments): must be an object"]
        try:
            size = len(canonical_json(dict(arguments)))
        except (TypeError, ValueError):
            return ["(arguments): must be plain JSON (no NaN, integers within ±2^53)"]
        if size > self.settings.limits.max_argument_bytes:
            return [f"(arguments): larger than {self.settings.limits.max_argument_bytes} bytes"]
        plain = dict(arguments)
        if served.validator.is_valid(plain):
            return []
        return served.validator.errors(plain, limit=_MAX_ERRORS) or ["(arguments): invalid"]

    def _check_result(self, served: _Served, result: WorkerResult) -> WorkerResult:
        if result.status != "ok":
            return result
        value = result.value if result.value is not None else {}
        problem = None
        try:
            if len(canonical_json(value)) > self.settings.limits.max_result_bytes:
                problem = "The worker's result is larger than the hall's limit."
        except (TypeError, ValueError):
            problem = "The worker's result is not plain JSON."
        if (
            problem is None
            and served.output_validator is not None
            and not served.output_validator.is_valid(value)
        ):
            problem = "The worker's result does not match its declared output schema."
        if problem is not None:
            return type(result)(
                status="error",
                value=None,
                error=problem,
                duration_us=result.duration_us,
                stderr_tail=result.stderr_tail,
            )
        result.value = value
        return result

    def _decision_body(
        self, record: WorkerRecord, inp: RouteInput, decision: RouteDecision, status: OutcomeStatus
    ) -> dict[str, Any]:
        """The one shape of a decision receipt."""
        return {
            "kind": "decision",
            "decision": status,
            "decision_id": decision.decision_id,
            "correlation_id": decision.correlation_id,
            "tenant_id": decision.tenant_id,
            "tool": record.tool.name if record.tool else None,
            "worker_id": record.worker_id,
            "worker_species_id": record.worker_species_id,
            "capability_id": decision.capability_id,
            "env": decision.env,
            "data_label": decision.data_label,
            "deny_code": decision.deny_code,
            "matched_rule_id": decision.matched_rule_id,
            "policy_version": decision.policy_version,
            "policy_decision": "DENY" if decision.denied else "ALLOW",
            "blast_score": decision.blast_score,
            "controls_verified": decision.required_controls_effective,
            "artifact_hash": decision.artifact_hash,
            "arguments_digest": _args_digest(inp.request),
            "dry_run": decision.dry_run,
            "pending_approval_id": decision.pending_approval_id,
            "dispatched_at": decision.timestamp,
        }

    async def _receipt(self, body: dict[str, Any]) -> dict[str, Any]:
        """Make a receipt durable; return its id and hash for the governance record."""
        if self.audit is None:
            return {}
        # Alone, commit on the loop (no thread hand-off); with other calls in flight, let
        # the writer thread commit while the loop serves them, and share its commits.
        receipt = await self.audit.record(body, on_loop=self._in_flight <= 1)
        return {
            "receipt_id": receipt.receipt_id,
            "receipt_hash": receipt.receipt_hash,
            "receipt_seq": receipt.seq,
        }

    def _receipt_later(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a receipt without waiting for it to be durable; failures are logged."""
        if self.audit is None:
            return {}
        try:
            receipt_id, future = self.audit.submit(body)
        except Exception:
            report_failure("audit")
            return {}
        future.add_done_callback(_log_receipt_failure)
        return {"receipt_id": receipt_id}

    async def _receipt_quietly(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._receipt(body)
        except Exception:
            report_failure("audit")
            return {}

    def _emit(self, decision: RouteDecision) -> None:
        if self.settings.events == "stderr":
            telemetry.write_events(decision.telemetry_envelopes)


def _prepare_workers(
    layout: HallLayout,
    registry: Registry,
    attest: bool,
    trusted: Keyring,
    inspect_only: bool = False,
) -> tuple[dict[str, _Served], dict[str, str]]:
    """Runners, validators and (when required) verified attestations for served workers."""
    from .runners import build_runner

    served: dict[str, _Served] = {}
    failures: dict[str, str] = {}
    deny_list: frozenset[str] = frozenset()
    if attest:
        from .attestation import load_deny_list

        deny_list = load_deny_list(layout.attestation_deny_list)
    for record in registry.records:
        if record.tool is None or record.runner is None:
            continue  # routable through make_decision, but not served as a tool
        source = registry.source_of(record.worker_id)
        worker_dir = registry.directory_of(record.worker_id) or layout.workers_dir
        run_from = worker_dir
        if attest:
            try:
                run_from = _attest(
                    layout, registry, record, worker_dir, trusted, deny_list, inspect_only
                )
            except AttestationError as exc:
                failures[record.worker_id] = exc.code
                sys.stderr.write(
                    f"pyhall: worker {record.worker_id} failed attestation: "
                    f"{exc.code}: {exc.message}\n"
                )
        envelope = record.privilege_envelope
        reads, writes = (
            (envelope.filesystem_reads, envelope.filesystem_writes) if envelope else ((), ())
        )
        try:
            runner = build_runner(
                record.runner,
                run_from,
                source=source,
                # A sandbox's directories: joined here, resolved by the kernel at each call.
                reads=[str(layout.root / d) for d in reads],
                writes=[str(layout.root / d) for d in writes],
                tcp=envelope is None or envelope.network_egress != "none",
            )
        except RegistryError as exc:
            registry.quarantine(exc, record.worker_id)
            continue
        output = record.tool.output_schema
        served[record.tool.name] = _Served(
            record=record,
            runner=runner,
            validator=SchemaValidator(record.tool.input_schema),
            output_validator=SchemaValidator(output) if output else None,
        )
    return served, failures


def _attest(
    layout: HallLayout,
    registry: Registry,
    record: WorkerRecord,
    worker_dir: Path,
    trusted: Keyring,
    deny_list: frozenset[str],
    inspect_only: bool = False,
) -> Path:
    """Verify a worker's package; register it with the router; return where to run it from."""
    from .attestation import snapshot_package, verify_package

    package = verify_package(
        worker_dir,
        keyring=trusted,
        deny_list=deny_list,
        expected_worker_id=record.worker_id,
        # The record as written: a defaulted field (an absent `annotations` is {}) would
        # change the tool digest the manifest was signed over.
        record=record.model_dump(exclude_unset=True),
    )
    registry.set_attestation(record.worker_id, package.digest, package.monitor().current_digest)
    if inspect_only:
        return worker_dir
    # Run from a verified read-only copy: editing workers/ after the check changes nothing
    # that runs, and the monitor still sees the edit and denies the next call.
    return snapshot_package(worker_dir, package.digest, layout.state_dir / "snapshots")


def _meta_errors(meta: Mapping[str, Any]) -> list[str]:
    """The request's governance controls, checked like arguments: a client that asks for
    a dry run or a higher data label and misspells it must not get a real run instead."""
    errors = []
    dry_run = meta.get(META_DRY_RUN)
    if dry_run is not None and not isinstance(dry_run, bool):
        errors.append(f"_meta.{META_DRY_RUN}: must be true or false")
    label = meta.get(META_DATA_LABEL)
    if label is not None and (not isinstance(label, str) or label.strip() not in DATA_LABEL_ORDER):
        allowed = ", ".join(DATA_LABEL_ORDER)
        errors.append(f"_meta.{META_DATA_LABEL}: must be one of {allowed}")
    return errors


def _meta_text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip() and len(value) <= 256:
        return telemetry.sanitize_id(value.strip())
    return None


def _args_digest(arguments: Any) -> str | None:
    try:
        return digest(dict(arguments))
    except (TypeError, ValueError):
        return None


def _explain(decision: RouteDecision, status: OutcomeStatus) -> str:
    """What the model is told: what happened, and not to retry blindly."""
    code, message = decision.deny_code, decision.deny_message
    if status == "dry_run":
        return (
            "Dry run: the call would be allowed "
            f"(rule {decision.matched_rule_id}); nothing was executed."
        )
    if status == "held" and decision.pending_approval_id is None:
        return (
            f"Dry run: the call would be held for a person's approval ({code}): {message} "
            "Nothing was stored or executed."
        )
    if status == "held":
        # No approving command here: the model reads this, and a human must decide.
        return (
            f"Held for human approval ({code}): {message} A human operator must approve or "
            "deny this call outside this conversation; tell the user it waits on approval id "
            f"{decision.pending_approval_id} (expires {decision.approval_expires_at}). "
            "Once they confirm it was approved, retry the identical call once."
        )
    return (
        f"Denied by the governance hall ({code}): {message} "
        "Do not retry this call unchanged; it will be denied again."
    )


def _log_receipt_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        sys.stderr.write(f"pyhall: a queued receipt was not written: {future.exception()}\n")


def load_hall(root: str | Path | None = None, **kwargs: Any) -> Hall:
    """Load the hall at ``root`` (default: ``$PYHALL_HALL`` or the bundled demo)."""
    from .layout import default_hall_dir

    return Hall.load(root or default_hall_dir(), **kwargs)
