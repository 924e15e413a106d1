"""Telemetry (spec section 9): which events every decision carries, in which order, with
which fields; dry-run marking; control characters stripped from ids; conformance checks."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from pyhall_mcp import telemetry as evt
from pyhall_mcp.conformance import (
    default_conformance_spec,
    validate_required_fields,
    validate_required_telemetry,
)
from pyhall_mcp.models import HallConfig, RouteDecision, RouteInput
from pyhall_mcp.registry import Registry
from pyhall_mcp.router import make_decision
from pyhall_mcp.rules import load_rules_from_dict

AUDIT = "ctrl.obs.audit-log-append-only"
HASH = "c" * 64


def _registry(attested: bool = False) -> Registry:
    registry = Registry()
    registry.enroll(
        {
            "worker_id": "org.acme.summarizer",
            "worker_species_id": "wrk.doc.summarizer",
            "capabilities": ["cap.doc.summarize"],
            "currently_implements": [AUDIT, "ctrl.blast-radius-scoring"],
            "privilege_envelope": {"network_egress": "none"},
        }
    )
    if attested:
        registry.set_attestation("org.acme.summarizer", HASH, lambda: HASH)
    return registry


def _rules(**decision: Any) -> Any:
    return load_rules_from_dict(
        {
            "rules": [
                {
                    "rule_id": "rr-1",
                    "match": {"capability_id": "cap.doc.summarize"},
                    "decision": {
                        "candidate_workers_ranked": [{"worker_species_id": "wrk.doc.summarizer"}],
                        "required_controls_suggested": [AUDIT],
                    }
                    | decision,
                }
            ]
        }
    )


def _inp(**over: Any) -> RouteInput:
    fields = {
        "capability_id": "cap.doc.summarize",
        "env": "dev",
        "data_label": "PUBLIC",
        "tenant_risk": "low",
        "qos_class": "P2",
        "tenant_id": "acme",
        "correlation_id": "corr-7",
    }
    return RouteInput(**fields | over)


def _decide(
    env: str = "dev",
    *,
    rules: Any = None,
    attested: bool = False,
    config: dict[str, Any] | None = None,
    **inp: Any,
) -> RouteDecision:
    return make_decision(
        _inp(env=env, **inp),
        rules if rules is not None else _rules(),
        registry=_registry(attested),
        hall_config=HallConfig(**(config or {})),
        policy_gate_eval=lambda ctx: ("ALLOW", "pol.v3", "fine"),
        task_id="task-42",
    )


def _ids(decision: RouteDecision) -> list[str]:
    return [e["event_id"] for e in decision.telemetry_envelopes]


MANDATORY = ["evt.os.task.routed", "evt.os.worker.selected", "evt.os.policy.gated"]
BLAST = "evt.gov.blast_scored"
PRIVILEGE = "evt.gov.privilege_envelope.checked"
SKIPPED = "evt.os.worker.attestation_skipped"


@pytest.mark.parametrize(
    ("env", "kwargs", "expected"),
    [
        # Every routed call is scored (the score is evidence in every env).
        ("dev", {}, [BLAST, *MANDATORY]),
        ("stage", {}, [BLAST, *MANDATORY]),
        ("dev", {"rules": _rules(max_blast_score=50)}, [BLAST, *MANDATORY]),
        (
            "dev",
            {"rules": _rules(required_controls_suggested=[AUDIT, "ctrl.blast_radius_scoring"])},
            [BLAST, *MANDATORY],
        ),
        ("dev", {"config": {"enforce_privilege_envelopes": True}}, [BLAST, PRIVILEGE, *MANDATORY]),
        ("prod", {}, [BLAST, SKIPPED, *MANDATORY]),
        ("edge", {}, [BLAST, SKIPPED, *MANDATORY]),
        (
            "prod",
            {"config": {"enforce_blast_scoring_in_prod": False}},
            [BLAST, SKIPPED, *MANDATORY],
        ),
        (
            "prod",
            {"config": {"enforce_privilege_envelopes": True}},
            [BLAST, PRIVILEGE, SKIPPED, *MANDATORY],
        ),
        (
            "prod",
            {
                "attested": True,
                "config": {"enforce_privilege_envelopes": True, "require_worker_attestation": True},
            },
            [BLAST, PRIVILEGE, *MANDATORY],
        ),
    ],
    ids=[
        "dev",
        "stage",
        "dev-max-blast",
        "dev-blast-control",
        "dev-privilege",
        "prod",
        "edge",
        "prod-no-blast-floor",
        "prod-privilege",
        "prod-everything",
    ],
)
def test_allowed_decisions_emit_the_spec_order(
    env: str, kwargs: dict[str, Any], expected: list[str]
) -> None:
    decision = _decide(env, **kwargs)
    assert not decision.denied, decision.deny_reason_if_denied
    assert _ids(decision) == expected


def test_every_event_has_the_common_fields_and_the_decision_timestamp() -> None:
    decision = _decide(
        "prod", config={"enforce_privilege_envelopes": True, "enforce_policy_gate": True}
    )
    assert len(decision.telemetry_envelopes) == 6
    for event in decision.telemetry_envelopes:
        assert event["timestamp"] == decision.timestamp
        assert event["correlation_id"] == "corr-7"
        assert event["tenant_id"] == "acme"
        assert event["capability_id"] == "cap.doc.summarize"
        assert "dry_run" not in event
    by_id = {e["event_id"]: e for e in decision.telemetry_envelopes}
    assert by_id[BLAST]["blast_score"] == decision.blast_score == 25
    assert by_id[BLAST]["matched_rule_id"] == "rr-1"
    assert by_id[PRIVILEGE]["worker_id"] == "org.acme.summarizer"
    assert by_id[SKIPPED]["severity"] == "warn"
    routed = by_id["evt.os.task.routed"]
    assert routed["task_id"] == "task-42" and routed["qos_class"] == "P2"
    assert routed["selected_worker_species_id"] == "wrk.doc.summarizer"
    assert routed["policy_version"] == "pol.v3"
    assert by_id["evt.os.worker.selected"]["worker_id"] == "org.acme.summarizer"
    gated = by_id["evt.os.policy.gated"]
    assert (gated["decision"], gated["policy_version"], gated["reason"]) == (
        "ALLOW",
        "pol.v3",
        "fine",
    )


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"capability_id": "cap.none.here"}, "DENY_NO_MATCHING_RULE"),
        ({"correlation_id": " "}, "DENY_MISSING_CORRELATION_ID"),
        ({"blast_score": 101}, "DENY_INVALID_INPUT"),
        ({"env": "prod", "blast_score": 99}, "DENY_REQUIRES_HUMAN"),
        ({"config": {"require_signatory": True}}, "DENY_UNKNOWN_TENANT"),
        ({"config": {"require_worker_attestation": True}}, "DENY_WORKER_ATTESTATION_MISSING"),
    ],
)
def test_denied_decisions_emit_exactly_one_denied_event(kwargs: dict[str, Any], code: str) -> None:
    decision = _decide(**kwargs)
    assert decision.denied
    (event,) = decision.telemetry_envelopes
    assert event["event_id"] == "evt.os.task.denied"
    assert event["deny_code"] == code == decision.deny_code
    assert event["deny_message"] == decision.deny_message
    assert event["timestamp"] == decision.timestamp
    assert event["correlation_id"] == decision.correlation_id
    assert event["tenant_id"] == "acme"
    assert event["matched_rule_id"] == decision.matched_rule_id


def test_a_denial_after_a_passed_gate_still_emits_only_the_denied_event() -> None:
    decision = _decide(config={"enforce_policy_gate": True, "require_worker_attestation": True})
    assert decision.deny_code == "DENY_WORKER_ATTESTATION_MISSING"
    assert _ids(decision) == ["evt.os.task.denied"]
    assert decision.telemetry_envelopes[0]["policy_version"] == "pol.v3"
    assert decision.telemetry_envelopes[0]["worker_id"] == "org.acme.summarizer"


def test_invalid_input_decisions_have_the_denied_event() -> None:
    decision = make_decision({"env": "dev", "tenant_id": "t\x1b[0m"}, [])
    (event,) = decision.telemetry_envelopes
    assert event["event_id"] == "evt.os.task.denied"
    assert event["deny_code"] == "DENY_INVALID_INPUT"
    assert event["tenant_id"] == "t[0m"


@pytest.mark.parametrize("denied", [False, True])
def test_dry_run_marks_every_event(denied: bool) -> None:
    extra = {"capability_id": "cap.none.here"} if denied else {}
    decision = _decide("prod", dry_run=True, config={"enforce_privilege_envelopes": True}, **extra)
    assert decision.denied is denied
    assert decision.dry_run is True
    assert decision.telemetry_envelopes
    assert all(e["dry_run"] is True for e in decision.telemetry_envelopes)


HOSTILE_TENANT = "a\x1b[31mb\n"


def test_control_characters_are_stripped_from_ids_in_events() -> None:
    decision = _decide(
        "prod", tenant_id=HOSTILE_TENANT, correlation_id="c\r\nFAKE LOG LINE\x00\x7f"
    )
    assert not decision.denied
    # The decision records the input as given; events (which reach logs) are cleaned.
    assert decision.tenant_id == HOSTILE_TENANT
    for event in decision.telemetry_envelopes:
        assert event["tenant_id"] == "a[31mb"
        assert event["correlation_id"] == "cFAKE LOG LINE"
        for value in event.values():
            assert not (isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value))


def test_control_characters_are_stripped_in_denials_and_details() -> None:
    decision = _decide(tenant_id=HOSTILE_TENANT, config={"require_signatory": True})
    assert decision.deny_code == "DENY_UNKNOWN_TENANT"
    assert decision.deny_reason_if_denied["tenant_id"] == "a[31mb"
    assert decision.telemetry_envelopes[0]["tenant_id"] == "a[31mb"
    decision = _decide(capability_id="cap.evil\x07\x08")
    assert decision.telemetry_envelopes[0]["capability_id"] == "cap.evil"


def test_sanitize_id() -> None:
    assert evt.sanitize_id("ok.id-1") == "ok.id-1"
    assert evt.sanitize_id("a\x00b\x1fc\x7fd\te\n") == "abcde"
    assert evt.sanitize_id("é\u00a0ü") == "é\u00a0ü"  # not ASCII controls: kept
    assert evt.sanitize_id(None) is None and evt.sanitize_id(5) == 5


def test_builders_mark_dry_run_only_when_true() -> None:
    common = dict(tenant_id="t", capability_id="cap.a.b", matched_rule_id="r", dry_run=False)
    gated = evt.event(evt.POLICY_GATED, "ts", "c", decision="ALLOW", reason="r", **common)
    assert "dry_run" not in gated
    common["dry_run"] = True
    gated = evt.event(evt.POLICY_GATED, "ts", "c", decision="ALLOW", reason="r", **common)
    assert gated["dry_run"] is True
    assert gated["event_id"] == "evt.os.policy.gated" and gated["matched_rule_id"] == "r"
    assert tuple(MANDATORY) == evt.MANDATORY_EVENTS


def test_write_events_writes_json_lines_to_stderr_never_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    decision = _decide(tenant_id="tën\u2028ant")
    evt.write_events(decision.telemetry_envelopes)
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 4
    assert [json.loads(line)["event_id"] for line in lines] == [BLAST, *MANDATORY]
    assert all(line.isascii() for line in lines)  # U+2028 cannot split a log line
    stream = io.StringIO()
    evt.write_events(decision.telemetry_envelopes[:1], stream)
    assert json.loads(stream.getvalue())["tenant_id"] == "tën\u2028ant"


# -- conformance -------------------------------------------------------------------------


def test_allowed_decisions_satisfy_the_default_conformance_spec() -> None:
    spec = default_conformance_spec()
    for env in ("dev", "prod"):
        decision = _decide(env)
        assert validate_required_telemetry(decision.telemetry_envelopes, spec) == []
        assert validate_required_fields(decision.model_dump(), spec) == []


def test_conformance_reports_missing_events_and_dimensions() -> None:
    spec = default_conformance_spec()
    denied = _decide(capability_id="cap.none.here")
    assert validate_required_telemetry(denied.telemetry_envelopes, spec) == [
        f"missing_required_event:{e}" for e in MANDATORY
    ]
    events = [dict(e) for e in _decide().telemetry_envelopes]
    assert events[1]["event_id"] == "evt.os.task.routed"
    events[1]["qos_class"] = None
    assert validate_required_telemetry(events, spec) == [
        "event_missing_dimensions:evt.os.task.routed"
    ]
    assert validate_required_fields({"decision_id": "x"}, spec)[0] == "timestamp"


def test_conformance_failure_is_a_denial_not_an_exception() -> None:
    # The reference raises RuntimeError here; make_decision never raises.
    spec = default_conformance_spec()
    assert not make_decision(
        _inp(),
        _rules(),
        conformance_spec=spec,
        registry=_registry(),
    ).denied
    spec["telemetry_requirements"]["required_events"].append({"event": "evt.x.never"})
    decision = make_decision(
        _inp(),
        _rules(),
        conformance_spec=spec,
        registry=_registry(),
    )
    assert decision.deny_code == "DENY_INTERNAL_ERROR"
    assert decision.deny_reason_if_denied["conformance_errors"] == [
        "missing_required_event:evt.x.never"
    ]
    assert _ids(decision) == ["evt.os.task.denied"]
