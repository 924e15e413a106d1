"""make_decision: every deny code of spec section 8, the order of the stages, held decisions,
determinism (a golden snapshot), the artifact hash, and "never raises".

Golden snapshot: ``tests/golden/decisions.json`` holds the decisions of a fixed set of
inputs against fixed rules, registry and gate, with the random and clock fields masked.
After an intended change of behaviour, regenerate it and review the diff:

    PYHALL_UPDATE_GOLDENS=1 .venv/bin/pytest tests/test_router.py -k golden
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pyhall_mcp.credentials import issue_credential
from pyhall_mcp.models import HallConfig, RouteDecision, RouteInput
from pyhall_mcp.registry import Registry
from pyhall_mcp.router import blast_heuristic, make_decision
from pyhall_mcp.rules import Rule, load_rules_from_dict
from pyhall_mcp.signing import SigningKey

GOLDEN = Path(__file__).parent / "golden" / "decisions.json"
FILES_HALL = Path(__file__).parent / "fixtures" / "halls" / "files"
# Read at import: conftest clears PYHALL_* variables before each test runs.
UPDATE_GOLDENS = os.environ.get("PYHALL_UPDATE_GOLDENS") == "1"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ISSUER = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
STRANGER = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))
GOOD_HASH = "a" * 64
OTHER_HASH = "b" * 64
AUDIT = "ctrl.obs.audit-log-append-only"
CAP = "cap.doc.summarize"
SPECIES = "wrk.doc.summarizer"
WORKER = "org.acme.summarizer"


def _credential(tenant: str = "acme", *, key: SigningKey = ISSUER, ttl: int = 3600) -> str:
    return issue_credential(key, tenant, ttl_seconds=ttl, now=int(NOW.timestamp()) - 60)


def _record(**over: Any) -> dict[str, Any]:
    return {
        "worker_id": WORKER,
        "worker_species_id": SPECIES,
        "capabilities": [CAP],
        "currently_implements": [AUDIT],
        "privilege_envelope": {"secrets_access": [], "network_egress": "none"},
    } | over


def _rule(rule_id: str = "rr-summarize", **decision: Any) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "match": {"capability_id": CAP},
        "decision": {
            "candidate_workers_ranked": [{"worker_species_id": SPECIES, "score_hint": 1.0}],
            "required_controls_suggested": [AUDIT],
        }
        | decision,
    }


def _gate_from(verdict: Any) -> Callable[[dict[str, Any]], Any]:
    def gate(context: dict[str, Any]) -> Any:
        if isinstance(verdict, BaseException):
            raise verdict
        return verdict

    return gate


@dataclass
class Scenario:
    """One call: input, rules, the enrolled worker, hall floors and gate, all editable."""

    inp: dict[str, Any] = field(
        default_factory=lambda: {
            "capability_id": CAP,
            "env": "dev",
            "data_label": "PUBLIC",
            "tenant_risk": "low",
            "qos_class": "P2",
            "tenant_id": "acme",
            "correlation_id": "corr-0001",
            "request": {"text": "hello"},
        }
    )
    rules: list[dict[str, Any]] = field(default_factory=lambda: [_rule()])
    records: list[dict[str, Any]] = field(default_factory=lambda: [_record()])
    config: dict[str, Any] = field(default_factory=dict)
    verdict: Any = ("ALLOW", "pol.v1", "allowed")
    #: False: no policy gate is configured at all.
    gate: bool = True
    registered_hash: str | None = GOOD_HASH
    current_hash: str | None = GOOD_HASH
    egress: dict[str, list[str]] = field(default_factory=dict)
    pinned: str | None = None
    human_approved: bool = False
    construct: bool = False
    #: True: call with the reference's callables (pooled controls), no ``registry=``.
    reference: bool = False
    #: Where relative envelope directories (the hall) and path arguments (the workspace)
    #: resolve; None: unset.
    hall_dir: str | None = str(FILES_HALL)
    workspace: str | None = str(FILES_HALL / "workspace")

    def registry(self) -> Registry:
        registry = Registry()
        if self.hall_dir is not None:
            registry.set_hall_dir(self.hall_dir, self.workspace)
        for record in self.records:
            registry.enroll(record)
            if self.registered_hash is not None:
                registry.set_attestation(
                    record["worker_id"], self.registered_hash, lambda c=self.current_hash: c
                )
        for env, hosts in self.egress.items():
            registry.set_egress_allowlist(env, hosts)
        return registry

    def run(self, **kw: Any) -> RouteDecision:
        inp = RouteInput.model_construct(**self.inp) if self.construct else RouteInput(**self.inp)
        registry = self.registry()
        if self.reference:
            kw |= {
                "registry_controls_present": registry.controls_present(),
                "registry_worker_available": registry.worker_available,
            }
        return make_decision(
            inp,
            load_rules_from_dict({"rules": self.rules}),
            hall_config=HallConfig(**self.config),
            policy_gate_eval=_gate_from(self.verdict) if self.gate else None,
            registry=None if self.reference else registry,
            pinned_worker_id=self.pinned,
            human_approved=self.human_approved,
            now=NOW,
            **kw,
        )


def _full() -> Scenario:
    """Everything on, everything passing: prod, signatory + credential, gate, attestation,
    privilege envelopes."""
    s = Scenario()
    s.inp |= {"env": "prod", "tenant_credential": _credential()}
    s.config = {
        "require_signatory": True,
        "allowed_tenants": ["acme"],
        "require_credential": True,
        "credential_issuers": {ISSUER.key_id: ISSUER.public_key_b64},
        "require_worker_attestation": True,
        "enforce_privilege_envelopes": True,
        "enforce_policy_gate": True,
    }
    return s


def _denied(decision: RouteDecision, code: str) -> dict[str, Any]:
    assert decision.denied, decision.model_dump()
    reason = decision.deny_reason_if_denied
    assert reason is not None and reason["code"] == code, reason
    assert decision.deny_code == code and decision.deny_message == reason["message"]
    assert decision.selected_worker_species_id is None and decision.selected_worker_id is None
    events = decision.telemetry_envelopes
    assert [e["event_id"] for e in events] == ["evt.os.task.denied"]
    assert events[0]["deny_code"] == code
    return reason


def _allowed(decision: RouteDecision) -> RouteDecision:
    assert not decision.denied, decision.deny_reason_if_denied
    assert decision.deny_reason_if_denied is None
    assert decision.selected_worker_species_id == SPECIES
    assert decision.selected_worker_id == WORKER
    return decision


# -- the happy paths ----------------------------------------------------------------------


def test_minimal_dev_call_is_allowed() -> None:
    decision = _allowed(Scenario().run())
    assert decision.matched_rule_id == "rr-summarize"
    assert decision.required_controls_effective == [AUDIT]
    assert decision.candidate_workers_ranked[0].worker_id == WORKER
    # Scored in every env; in dev no gate holds it (no blast control, no max).
    assert decision.blast_score == 10 and decision.blast_gate_passed is True
    assert decision.policy_version is None and decision.supervisor_required is False


def test_everything_on_in_prod_is_allowed() -> None:
    decision = _allowed(_full().run())
    assert decision.worker_attestation_checked is True
    assert decision.worker_attestation_valid is True
    assert decision.privilege_envelope_ok is True
    assert decision.blast_gate_passed is True and decision.blast_score == 25
    assert decision.policy_version == "pol.v1"
    assert [e["event_id"] for e in decision.telemetry_envelopes] == [
        "evt.gov.blast_scored",
        "evt.gov.privilege_envelope.checked",
        "evt.os.task.routed",
        "evt.os.worker.selected",
        "evt.os.policy.gated",
    ]


# -- stage 0 --------------------------------------------------------------------------------


def test_deny_unknown_tenant() -> None:
    s = _full()
    s.inp["tenant_id"] = "mallory"
    reason = _denied(s.run(), "DENY_UNKNOWN_TENANT")
    assert reason["tenant_id"] == "mallory"
    assert s.run().matched_rule_id == "PRE_ROUTING"


def test_signatory_list_admits_listed_tenants_only() -> None:
    s = Scenario(config={"require_signatory": True, "allowed_tenants": ["acme", "globex"]})
    _allowed(s.run())
    s.config["allowed_tenants"] = []
    _denied(s.run(), "DENY_UNKNOWN_TENANT")


def _forged() -> str:
    payload, _ = _credential().split(".")
    _, stranger_sig = _credential(key=STRANGER).split(".")
    return f"{payload}.{stranger_sig}"


@pytest.mark.parametrize(
    ("credential", "why"),
    [
        (None, "no tenant credential"),
        ("", "no tenant credential"),
        ("not-a-token", "malformed"),
        (_forged(), "signature does not verify"),
        (
            issue_credential(ISSUER, "acme", ttl_seconds=60, now=int(NOW.timestamp()) - 61),
            "expired",
        ),
        (_credential("globex"), "another tenant"),
        (_credential(key=STRANGER), "untrusted key"),
    ],
    ids=["missing", "empty", "malformed", "forged", "expired", "wrong-tenant", "untrusted"],
)
def test_deny_invalid_credential(credential: str | None, why: str) -> None:
    s = _full()
    s.inp["tenant_credential"] = credential
    reason = _denied(s.run(), "DENY_INVALID_CREDENTIAL")
    assert why in reason["message"]
    assert s.run().matched_rule_id == "PRE_ROUTING"


def test_credential_is_not_checked_unless_required() -> None:
    s = Scenario()
    s.inp["tenant_credential"] = "garbage"
    _allowed(s.run())


def test_deny_missing_tenant_id() -> None:
    # The model refuses a blank tenant; a caller that bypasses validation still gets a denial.
    for blank in ("", "   ", "\t\n"):
        s = Scenario(construct=True)
        s.inp["tenant_id"] = blank
        decision = s.run()
        _denied(decision, "DENY_MISSING_TENANT_ID")
        assert decision.matched_rule_id == "PRE_ROUTING"


@pytest.mark.parametrize("score", [101, -1, 10**9])
def test_deny_invalid_input_blast_score_out_of_range(score: int) -> None:
    s = Scenario()
    s.inp["blast_score"] = score
    reason = _denied(s.run(), "DENY_INVALID_INPUT")
    assert reason["blast_score"] == score


@pytest.mark.parametrize("score", [0, 100])
def test_blast_score_bounds_are_valid(score: int) -> None:
    s = Scenario()
    s.inp["blast_score"] = score
    _allowed(s.run())


@pytest.mark.parametrize(
    ("raw", "field_name"),
    [
        ({"env": "dev"}, "capability_id"),
        ({"blast_score": True}, "blast_score"),
        ({"blast_score": "50"}, "blast_score"),
        ({"env": "production"}, "env"),
        ({"tenant_id": "  "}, "tenant_id"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_deny_invalid_input_for_dict_input(raw: dict[str, Any], field_name: str) -> None:
    inp = Scenario().inp | raw
    if field_name == "capability_id":
        inp = raw
    decision = make_decision(inp, load_rules_from_dict({"rules": [_rule()]}), registry=Registry())
    reason = _denied(decision, "DENY_INVALID_INPUT")
    assert field_name in reason["message"]
    assert decision.matched_rule_id == "PRE_ROUTING"


def test_valid_dict_input_is_accepted() -> None:
    s = Scenario()
    decision = make_decision(
        dict(s.inp), load_rules_from_dict({"rules": s.rules}), registry=s.registry()
    )
    _allowed(decision)


@pytest.mark.parametrize("raw", [None, 42, "cap.doc.summarize", ["env", "dev"], b"{}"])
def test_non_mapping_input_is_invalid_input(raw: Any) -> None:
    _denied(make_decision(raw, []), "DENY_INVALID_INPUT")


SHADOWED_RULES = [_rule(), _rule("rr-summarize-prod", max_blast_score=50)]


@pytest.mark.parametrize("env", ["prod", "edge"])
def test_deny_shadow_rules_in_prod_and_edge(env: str) -> None:
    s = Scenario(rules=copy.deepcopy(SHADOWED_RULES))
    s.rules[1]["match"]["env"] = {"in": ["prod", "edge"]}
    s.inp["env"] = env
    reason = _denied(s.run(), "DENY_SHADOW_RULES_DETECTED")
    assert reason["shadowed_rule_ids"] == ["rr-summarize-prod"]


@pytest.mark.parametrize("env", ["dev", "stage"])
def test_shadowed_rules_still_route_in_dev_and_stage(env: str) -> None:
    s = Scenario(rules=copy.deepcopy(SHADOWED_RULES))
    s.inp["env"] = env
    assert _allowed(s.run()).matched_rule_id == "rr-summarize"


# -- stages 1 to 4 ---------------------------------------------------------------------------


def test_deny_no_matching_rule() -> None:
    s = Scenario()
    s.inp["capability_id"] = "cap.doc.translate"
    decision = s.run()
    _denied(decision, "DENY_NO_MATCHING_RULE")
    assert decision.matched_rule_id == "NO_MATCH"
    assert decision.telemetry_envelopes[0]["matched_rule_id"] == "NO_MATCH"
    _denied(make_decision(RouteInput(**s.inp), []), "DENY_NO_MATCHING_RULE")


@pytest.mark.parametrize("blank", ["", "  ", "\n"])
def test_deny_missing_correlation_id(blank: str) -> None:
    s = Scenario()
    s.inp["correlation_id"] = blank
    decision = s.run()
    _denied(decision, "DENY_MISSING_CORRELATION_ID")
    assert decision.matched_rule_id == "rr-summarize"


def test_correlation_floor_overrides_a_lax_rule() -> None:
    s = Scenario(rules=[_rule(preconditions={"must_have_correlation_id": False})])
    s.inp["correlation_id"] = " "
    _denied(s.run(), "DENY_MISSING_CORRELATION_ID")
    s.config["enforce_correlation_id"] = False
    _allowed(s.run())


def _two_workers() -> Scenario:
    """The candidate lacks the control; a different worker implements it."""
    return Scenario(
        records=[
            _record(currently_implements=[]),
            _record(
                worker_id="org.acme.auditor",
                worker_species_id="wrk.audit.logger",
                capabilities=["cap.audit.log"],
                currently_implements=[AUDIT, "ctrl.sec.secrets-vault"],
            ),
        ],
        rules=[_rule(required_controls_suggested=["ctrl.sec.secrets-vault", AUDIT])],
    )


def test_deny_missing_required_controls_per_worker() -> None:
    s = _two_workers()
    reason = _denied(s.run(), "DENY_MISSING_REQUIRED_CONTROLS")
    assert reason["missing"] == [AUDIT, "ctrl.sec.secrets-vault"]  # sorted
    assert s.run().candidate_workers_ranked[0].skip_reason == "missing_controls"


def test_pooled_controls_behave_like_the_reference() -> None:
    # The reference pools every worker's controls: the other worker's control counts.
    s = _two_workers()
    registry = s.registry()
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry.controls_present(),
        registry.worker_available,
    )
    assert not decision.denied
    assert decision.selected_worker_species_id == SPECIES
    # ... and a control nobody implements is still missing.
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": [_rule(required_controls_suggested=["ctrl.x.nobody"])]}),
        registry.controls_present(),
        registry.worker_available,
    )
    assert _denied(decision, "DENY_MISSING_REQUIRED_CONTROLS")["missing"] == ["ctrl.x.nobody"]


def test_next_candidate_with_the_controls_is_selected() -> None:
    s = Scenario(
        records=[
            _record(
                worker_id="org.acme.cheap",
                worker_species_id="wrk.doc.cheap",
                currently_implements=[],
            ),
            _record(),
        ],
        rules=[
            _rule(
                candidate_workers_ranked=[
                    {"worker_species_id": "wrk.doc.cheap", "score_hint": 2.0},
                    {"worker_species_id": SPECIES, "score_hint": 1.0},
                ]
            )
        ],
    )
    decision = _allowed(s.run())
    assert [c.skip_reason for c in decision.candidate_workers_ranked] == ["missing_controls", None]


def test_requires_controls_minimum_is_per_candidate() -> None:
    s = Scenario(
        rules=[
            _rule(
                candidate_workers_ranked=[
                    {"worker_species_id": SPECIES, "requires_controls_minimum": ["ctrl.x.extra"]}
                ]
            )
        ]
    )
    assert _denied(s.run(), "DENY_MISSING_REQUIRED_CONTROLS")["missing"] == ["ctrl.x.extra"]


def test_legacy_underscore_controls_equal_hyphen_controls() -> None:
    s = Scenario(records=[_record(currently_implements=["ctrl.obs.audit_log_append_only"])])
    _allowed(s.run())
    s = Scenario(rules=[_rule(required_controls_suggested=["ctrl.obs.audit_log_append_only"])])
    decision = _allowed(s.run())
    assert decision.required_controls_effective == [AUDIT]


def test_controls_floor_overrides_a_lax_rule() -> None:
    s = Scenario(
        records=[_record(currently_implements=[])],
        rules=[_rule(preconditions={"deny_if_missing_required_controls": False})],
    )
    _denied(s.run(), "DENY_MISSING_REQUIRED_CONTROLS")
    s.config["enforce_required_controls"] = False
    _allowed(s.run())


def _held(decision: RouteDecision, code: str) -> dict[str, Any]:
    reason = _denied(decision, code)
    assert decision.supervisor_required is True
    assert reason["supervisor_required"] is True
    assert decision.supervisor_level in ("advisory", "gatekeeper", "executor", "incident_commander")
    assert re.fullmatch(r"apr_[A-Za-z0-9_-]{24}", decision.pending_approval_id or "")
    return reason


def _high_blast(s: Scenario) -> Scenario:
    # 10 + 40 (RESTRICTED) + 15 (prod) + 10 (P0) + 15 (writes) = 90
    s.inp |= {
        "env": "prod",
        "data_label": "RESTRICTED",
        "qos_class": "P0",
        "request": {"writes": True},
    }
    return s


def test_deny_requires_human_for_high_blast_in_prod() -> None:
    s = _high_blast(Scenario())
    decision = s.run()
    reason = _held(decision, "DENY_REQUIRES_HUMAN")
    assert reason["blast_score"] == 90 == decision.blast_score
    assert decision.blast_gate_passed is False
    assert decision.supervisor_level == "gatekeeper"
    assert decision.approval_expires_at == "2026-03-04T05:21:07Z"  # NOW + 900 s
    other = s.run()
    assert other.pending_approval_id != decision.pending_approval_id
    ids = {s.run().pending_approval_id for _ in range(50)}
    assert len(ids) == 50


def test_human_required_if_holds_where_a_condition_matches() -> None:
    conditions = [{"env": "prod"}, {"data_label": {"in": ["RESTRICTED"]}, "env": "stage"}]
    s = Scenario(rules=[_rule(escalation={"human_required_if": conditions})])
    assert _allowed(s.run()).supervisor_required is False  # dev, PUBLIC: no condition holds
    for over in ({"env": "prod"}, {"env": "stage", "data_label": "RESTRICTED"}):
        held = Scenario(rules=s.rules)
        held.inp |= over
        reason = _held(held.run(), "DENY_REQUIRES_HUMAN_APPROVAL")
        assert reason["reason"] == "human_required_if"
        held.human_approved = True
        assert _allowed(held.run()).supervisor_required is False
    stage_public = Scenario(rules=s.rules)
    stage_public.inp["env"] = "stage"
    assert _allowed(stage_public.run()).supervisor_required is False


def test_approved_high_blast_call_passes() -> None:
    s = _high_blast(Scenario())
    s.human_approved = True
    decision = _allowed(s.run())
    assert decision.blast_score == 90 and decision.blast_gate_passed is True
    assert decision.pending_approval_id is None and decision.supervisor_required is False


def test_blast_is_scored_everywhere_but_gated_only_where_the_spec_gates() -> None:
    s = _high_blast(Scenario())
    s.inp["env"] = "dev"  # 90 - 15 (not prod) = 75, and in dev no threshold applies
    s.inp["blast_score"] = 99
    decision = _allowed(s.run())
    assert decision.blast_score == 99 and decision.blast_gate_passed is True
    s = _high_blast(Scenario())
    s.config["enforce_blast_scoring_in_prod"] = False  # prod without the floor: no gate
    decision = _allowed(s.run())
    assert decision.blast_score == 90 and decision.blast_gate_passed is True
    s.rules = [_rule(required_controls_suggested=[AUDIT, "ctrl.blast_radius_scoring"])]
    s.records = [_record(currently_implements=[AUDIT, "ctrl.blast_radius_scoring"])]
    _held(s.run(), "DENY_REQUIRES_HUMAN")  # the rule asks for blast scoring: gated again


def test_blast_gate_threshold_is_inclusive_and_callers_can_only_raise() -> None:
    s = Scenario()
    s.inp |= {"env": "prod", "blast_score": 84}
    assert _allowed(s.run()).blast_score == 84
    s.inp["blast_score"] = 85
    _held(s.run(), "DENY_REQUIRES_HUMAN")
    s = _high_blast(Scenario())
    s.inp["blast_score"] = 0  # cannot lower the heuristic's 90
    assert _held(s.run(), "DENY_REQUIRES_HUMAN")["blast_score"] == 90


def test_worker_blast_radius_feeds_the_score() -> None:
    s = Scenario(
        records=[
            _record(
                blast_radius={
                    "data": 5,
                    "network": 5,
                    "financial": 5,
                    "time": 5,
                    "reversibility": "irreversible",
                }
            )
        ]
    )
    s.inp["env"] = "prod"
    assert _held(s.run(), "DENY_REQUIRES_HUMAN")["blast_score"] == 100


def test_rule_max_blast_score_applies_in_dev() -> None:
    s = Scenario(rules=[_rule(max_blast_score=20, escalation={"supervisor_level": "executor"})])
    assert _allowed(s.run()).blast_score == 10
    s.inp["request"] = {"writes": True}  # 25 > 20
    decision = s.run()
    assert _held(decision, "DENY_REQUIRES_HUMAN")["blast_score"] == 25
    assert decision.supervisor_level == "executor"
    s.human_approved = True
    _allowed(s.run())


def test_blast_heuristic_matches_the_reference_formula() -> None:
    base = Scenario().inp
    assert blast_heuristic(RouteInput(**base)) == 10
    assert blast_heuristic(RouteInput(**base | {"data_label": "INTERNAL"})) == 30
    full = base | {
        "data_label": "RESTRICTED",
        "env": "edge",
        "qos_class": "P0",
        "request": {"external_call": True, "mutates_state": True},
    }
    assert blast_heuristic(RouteInput(**full)) == 100  # 105, capped
    assert blast_heuristic(RouteInput(**full | {"qos_class": "P1"})) == 95
    assert blast_heuristic(RouteInput(**full | {"request": {"egress": 1, "writes": 1}})) == 100
    assert blast_heuristic(RouteInput(**full | {"request": {"egress": 0, "writes": ""}})) == 75


# -- stage 5: the policy gate ------------------------------------------------------------------


def _gated(**decision: Any) -> Scenario:
    return Scenario(rules=[_rule(escalation={"policy_gate": True}, **decision)])


def test_deny_policy_gate_unconfigured() -> None:
    s = _gated()
    s.gate = False
    _denied(s.run(), "DENY_POLICY_GATE_UNCONFIGURED")
    s = Scenario(gate=False, config={"enforce_policy_gate": True})
    _denied(s.run(), "DENY_POLICY_GATE_UNCONFIGURED")


def test_gate_is_not_consulted_unless_asked() -> None:
    s = Scenario(verdict=("DENY", "v", "no"))
    _allowed(s.run())


def test_gate_receives_the_call_context() -> None:
    seen: list[dict[str, Any]] = []

    class Gate:
        def evaluate(self, context: dict[str, Any]) -> tuple[str, str, str]:
            seen.append(context)
            return ("ALLOW", "pol.v9", "ok")

    s = _gated()
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry=s.registry(),
        policy_gate_eval=Gate(),
        tool="summarize_document",
    )
    assert _allowed(decision).policy_version == "pol.v9"
    (context,) = seen
    assert context["worker_id"] == WORKER and context["worker_species_id"] == SPECIES
    assert context["tool"] == "summarize_document"
    assert context["request"] == {"text": "hello"}
    assert {"capability_id", "tenant_id", "env", "data_label", "tenant_risk", "qos_class"} <= set(
        context
    )
    gated = decision.telemetry_envelopes[-1]
    assert gated["event_id"] == "evt.os.policy.gated" and gated["reason"] == "ok"


def test_deny_internal_error_when_the_gate_raises(capsys: pytest.CaptureFixture[str]) -> None:
    s = _gated()
    s.verdict = RuntimeError("db password hunter2 at /srv/secret/path")
    decision = s.run()
    _denied(decision, "DENY_INTERNAL_ERROR")
    dumped = decision.model_dump_json()
    assert "hunter2" not in dumped and "/srv/secret" not in dumped and "RuntimeError" not in dumped
    # The operator's stderr gets the story.
    assert "hunter2" in capsys.readouterr().err


def test_deny_policy_gate() -> None:
    s = _gated()
    s.verdict = ("DENY", "pol.v7", "tenant is suspended")
    decision = s.run()
    reason = _denied(decision, "DENY_POLICY_GATE")
    assert reason["reason"] == "tenant is suspended"
    assert reason["policy_version"] == "pol.v7" == decision.policy_version
    assert decision.telemetry_envelopes[0]["policy_version"] == "pol.v7"


def test_deny_requires_human_approval_from_the_gate() -> None:
    s = _gated()
    s.verdict = ("REQUIRE_HUMAN", "pol.v7", "destructive")
    decision = s.run()
    reason = _held(decision, "DENY_REQUIRES_HUMAN_APPROVAL")
    assert reason["reason"] == "destructive" and reason["policy_version"] == "pol.v7"
    assert decision.approval_expires_at == "2026-03-04T05:21:07Z"
    s.human_approved = True
    assert _allowed(s.run()).policy_version == "pol.v7"


def test_deny_requires_human_approval_from_the_rule() -> None:
    s = Scenario(
        rules=[_rule(escalation={"human_required_default": True, "rationale": "deletes files"})]
    )
    decision = s.run()
    assert _held(decision, "DENY_REQUIRES_HUMAN_APPROVAL")["reason"] == "deletes files"
    assert decision.escalation_effective.human_required_default is True
    s.human_approved = True
    _allowed(s.run())


def test_approval_ttl_comes_from_the_hall() -> None:
    s = _gated()
    s.verdict = ("REQUIRE_HUMAN", "v", "r")
    s.config["approval_ttl_s"] = 60
    assert s.run().approval_expires_at == (NOW + timedelta(seconds=60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


@pytest.mark.parametrize(
    "answer",
    [
        "allow",
        "ALLOW",
        ("ALLOW",),
        None,
        ("ALLOW", "pol.v1", 5),
        ("ALLOW", "pol.v1", None),
        ("allow", "pol.v1", "ok"),
        ("MAYBE", "pol.v1", "ok"),
        ("ALLOW", 7, "ok"),
        ("ALLOW", "pol.v1", "ok", "extra"),
        {"decision": "ALLOW"},
        True,
    ],
    ids=repr,
)
def test_deny_policy_gate_invalid_response(answer: Any) -> None:
    s = _gated()
    s.verdict = answer
    _denied(s.run(), "DENY_POLICY_GATE_INVALID_RESPONSE")


# -- stage 6: candidates ----------------------------------------------------------------------


def test_deny_no_available_worker_when_not_enrolled() -> None:
    s = Scenario(records=[])
    decision = s.run()
    _denied(decision, "DENY_NO_AVAILABLE_WORKER")
    assert decision.candidate_workers_ranked[0].skip_reason == "unavailable"


def test_deny_no_available_worker_when_env_not_allowed() -> None:
    s = Scenario(records=[_record(allowed_environments=["dev", "stage"])])
    _allowed(s.run())
    s.inp["env"] = "prod"
    decision = s.run()
    _denied(decision, "DENY_NO_AVAILABLE_WORKER")
    assert decision.candidate_workers_ranked[0].skip_reason == "env_not_allowed"


def test_deny_no_available_worker_when_pinned_to_another_worker() -> None:
    s = Scenario(pinned="org.acme.other")
    decision = s.run()
    _denied(decision, "DENY_NO_AVAILABLE_WORKER")
    assert decision.candidate_workers_ranked[0].skip_reason == "not_the_called_tool"
    s.pinned = WORKER
    _allowed(s.run())


def test_pinning_selects_the_called_worker_among_a_species() -> None:
    s = Scenario(records=[_record(worker_id="org.acme.a"), _record(worker_id="org.acme.b")])
    assert s.run().selected_worker_id == "org.acme.a"  # sorted by worker id
    s.pinned = "org.acme.b"
    assert s.run().selected_worker_id == "org.acme.b"


def test_deny_no_available_worker_when_marked_unavailable() -> None:
    s = Scenario()
    registry = s.registry()
    registry.set_workers_available([])
    decision = make_decision(
        RouteInput(**s.inp), load_rules_from_dict({"rules": s.rules}), registry=registry
    )
    _denied(decision, "DENY_NO_AVAILABLE_WORKER")


def test_ranking_skip_reasons() -> None:
    s = Scenario(
        records=[_record(), _record(worker_id="org.acme.b", worker_species_id="wrk.doc.b")],
        rules=[
            _rule(
                candidate_workers_ranked=[
                    {"worker_species_id": "wrk.doc.missing"},
                    {"worker_species_id": SPECIES, "score_hint": 0.9},
                    {"worker_species_id": "wrk.doc.b"},
                ]
            )
        ],
    )
    decision = _allowed(s.run())
    assert [(c.worker_species_id, c.skip_reason) for c in decision.candidate_workers_ranked] == [
        ("wrk.doc.missing", "unavailable"),
        (SPECIES, None),
        ("wrk.doc.b", "already_selected"),
    ]
    assert decision.candidate_workers_ranked[1].score_hint == 0.9


# -- stage 7: attestation ---------------------------------------------------------------------


def _attesting() -> Scenario:
    return Scenario(config={"require_worker_attestation": True})


def test_deny_attestation_unconfigured() -> None:
    s = _attesting()
    registry = s.registry()
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry.controls_present(),
        registry.worker_available,
        hall_config=HallConfig(require_worker_attestation=True),
    )
    _denied(decision, "DENY_ATTESTATION_UNCONFIGURED")
    assert decision.worker_attestation_checked is True


def test_deny_worker_attestation_missing() -> None:
    s = _attesting()
    s.registered_hash = None
    _denied(s.run(), "DENY_WORKER_ATTESTATION_MISSING")


@pytest.mark.parametrize("bad", ["sha256:" + "a" * 64, "A" * 64, "a" * 63, "", "zz" * 32])
def test_deny_worker_attestation_invalid_hash(bad: str) -> None:
    s = _attesting()
    s.registered_hash = bad
    _denied(s.run(), "DENY_WORKER_ATTESTATION_INVALID_HASH")


def test_deny_worker_hash_unavailable() -> None:
    s = _attesting()
    s.current_hash = None
    _denied(s.run(), "DENY_WORKER_HASH_UNAVAILABLE")
    s.current_hash = "not-hex"
    _denied(s.run(), "DENY_WORKER_HASH_UNAVAILABLE")

    def boom() -> str:
        raise OSError("disk gone")

    registry = s.registry()
    registry.set_attestation(WORKER, GOOD_HASH, boom)
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry=registry,
        hall_config=HallConfig(require_worker_attestation=True),
    )
    _denied(decision, "DENY_WORKER_HASH_UNAVAILABLE")


def test_deny_worker_tampered_never_reveals_either_hash() -> None:
    s = _attesting()
    registered, current = hashlib.sha256(b"v1").hexdigest(), hashlib.sha256(b"v2").hexdigest()
    s.registered_hash, s.current_hash = registered, current
    decision = s.run()
    reason = _denied(decision, "DENY_WORKER_TAMPERED")
    assert reason["worker_species_id"] == SPECIES
    assert decision.worker_attestation_checked is True
    assert decision.worker_attestation_valid is False
    dumped = decision.model_dump_json()
    assert registered not in dumped and current not in dumped


def test_valid_attestation_in_prod_emits_no_skip_event() -> None:
    s = _attesting()
    s.inp["env"] = "prod"
    decision = _allowed(s.run())
    assert decision.worker_attestation_valid is True
    ids = [e["event_id"] for e in decision.telemetry_envelopes]
    assert "evt.os.worker.attestation_skipped" not in ids


@pytest.mark.parametrize(
    "precondition", ["deny_if_no_attestation_in_prod", "deny_if_unsigned_artifact_in_prod"]
)
def test_a_rules_attestation_precondition_holds_in_prod_without_the_floor(
    precondition: str,
) -> None:
    s = Scenario(rules=[_rule(preconditions={precondition: True})])  # the floor stays off
    s.registered_hash = None
    assert _allowed(s.run()).worker_attestation_checked is False  # dev: not asked
    s.inp["env"] = "prod"
    decision = s.run()
    _denied(decision, "DENY_WORKER_ATTESTATION_MISSING")
    assert decision.worker_attestation_checked is True
    s.registered_hash = GOOD_HASH
    assert _allowed(s.run()).worker_attestation_valid is True


# -- stage 8: privilege envelopes ------------------------------------------------------------


def _privileged(**record: Any) -> Scenario:
    s = Scenario(records=[_record(**record)], config={"enforce_privilege_envelopes": True})
    s.inp |= {"env": "prod", "data_label": "RESTRICTED"}
    return s


def test_deny_privilege_envelope_unconfigured() -> None:
    s = Scenario(
        rules=[_rule(required_controls_suggested=[AUDIT, "ctrl.privilege_envelopes_required"])],
        records=[_record(currently_implements=[AUDIT, "ctrl.privilege-envelopes-required"])],
    )
    registry = s.registry()
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry.controls_present(),
        registry.worker_available,
    )
    _denied(decision, "DENY_PRIVILEGE_ENVELOPE_UNCONFIGURED")
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": [_rule()]}),
        registry.controls_present(),
        registry.worker_available,
        registry.get_privilege_envelope,
        None,
        hall_config=HallConfig(enforce_privilege_envelopes=True),
    )
    _denied(decision, "DENY_PRIVILEGE_ENVELOPE_UNCONFIGURED")


@pytest.mark.parametrize(
    ("record", "egress", "why"),
    [
        (
            {"privilege_envelope": {"secrets_access": ["vault:db"]}},
            {},
            "secrets_access_not_allowed_for_restricted_data",
        ),
        (
            {"privilege_envelope": {"network_egress": ["evil.example"]}},
            {"prod": ["api.example"]},
            "egress_not_allowlisted:evil.example",
        ),
        ({"privilege_envelope": None}, {}, "no_privilege_envelope_declared"),
    ],
    ids=["secrets", "egress", "undeclared"],
)
def test_deny_privilege_envelope_violated(record: dict, egress: dict, why: str) -> None:
    s = _privileged(**record)
    s.egress = egress
    decision = s.run()
    reason = _denied(decision, "DENY_PRIVILEGE_ENVELOPE_VIOLATED")
    assert reason["reason"] == why and why in reason["message"]
    assert reason["worker_species_id"] == SPECIES


def test_allowlisted_egress_and_lower_labels_pass() -> None:
    s = _privileged(privilege_envelope={"network_egress": ["api.example"]})
    s.egress = {"prod": ["api.example"]}
    assert _allowed(s.run()).privilege_envelope_ok is True
    s = _privileged(privilege_envelope={"secrets_access": ["vault:db"]})
    s.inp["data_label"] = "INTERNAL"
    _allowed(s.run())


_WORKSPACE = {"filesystem_reads": ["workspace/"], "filesystem_writes": ["workspace/out"]}


def _touching(envelope: dict[str, Any], request: dict[str, Any], **paths: str) -> Scenario:
    """A call to a tool whose ``path`` (and ``target``) name files; no privilege floor or rule.
    The hall is ``tests/fixtures/halls/files``: workspace/a.txt, workspace/out/b.txt."""
    tool = {
        "name": "files",
        "description": "Reads and writes files.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "target": {"type": "string"}},
        },
        "path_arguments": paths or {"path": "read"},
    }
    s = Scenario(records=[_record(privilege_envelope=envelope, tool=tool)])
    s.inp["request"] = request
    return s


@pytest.mark.parametrize(
    ("request_", "paths"),
    [
        ({"path": "a.txt"}, {}),
        ({"path": "."}, {}),  # the workspace itself
        ({"path": "out/../a.txt"}, {}),
        ({"path": str(FILES_HALL / "workspace" / "a.txt")}, {}),
        ({"path": "out/b.txt"}, {}),  # a write directory may be read
        ({"target": "out/new.txt"}, {"target": "write"}),  # not there yet: its directory is
        ({}, {}),  # names no file
    ],
    ids=[
        "read",
        "the-directory",
        "dotdot-inside",
        "absolute",
        "read-in-write-dir",
        "write",
        "none",
    ],
)
def test_files_inside_the_envelope_pass_without_any_floor(
    request_: dict[str, Any], paths: dict[str, str]
) -> None:
    decision = _touching(_WORKSPACE, request_, **paths).run()
    assert _allowed(decision).privilege_envelope_ok is True
    assert "evt.gov.privilege_envelope.checked" in [
        e["event_id"] for e in decision.telemetry_envelopes
    ]


_OUTSIDE = (
    "The argument 'path' names a file outside the directories the worker's privilege "
    "envelope lets it {}."
)
_UNRESOLVABLE = "The argument 'path' is not a path the hall can resolve."


@pytest.mark.parametrize(
    ("request_", "paths", "why", "message"),
    [
        ({"path": "../hall.yaml"}, {}, "read_outside_envelope", _OUTSIDE.format("read")),
        ({"path": "../workspace-secrets/key.pem"}, {}, "path_unresolvable", _UNRESOLVABLE),
        ({"path": "/etc/passwd"}, {}, "read_outside_envelope", None),
        ({"path": "a.txt"}, {"path": "write"}, "write_outside_envelope", _OUTSIDE.format("write")),
        ({"path": "a\x00b"}, {}, "path_unresolvable", _UNRESOLVABLE),
        ({"path": "nowhere/a.txt"}, {}, "path_unresolvable", _UNRESOLVABLE),
        ({"path": "a.txt/x"}, {}, "path_unresolvable", _UNRESOLVABLE),
        # Only callers that skip the schema check (pyhall route, the library) send these.
        ({"path": ["../hall.yaml"]}, {}, "path_unresolvable", _UNRESOLVABLE),
        ({"path": None}, {}, "path_unresolvable", _UNRESOLVABLE),
    ],
    ids=[
        "outside",
        "missing-sibling",
        "absolute",
        "write",
        "nul",
        "missing-dir",
        "not-a-dir",
        "a-list",
        "null",
    ],
)
def test_files_outside_the_envelope_are_denied(
    request_: dict[str, Any], paths: dict[str, str], why: str, message: str | None
) -> None:
    decision = _touching(_WORKSPACE, request_, **paths).run()
    reason = _denied(decision, "DENY_PRIVILEGE_ENVELOPE_VIOLATED")
    assert reason["reason"] == why and reason["argument"] == "path"
    assert decision.privilege_envelope_ok is False
    if message is not None:
        assert reason["message"] == message
    # Nothing resolved reaches the decision: not its record, not its input's hash.
    assert str(FILES_HALL) not in decision.model_dump_json()
    assert decision.artifact_hash == _touching(_WORKSPACE, request_, **paths).run().artifact_hash


@pytest.mark.parametrize(
    "directories",
    [[str(FILES_HALL / "workspace")], [str(FILES_HALL)], ["/"], [".."], ["."]],
    ids=["absolute", "absolute-hall", "root", "above-the-hall", "the-hall"],
)
def test_envelope_directories_may_be_absolute_or_contain_the_hall(directories: list[str]) -> None:
    _allowed(_touching({"filesystem_reads": directories}, {"path": "a.txt"}).run())


def test_envelope_directories_that_do_not_resolve_confine_nothing() -> None:
    envelope = {"filesystem_reads": ["nowhere/", "workspace/a.txt/x"]}
    _denied(_touching(envelope, {"path": "a.txt"}).run(), "DENY_PRIVILEGE_ENVELOPE_VIOLATED")


def test_a_sibling_that_shares_a_prefix_is_outside(tmp_path: Path) -> None:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "workspace-secrets").mkdir()
    (tmp_path / "workspace-secrets" / "key.pem").write_text("k")
    s = _touching(_WORKSPACE, {"path": "../workspace-secrets/key.pem"})
    s.hall_dir, s.workspace = str(tmp_path), str(tmp_path / "workspace")
    reason = _denied(s.run(), "DENY_PRIVILEGE_ENVELOPE_VIOLATED")
    assert reason["reason"] == "read_outside_envelope"


def test_a_call_naming_files_without_a_hall_directory_fails_closed() -> None:
    s = _touching(_WORKSPACE, {"path": "a.txt"})
    s.hall_dir = None
    _denied(s.run(), "DENY_INTERNAL_ERROR")


# -- holds come last: a call some later stage denies is denied, not put to a person ----------


def test_a_hold_waits_for_the_later_stages() -> None:
    held = _touching(_WORKSPACE, {"path": "a.txt"}, path="write")
    held.records[0]["privilege_envelope"] = {"filesystem_writes": ["workspace/"]}
    held.config = {"enforce_policy_gate": True}
    held.verdict = ("REQUIRE_HUMAN", "v2", "a person decides")
    _held(held.run(), "DENY_REQUIRES_HUMAN_APPROVAL")
    outside = _touching(_WORKSPACE, {"path": "../hall.yaml"}, path="write")
    outside.config = {"enforce_policy_gate": True}
    outside.verdict = ("REQUIRE_HUMAN", "v2", "a person decides")
    decision = outside.run()
    _denied(decision, "DENY_PRIVILEGE_ENVELOPE_VIOLATED")
    assert decision.pending_approval_id is None and decision.supervisor_required is False


def test_a_blast_hold_yields_to_a_policy_denial() -> None:
    s = _high_blast(_gated())
    s.verdict = ("DENY", "v1", "never")
    _denied(s.run(), "DENY_POLICY_GATE")
    s.verdict = ("ALLOW", "v1", "fine")
    _held(s.run(), "DENY_REQUIRES_HUMAN")


def test_deny_internal_error_when_the_privilege_check_raises() -> None:
    s = Scenario(config={"enforce_privilege_envelopes": True})

    def explode(env: str, label: str, envelope: Any) -> tuple[bool, str]:
        raise ValueError("secret-detail-42")

    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry_policy_allows_privilege=explode,
        registry=s.registry(),
        hall_config=HallConfig(enforce_privilege_envelopes=True),
    )
    _denied(decision, "DENY_INTERNAL_ERROR")
    assert "secret-detail-42" not in decision.model_dump_json()


# -- DENY_INTERNAL_ERROR from rules -----------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        [Rule("r", {"env": 5}, {})],
        [Rule("r", {"capability_id": CAP}, {"candidate_workers_ranked": "wrk.doc.summarizer"})],
        [Rule(None, {}, {})],  # type: ignore[arg-type]
        [{"rule_id": "r", "match": {}, "decision": {}}],
        [Rule("r", {}, {}), Rule("r", {}, {})],
        None,
        42,
    ],
    ids=["int-match", "str-candidates", "no-id", "dict-not-rule", "duplicate", "none", "int"],
)
def test_deny_internal_error_for_a_rule_list_with_wrong_types(rules: Any) -> None:
    decision = make_decision(RouteInput(**Scenario().inp), rules, registry=Registry())
    _denied(decision, "DENY_INTERNAL_ERROR")


# -- order of the stages -----------------------------------------------------------------------


def _stage_unknown_tenant(s: Scenario) -> None:
    s.inp["tenant_id"] = "mallory"


def _stage_credential(s: Scenario) -> None:
    s.inp["tenant_credential"] = None


def _stage_invalid_input(s: Scenario) -> None:
    s.inp["blast_score"] = 101


def _stage_shadow(s: Scenario) -> None:
    s.rules.append(_rule("rr-shadowed"))


def _stage_no_match(s: Scenario) -> None:
    s.inp["capability_id"] = "cap.doc.unknown"


def _stage_correlation(s: Scenario) -> None:
    s.inp["correlation_id"] = " "


def _stage_controls(s: Scenario) -> None:
    s.records[0]["currently_implements"] = []


def _stage_blast(s: Scenario) -> None:
    s.inp |= {"data_label": "RESTRICTED", "qos_class": "P0", "request": {"writes": True}}


def _stage_gate(s: Scenario) -> None:
    s.verdict = ("DENY", "pol.v1", "no")


def _stage_no_worker(s: Scenario) -> None:
    s.records[0]["allowed_environments"] = ["dev"]


def _stage_attestation(s: Scenario) -> None:
    s.current_hash = OTHER_HASH


def _stage_privilege(s: Scenario) -> None:
    s.records[0]["privilege_envelope"] = None


STAGES: list[tuple[str, Callable[[Scenario], None]]] = [
    ("DENY_UNKNOWN_TENANT", _stage_unknown_tenant),
    ("DENY_INVALID_CREDENTIAL", _stage_credential),
    ("DENY_INVALID_INPUT", _stage_invalid_input),
    ("DENY_SHADOW_RULES_DETECTED", _stage_shadow),
    ("DENY_NO_MATCHING_RULE", _stage_no_match),
    ("DENY_MISSING_CORRELATION_ID", _stage_correlation),
    ("DENY_MISSING_REQUIRED_CONTROLS", _stage_controls),
    ("DENY_REQUIRES_HUMAN", _stage_blast),
    ("DENY_POLICY_GATE", _stage_gate),
    ("DENY_NO_AVAILABLE_WORKER", _stage_no_worker),
    ("DENY_WORKER_TAMPERED", _stage_attestation),
    ("DENY_PRIVILEGE_ENVELOPE_VIOLATED", _stage_privilege),
]

# Candidates are judged one at a time: a worker that cannot run here at all (not allowed
# in this env) is no candidate, so its missing controls are not the reason.
_NOT_INDEPENDENT = {("DENY_MISSING_REQUIRED_CONTROLS", "DENY_NO_AVAILABLE_WORKER")}
_HOLDS = {"DENY_REQUIRES_HUMAN", "DENY_REQUIRES_HUMAN_APPROVAL"}


@pytest.mark.parametrize(("code", "stage"), STAGES, ids=[c for c, _ in STAGES])
def test_each_stage_alone_gives_its_code(code: str, stage: Callable[[Scenario], None]) -> None:
    s = _full()
    stage(s)
    _denied(s.run(), code)


ORDERED_PAIRS = [
    (STAGES[i], STAGES[j])
    for i in range(len(STAGES))
    for j in range(i + 1, len(STAGES))
    if (STAGES[i][0], STAGES[j][0]) not in _NOT_INDEPENDENT
]


@pytest.mark.parametrize(
    ("earlier", "later"), ORDERED_PAIRS, ids=[f"{a[0]}>{b[0]}" for a, b in ORDERED_PAIRS]
)
def test_the_earlier_stage_wins_and_a_hold_waits(earlier: tuple, later: tuple) -> None:
    s = _full()
    later[1](s)
    earlier[1](s)
    # A hold waits for the later stages: a call they deny is denied, not put to a person.
    _denied(s.run(), later[0] if earlier[0] in _HOLDS else earlier[0])


def test_blank_tenant_beats_invalid_input_and_no_match() -> None:
    s = Scenario(construct=True)
    s.inp |= {"tenant_id": " ", "blast_score": 500, "capability_id": "cap.none.here"}
    _denied(s.run(), "DENY_MISSING_TENANT_ID")


def test_gate_is_not_called_when_an_earlier_stage_denies() -> None:
    calls: list[Any] = []
    s = _gated()
    s.inp["tenant_id"] = "mallory"
    s.config = {"require_signatory": True, "allowed_tenants": ["acme"]}
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry=s.registry(),
        hall_config=HallConfig(**s.config),
        policy_gate_eval=lambda ctx: calls.append(ctx) or ("ALLOW", "v", "r"),
    )
    _denied(decision, "DENY_UNKNOWN_TENANT")
    assert calls == []
    # A blast hold is not a denial yet: the gate still has its say.
    s = _high_blast(_gated())
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry=s.registry(),
        policy_gate_eval=lambda ctx: calls.append(ctx) or ("ALLOW", "v", "r"),
    )
    _held(decision, "DENY_REQUIRES_HUMAN")
    assert len(calls) == 1


# -- dry run, artifact hash, determinism --------------------------------------------------------


def test_dry_run_marks_the_decision_and_every_event() -> None:
    s = _full()
    s.inp["dry_run"] = True
    decision = _allowed(s.run())
    assert decision.dry_run is True
    assert all(e["dry_run"] is True for e in decision.telemetry_envelopes)
    s.inp["tenant_id"] = "mallory"
    denied = s.run()
    assert denied.dry_run is True and denied.telemetry_envelopes[0]["dry_run"] is True
    s.inp["dry_run"] = False
    assert all("dry_run" not in e for e in s.run().telemetry_envelopes)


def test_artifact_hash_is_sha256_of_rfc8785_input() -> None:
    s = Scenario()
    s.inp["request"] = {"text": "héllo \U0001f600", "ratio": 0.1, "n": [1, 2.5, None]}
    inp = RouteInput(**s.inp)
    decision = s.run()
    expected = hashlib.sha256(rfc8785.dumps(inp.model_dump())).hexdigest()
    assert decision.artifact_hash == expected
    s.inp["request"] = {"text": "héllo \U0001f600", "ratio": 0.2, "n": [1, 2.5, None]}
    assert s.run().artifact_hash != expected
    # Denied decisions carry it too.
    s.inp["capability_id"] = "cap.nothing.here"
    denied = s.run()
    assert (
        denied.artifact_hash
        == hashlib.sha256(rfc8785.dumps(RouteInput(**s.inp).model_dump())).hexdigest()
    )


_MASKED = ("decision_id", "timestamp", "pending_approval_id", "approval_expires_at")


def _masked(decision: RouteDecision) -> dict[str, Any]:
    data = json.loads(decision.model_dump_json())
    for key in _MASKED:
        if data[key] is not None:
            data[key] = "<masked>"
    for envelope in data["telemetry_envelopes"]:
        envelope["timestamp"] = "<masked>"
    return data


def _golden_cases() -> dict[str, Scenario]:
    cases: dict[str, Scenario] = {"allow-dev-minimal": Scenario(), "allow-prod-full": _full()}
    for code, stage in STAGES:
        s = _full()
        stage(s)
        cases[f"deny-{code}"] = s

    def add(name: str, s: Scenario, edit: Callable[[Scenario], None] | None = None) -> None:
        if edit is not None:
            edit(s)
        cases[name] = s

    add("allow-dry-run", _full(), lambda s: s.inp.update(dry_run=True))
    add(
        "allow-approved-blast",
        _high_blast(Scenario()),
        lambda s: setattr(s, "human_approved", True),
    )
    add(
        "allow-second-candidate",
        Scenario(),
        lambda s: (
            s.records.insert(
                0,
                _record(
                    worker_id="org.acme.cheap",
                    worker_species_id="wrk.doc.cheap",
                    currently_implements=[],
                ),
            )
            or s.rules[0]["decision"]["candidate_workers_ranked"].insert(
                0, {"worker_species_id": "wrk.doc.cheap"}
            )
        ),
    )
    add("deny-missing-tenant-id", Scenario(construct=True), lambda s: s.inp.update(tenant_id=" "))
    add("deny-forged-credential", _full(), lambda s: s.inp.update(tenant_credential=_forged()))
    add("deny-shadow-edge", Scenario(), lambda s: (s.inp.update(env="edge"), _stage_shadow(s)))
    add("allow-shadow-dev", Scenario(), _stage_shadow)
    add("deny-max-blast-dev", Scenario(rules=[_rule(max_blast_score=5)]))
    add(
        "deny-gate-require-human",
        _gated(),
        lambda s: setattr(s, "verdict", ("REQUIRE_HUMAN", "v2", "why")),
    )
    add(
        "deny-rule-human-default",
        Scenario(rules=[_rule(escalation={"human_required_default": True})]),
    )
    add("deny-gate-invalid", _gated(), lambda s: setattr(s, "verdict", ("allow", "v", "r")))
    add("deny-gate-raises", _gated(), lambda s: setattr(s, "verdict", RuntimeError("boom")))
    add("deny-gate-unconfigured", _gated(), lambda s: setattr(s, "gate", False))
    add("deny-pinned-elsewhere", Scenario(pinned="org.acme.other"))
    add("deny-attestation-missing", _attesting(), lambda s: setattr(s, "registered_hash", None))
    add("deny-attestation-invalid", _attesting(), lambda s: setattr(s, "registered_hash", "x"))
    add("deny-hash-unavailable", _attesting(), lambda s: setattr(s, "current_hash", None))
    add("allow-reference-mode", Scenario(reference=True))
    add(
        "deny-attestation-unconfigured",
        Scenario(reference=True, config={"require_worker_attestation": True}),
    )
    add(
        "deny-privilege-unconfigured",
        Scenario(reference=True, config={"enforce_privilege_envelopes": True}),
    )
    add("deny-privilege-secrets", _privileged(privilege_envelope={"secrets_access": ["k"]}))
    add("allow-privilege-files", _touching(_WORKSPACE, {"path": "a.txt"}))
    add("deny-privilege-file-outside", _touching(_WORKSPACE, {"path": "a.txt"}, path="write"))
    return cases


def _golden_dump() -> dict[str, Any]:
    return {name: _masked(s.run()) for name, s in sorted(_golden_cases().items())}


def test_golden_decisions() -> None:
    first = _golden_dump()
    assert len(first) >= 30
    codes = {d["deny_reason_if_denied"]["code"] for d in first.values() if d["denied"]}
    assert len(codes) == 22  # every code of spec section 8
    # Determinism: a second run is identical.
    assert _golden_dump() == first
    if UPDATE_GOLDENS:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(first, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(expected) == sorted(first), "cases differ; regenerate (see module docstring)"
    for name in expected:
        assert first[name] == expected[name], f"decision {name!r} changed"


# -- never raises ---------------------------------------------------------------------------

_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_VALID = {
    "capability_id": st.sampled_from([CAP, "cap.other.x"]),
    "env": st.sampled_from(["dev", "stage", "prod", "edge"]),
    "data_label": st.sampled_from(["PUBLIC", "INTERNAL", "RESTRICTED"]),
    "tenant_risk": st.sampled_from(["low", "medium", "high"]),
    "qos_class": st.sampled_from(["P0", "P1", "P2", "P3"]),
    "tenant_id": st.sampled_from(["acme", "x\x1b[2J"]),
    "correlation_id": st.sampled_from(["c1", "c1", "c1", " ", ""]),
    "blast_score": st.integers(-5, 105),
    "blast_radius": st.dictionaries(
        st.sampled_from(["data", "network", "reversibility", "zz"]), _JSONISH, max_size=3
    ),
}
_STRUCTURED = st.fixed_dictionaries(
    {k: v for k, v in _VALID.items() if k not in ("blast_score", "blast_radius")},
    optional={
        "blast_score": _VALID["blast_score"],
        "blast_radius": _VALID["blast_radius"],
        "request": st.dictionaries(
            st.sampled_from(["writes", "egress", "text", "x"]), _JSONISH, max_size=3
        ),
        "dry_run": st.booleans(),
    },
)


def _weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, picked in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda k: table[k])


# Mostly well-formed requests (so that every later stage is reached), some with junk
# over a field or an unknown field, some not even a mapping.
_INPUTS = _weighted(
    (7, _STRUCTURED),
    (
        2,
        st.tuples(
            _STRUCTURED,
            st.dictionaries(st.sampled_from([*_VALID, "request", "junk"]), _JSONISH, max_size=2),
        ).map(lambda pair: pair[0] | pair[1]),
    ),
    (1, _JSONISH),
)
_CONDITION = st.one_of(
    st.sampled_from(["dev", "prod", CAP, "PUBLIC", "P2", "low", "acme"]),
    st.fixed_dictionaries({"in": st.lists(st.sampled_from(["dev", "prod", CAP]), max_size=3)}),
    st.just({"any": True}),
    _JSONISH,
)
_MATCHES = st.dictionaries(
    st.sampled_from(["capability_id", "env", "data_label", "qos_class", "tenant_id", "bogus"]),
    _CONDITION,
    max_size=3,
)
_DECISIONS = _weighted(
    (5, st.just(_rule()["decision"])),
    (2, st.just(_rule(escalation={"policy_gate": True})["decision"])),
    (
        1,
        st.fixed_dictionaries(
            {},
            optional={
                "candidate_workers_ranked": st.one_of(
                    st.just([{"worker_species_id": SPECIES}]), _JSONISH
                ),
                "required_controls_suggested": st.one_of(st.just([AUDIT]), _JSONISH),
                "escalation": st.one_of(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "policy_gate": st.booleans(),
                            "human_required_default": st.booleans(),
                        },
                    ),
                    _JSONISH,
                ),
                "max_blast_score": st.one_of(st.integers(-5, 105), _JSONISH),
                "preconditions": _JSONISH,
            },
        ),
    ),
)
_GOOD_RULE = st.builds(
    Rule,
    st.sampled_from(["r-a", "r-b", "r-c"]),
    st.sampled_from([{"capability_id": CAP}, {}, {"env": {"in": ["dev", "stage"]}}]),
    _DECISIONS,
)
_ANY_RULE = st.builds(Rule, st.one_of(st.text(max_size=4), _JSONISH), _MATCHES, _DECISIONS)
_RULES = _weighted(
    (7, st.lists(_GOOD_RULE, min_size=1, max_size=3, unique_by=lambda r: r.rule_id)),
    (2, st.lists(st.one_of(_GOOD_RULE, _ANY_RULE), max_size=4)),
    (1, _JSONISH),
)


def _callback(good: Any) -> st.SearchStrategy[Callable[..., Any] | None]:
    """Mostly a callback answering ``good``; else none at all, one that raises, or junk."""

    def answering(value: Any) -> Callable[..., Any]:
        return lambda *args: value

    def raising(*args: Any) -> Any:
        raise RuntimeError("callback exploded")

    return _weighted(
        (4, st.just(answering(good))),
        (1, st.none()),
        (1, st.just(raising)),
        (1, _JSONISH.map(answering)),
    )


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    inp=_INPUTS,
    rules=_RULES,
    controls=_weighted((3, st.just({AUDIT})), (1, st.none()), (1, _JSONISH)),
    available=_callback(True),
    envelope=_callback({"network_egress": "none"}),
    allows=_callback((True, "ok")),
    gate=_callback(("ALLOW", "pol.v1", "ok")),
    registered=_callback(GOOD_HASH),
    current=_callback(GOOD_HASH),
    flags=st.fixed_dictionaries(
        {
            key: st.sampled_from([False, False, False, True])
            for key in (
                "require_signatory",
                "require_credential",
                "require_worker_attestation",
                "enforce_privilege_envelopes",
                "enforce_policy_gate",
            )
        }
    ),
    use_registry=st.booleans(),
    approved=st.booleans(),
)
def test_make_decision_never_raises(
    inp: Any,
    rules: Any,
    controls: Any,
    available: Any,
    envelope: Any,
    allows: Any,
    gate: Any,
    registered: Any,
    current: Any,
    flags: dict[str, bool],
    use_registry: bool,
    approved: bool,
) -> None:
    decision = make_decision(
        inp,
        rules,
        controls,
        available,
        envelope,
        allows,
        gate,
        None,
        "task-1",
        HallConfig(**flags, allowed_tenants=["acme"]),
        registered,
        current,
        registry=Scenario().registry() if use_registry else None,
        human_approved=approved,
    )
    assert isinstance(decision, RouteDecision)
    event(decision.deny_code or "allowed")  # see --hypothesis-show-statistics
    events = [e["event_id"] for e in decision.telemetry_envelopes]
    if decision.denied:
        assert events == ["evt.os.task.denied"]
        assert decision.deny_code and decision.deny_code.startswith("DENY_")
        assert decision.selected_worker_species_id is None
    else:
        assert events[-3:] == [
            "evt.os.task.routed",
            "evt.os.worker.selected",
            "evt.os.policy.gated",
        ]
        assert decision.selected_worker_species_id
    json.loads(decision.model_dump_json())  # always serialisable for the receipt


def test_reference_mode_without_a_controls_set_fails_closed() -> None:
    # No registry and no registry_controls_present: nothing implements the rule's
    # controls, so they are missing (not silently unchecked).
    s = Scenario()
    for controls in (None, set()):
        decision = make_decision(
            RouteInput(**s.inp),
            load_rules_from_dict({"rules": s.rules}),
            controls,
            lambda species: True,
        )
        assert _denied(decision, "DENY_MISSING_REQUIRED_CONTROLS")["missing"] == [AUDIT]
    decision = make_decision(
        RouteInput(**s.inp),
        load_rules_from_dict({"rules": s.rules}),
        registry_worker_available=lambda species: True,
    )
    _denied(decision, "DENY_MISSING_REQUIRED_CONTROLS")
