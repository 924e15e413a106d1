"""The WCP data contracts (spec sections 3 to 5): what validates, what does not, defaults."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pyhall_mcp.models import (
    DATA_LABEL_ORDER,
    CandidateWorker,
    Escalation,
    HallConfig,
    PreconditionsChecked,
    RouteDecision,
    RouteInput,
)
from pyhall_mcp.registry import Registry
from pyhall_mcp.router import make_decision
from pyhall_mcp.rules import load_rules_from_dict

VALID: dict[str, Any] = {
    "capability_id": "cap.doc.summarize",
    "env": "dev",
    "data_label": "PUBLIC",
    "tenant_risk": "low",
    "qos_class": "P2",
    "tenant_id": "acme",
    "correlation_id": "c-1",
}


def _error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_minimal_route_input_and_defaults() -> None:
    inp = RouteInput(**VALID)
    assert inp.request == {} and inp.blast_score is None and inp.dry_run is False
    assert inp.blast_radius is None and inp.privilege_context is None
    assert inp.policy_version is None and inp.tenant_credential is None
    other = RouteInput(**VALID)
    other.request["x"] = 1
    assert inp.request == {}  # no shared mutable default


@pytest.mark.parametrize("missing", list(VALID))
def test_every_required_field_is_required(missing: str) -> None:
    with pytest.raises(ValidationError) as info:
        RouteInput(**{k: v for k, v in VALID.items() if k != missing})
    assert _error_fields(info.value) == {missing}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("env", "production"),
        ("env", "DEV"),
        ("data_label", "SECRET"),
        ("data_label", "public"),
        ("tenant_risk", "critical"),
        ("qos_class", "P4"),
        ("capability_id", ""),
        ("capability_id", "c" * 257),
        ("tenant_id", ""),
        ("tenant_id", "   "),
        ("tenant_id", "\t\n"),
        ("tenant_id", None),
        ("correlation_id", None),
        ("blast_score", True),
        ("blast_score", False),
        ("blast_score", "50"),
        ("blast_score", 50.0),
        ("dry_run", "true"),
        ("dry_run", 1),
        ("request", "text"),
        ("request", [1, 2]),
        ("unknown_field", 1),
    ],
)
def test_invalid_route_input_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        RouteInput(**VALID | {field: value})
    assert field in _error_fields(info.value)


def test_blank_tenant_message_is_clear() -> None:
    with pytest.raises(ValidationError, match="tenant_id must not be empty or whitespace"):
        RouteInput(**VALID | {"tenant_id": " "})


def test_values_the_router_judges_are_accepted_by_the_model() -> None:
    # Blank correlation ids and out-of-range blast scores are the router's to deny,
    # with their own codes, so the model lets them through.
    assert RouteInput(**VALID | {"correlation_id": ""}).correlation_id == ""
    assert RouteInput(**VALID | {"blast_score": 101}).blast_score == 101
    assert RouteInput(**VALID | {"blast_score": -3}).blast_score == -3


def test_data_label_order() -> None:
    assert sorted(DATA_LABEL_ORDER, key=DATA_LABEL_ORDER.get) == [
        "PUBLIC",
        "INTERNAL",
        "RESTRICTED",
    ]


def test_hall_config_defaults_are_the_spec_floors() -> None:
    config = HallConfig()
    assert config.require_signatory is False and config.allowed_tenants == []
    assert config.require_credential is False and config.credential_issuers == {}
    assert config.require_worker_attestation is False
    assert config.enforce_correlation_id is True
    assert config.enforce_required_controls is True
    assert config.enforce_blast_scoring_in_prod is True
    assert config.enforce_privilege_envelopes is False
    # The library default is the reference's; the MCP gateway turns it on.
    assert config.enforce_policy_gate is False
    assert config.blast_gate_threshold == 85
    assert config.approval_ttl_s == 900


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("require_signatry", True),
        ("require_signatory", "yes"),
        ("enforce_required_controls", 0),
        ("allowed_tenants", "acme"),
        ("blast_gate_threshold", 101),
        ("blast_gate_threshold", -1),
        ("approval_ttl_s", 0),
        ("approval_ttl_s", 8 * 24 * 3600),
    ],
)
def test_hall_config_refuses_typos_and_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        HallConfig(**{field: value})
    assert field in _error_fields(info.value)


def test_escalation_and_preconditions() -> None:
    esc = Escalation()
    assert (esc.policy_gate, esc.msavx_step_up, esc.human_required_default) == (False, False, False)
    assert esc.human_required_if == () and esc.rationale is None and esc.supervisor_level is None
    with pytest.raises(ValidationError):
        esc.policy_gate = True  # frozen: shared by every decision of a rule
    with pytest.raises(ValidationError):
        Escalation(supervisor_level="boss")
    with pytest.raises(ValidationError):
        Escalation(policy_gte=True)
    assert Escalation(supervisor_level="incident_commander").supervisor_level == (
        "incident_commander"
    )
    pre = PreconditionsChecked()
    assert pre.must_have_correlation_id and pre.deny_if_missing_required_controls
    assert not pre.deny_if_unsigned_artifact_in_prod and not pre.deny_if_no_attestation_in_prod
    with pytest.raises(ValidationError):
        PreconditionsChecked(must_have_correlation_id="no")


def test_route_decision_deny_helpers() -> None:
    base = dict(
        decision_id="d",
        timestamp="t",
        correlation_id="c",
        tenant_id="acme",
        capability_id="cap.a.b",
        matched_rule_id="NO_MATCH",
        env="dev",
        data_label="PUBLIC",
        tenant_risk="low",
        qos_class="P2",
    )
    allowed = RouteDecision(**base)
    assert allowed.deny_code is None and allowed.deny_message is None
    denied = RouteDecision(
        **base, denied=True, deny_reason_if_denied={"code": "DENY_X", "message": "no"}
    )
    assert denied.deny_code == "DENY_X" and denied.deny_message == "no"
    spec_fields = {
        "blast_score",
        "blast_gate_passed",
        "privilege_envelope_ok",
        "supervisor_required",
        "supervisor_level",
        "pending_approval_id",
        "approval_expires_at",
        "policy_version",
        "receipt_hash",
        "worker_attestation_checked",
        "worker_attestation_valid",
        "artifact_hash",
        "dry_run",
        "telemetry_envelopes",
    }
    assert spec_fields <= set(allowed.model_dump())
    assert CandidateWorker(worker_species_id="wrk.a.b").skip_reason is None


def _decisions() -> list[RouteDecision]:
    registry = Registry()
    registry.enroll(
        {
            "worker_id": "org.acme.w",
            "worker_species_id": "wrk.a.b",
            "capabilities": ["cap.a.b"],
            "privilege_envelope": {},
        }
    )
    rules = load_rules_from_dict(
        {
            "rules": [
                {
                    "rule_id": "r",
                    "match": {"capability_id": "cap.a.b"},
                    "decision": {
                        "candidate_workers_ranked": [
                            {"worker_species_id": "wrk.a.b", "score_hint": 1}
                        ],
                        "recommended_profiles": ["prof.a.b"],
                        "escalation": {"human_required_if": [{"env": "edge"}]},
                    },
                }
            ]
        }
    )
    out = []
    for over in (
        {},
        {"env": "prod", "dry_run": True},
        {"capability_id": "cap.x.y"},
        {"env": "prod", "blast_score": 99},
        {"env": "edge"},  # held by the rule's human_required_if
    ):
        inp = RouteInput(**VALID | {"capability_id": "cap.a.b"} | over)
        out.append(
            make_decision(
                inp,
                rules,
                registry=registry,
                hall_config=HallConfig(enforce_privilege_envelopes=True),
            )
        )
    out.append(make_decision({"env": "dev"}, rules))
    return out


def test_router_decisions_are_valid_models() -> None:
    # The router builds decisions without validation for speed; each must still be
    # exactly what validation would produce.
    *decisions, invalid = _decisions()
    assert [d.denied for d in decisions] == [False, False, True, True, True]
    assert decisions[-1].deny_code == "DENY_REQUIRES_HUMAN_APPROVAL"
    for decision in decisions:
        again = RouteDecision.model_validate(decision.model_dump())
        assert again == decision
        assert RouteDecision.model_validate_json(decision.model_dump_json()) == decision
    # A decision about input that is not a RouteInput echoes what it can: it serialises,
    # but its empty env/label/risk/qos are not valid literals (known, documented).
    assert invalid.deny_code == "DENY_INVALID_INPUT" and invalid.env == "dev"
    assert invalid.data_label == ""
    assert '"deny_reason_if_denied"' in invalid.model_dump_json()
