"""The WCP data contracts (spec sections 3 to 5), as pydantic v2 models.

Field names are part of the public contract: rule files, registry records and
audit consumers written for WCP read them, so they are spelled exactly as in
the specification.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

__all__ = [
    "DATA_LABEL_ORDER",
    "CandidateWorker",
    "DataLabel",
    "Env",
    "Escalation",
    "HallConfig",
    "PreconditionsChecked",
    "QoSClass",
    "RouteDecision",
    "RouteInput",
    "SupervisorLevel",
    "TenantRisk",
]

Env = Literal["dev", "stage", "prod", "edge"]
DataLabel = Literal["PUBLIC", "INTERNAL", "RESTRICTED"]
QoSClass = Literal["P0", "P1", "P2", "P3"]
TenantRisk = Literal["low", "medium", "high"]
SupervisorLevel = Literal["advisory", "gatekeeper", "executor", "incident_commander"]

#: Data labels from least to most sensitive; "the highest label" compares by this.
DATA_LABEL_ORDER: dict[str, int] = {"PUBLIC": 0, "INTERNAL": 1, "RESTRICTED": 2}

_MAX_ID = 256


def _not_blank(value: Any, field: str) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{field} must not be empty or whitespace")
    return value


class RouteInput(BaseModel):
    """A capability request sent to the Hall (spec section 3)."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    capability_id: str = Field(min_length=1, max_length=_MAX_ID)
    env: Env
    data_label: DataLabel
    tenant_risk: TenantRisk
    qos_class: QoSClass
    tenant_id: str = Field(max_length=_MAX_ID)
    # A blank correlation id is accepted here so that the router denies it with
    # DENY_MISSING_CORRELATION_ID, as the pipeline specifies.
    correlation_id: str = Field(max_length=_MAX_ID)
    request: dict[str, Any] = Field(default_factory=dict)
    blast_radius: dict[str, Any] | None = None
    # Out-of-range scores are accepted here and denied by the router with
    # DENY_INVALID_INPUT; a bool is never an int here.
    blast_score: StrictInt | None = None
    privilege_context: dict[str, Any] | None = None
    policy_version: str | None = None
    dry_run: StrictBool = False
    tenant_credential: str | None = None

    @field_validator("tenant_id", mode="before")
    @classmethod
    def _tenant_not_blank(cls, value: Any) -> Any:
        return _not_blank(value, "tenant_id")


class CandidateWorker(BaseModel):
    """A worker species the matched rule proposed, and why it was or was not chosen."""

    worker_species_id: str
    score_hint: float | None = None
    requires_controls_minimum: list[str] | None = None
    skip_reason: str | None = None
    #: The enrolled worker instance behind the species, when one was found.
    worker_id: str | None = None


class Escalation(BaseModel):
    """Escalation of the matched rule (``decision.escalation``)."""

    # Frozen: a rule's compiled escalation is shared by every decision it makes.
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy_gate: StrictBool = False
    msavx_step_up: StrictBool = False
    human_required_default: StrictBool = False
    human_required_if: tuple[dict[str, Any], ...] = ()
    rationale: str | None = None
    supervisor_level: SupervisorLevel | None = None


class PreconditionsChecked(BaseModel):
    """Preconditions of the matched rule, as applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    must_have_correlation_id: StrictBool = True
    must_attach_policy_version: StrictBool = True
    must_record_artifact_hash_if_executes: StrictBool = True
    deny_if_missing_required_controls: StrictBool = True
    deny_if_unsigned_artifact_in_prod: StrictBool = False
    deny_if_no_attestation_in_prod: StrictBool = False


class HallConfig(BaseModel):
    """Hall-wide floors that no rule can lower (spec section 5)."""

    model_config = ConfigDict(extra="forbid")

    require_signatory: StrictBool = False
    allowed_tenants: list[str] = Field(default_factory=list)
    require_credential: StrictBool = False
    #: Trusted credential issuers: key id -> raw Ed25519 public key, base64.
    credential_issuers: dict[str, str] = Field(default_factory=dict)
    require_worker_attestation: StrictBool = False
    enforce_correlation_id: StrictBool = True
    enforce_required_controls: StrictBool = True
    enforce_blast_scoring_in_prod: StrictBool = True
    enforce_privilege_envelopes: StrictBool = False
    #: The library default is the reference's (gate only when a rule asks);
    #: the MCP gateway turns it on.
    enforce_policy_gate: StrictBool = False
    #: Blast gate threshold in prod/edge (spec: >= 85 needs a human).
    blast_gate_threshold: int = Field(default=85, ge=0, le=100)
    #: How long a held decision waits for a person before it expires.
    approval_ttl_s: int = Field(default=900, gt=0, le=7 * 24 * 3600)


class RouteDecision(BaseModel):
    """The Hall's answer to a RouteInput (spec section 4): an evidence record."""

    decision_id: str
    timestamp: str
    correlation_id: str
    tenant_id: str
    capability_id: str
    matched_rule_id: str
    env: Env
    data_label: DataLabel
    tenant_risk: TenantRisk
    qos_class: QoSClass

    denied: bool = False
    deny_reason_if_denied: dict[str, Any] | None = None

    selected_worker_species_id: str | None = None
    selected_worker_id: str | None = None
    candidate_workers_ranked: list[CandidateWorker] = Field(default_factory=list)

    required_controls_effective: list[str] = Field(default_factory=list)
    recommended_profiles_effective: list[Any] = Field(default_factory=list)
    escalation_effective: Escalation = Field(default_factory=Escalation)
    preconditions_checked: PreconditionsChecked = Field(default_factory=PreconditionsChecked)

    artifact_hash: str | None = None
    worker_attestation_checked: bool = False
    worker_attestation_valid: bool | None = None
    dry_run: bool = False
    telemetry_envelopes: list[dict[str, Any]] = Field(default_factory=list)

    # Spec fields the reference implementation lacks.
    blast_score: int | None = None
    blast_gate_passed: bool | None = None
    privilege_envelope_ok: bool | None = None
    supervisor_required: bool = False
    supervisor_level: SupervisorLevel | None = None
    pending_approval_id: str | None = None
    approval_expires_at: str | None = None
    policy_version: str | None = None
    receipt_hash: str | None = None

    @property
    def deny_code(self) -> str | None:
        return (self.deny_reason_if_denied or {}).get("code")

    @property
    def deny_message(self) -> str | None:
        return (self.deny_reason_if_denied or {}).get("message")
