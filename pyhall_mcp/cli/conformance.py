"""``pyhall conformance``: the WCP level a hall actually reaches (spec section 12).

Every check probes the loaded hall: its floors, its rules, its policy engine,
its audit mechanism and its workers' attestations. Mechanism probes route a
synthetic capability through ``make_decision`` under the hall's own floors, so
a floor that is switched off shows up as a failed check with its reason.
Nothing is decided by matching strings in records.
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ._common import EXIT_NO, add_hall_arg, add_json_arg, emit, load_hall

LEVELS = ("WCP-Basic", "WCP-Standard", "WCP-Full")
_PROBE_CAP = "cap.conformance.probe"
_PROBE_SPECIES = "wrk.conformance.probe"
_PROBE_WORKER = "org.conformance.probe-worker"
_VOLATILE = {"decision_id", "timestamp", "pending_approval_id", "approval_expires_at"}


@dataclass
class Check:
    level: str
    name: str
    passed: bool
    why: str


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "conformance",
        help="probe the hall and report the WCP level it reaches",
        description="Probe the real hall (fail-closed routing, determinism, controls, "
        "telemetry, dry run, blast gate, privilege envelopes, policy gate, receipts, "
        "discovery, signatory tenants, attestation) and report each check and the level.",
    )
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hall = load_hall(args)
    checks = probe(hall)
    level = reached_level(checks)
    data = {"level": level, "checks": [asdict(c) for c in checks]}
    lines = [
        f"{'PASS' if c.passed else 'FAIL'}  {c.level:<13} {c.name:<22} {c.why}" for c in checks
    ]
    lines.append(f"\nLevel reached: {level}")
    missing = [c for c in checks if not c.passed]
    if missing:
        first = missing[0]
        lines.append(f"Next: {first.name} ({first.level}) fails: {first.why}")
    emit(args, data, "\n".join(lines))
    return 0 if level != "none" else EXIT_NO


def reached_level(checks: list[Check]) -> str:
    level = "none"
    for name in LEVELS:
        if all(c.passed for c in checks if LEVELS.index(c.level) <= LEVELS.index(name)):
            level = name
        else:
            break
    return level


# -- probes ------------------------------------------------------------------------------


def _inp(hall: Any, **fields: Any) -> Any:
    from ..models import RouteInput

    settings = hall.settings
    values = {
        "capability_id": _PROBE_CAP,
        "env": settings.env,
        "data_label": settings.data_label,
        "tenant_risk": settings.tenant_risk,
        "qos_class": settings.qos_class,
        "tenant_id": settings.tenant_id,
        "correlation_id": str(uuid.uuid4()),
        "tenant_credential": settings.tenant_credential,
    }
    values.update(fields)
    return RouteInput(**values)


def _probe_decision(
    hall: Any,
    *,
    gate: Any = None,
    required: tuple[str, ...] = (),
    implements: tuple[str, ...] = (),
    envelope: dict[str, Any] | None = None,
    attested: tuple[str, str] | None = None,
    config: Any = None,
    **fields: Any,
) -> Any:
    """Route a synthetic capability under the hall's floors (or ``config``)."""
    from ..registry import Registry
    from ..router import make_decision
    from ..rules import load_rules_from_dict

    rules = load_rules_from_dict(
        {
            "rules": [
                {
                    "rule_id": "rr.conformance.probe",
                    "match": {"capability_id": _PROBE_CAP},
                    "decision": {
                        "candidate_workers_ranked": [{"worker_species_id": _PROBE_SPECIES}],
                        "required_controls_suggested": list(required),
                    },
                }
            ]
        }
    )
    registry = Registry()
    registry.enroll(
        {
            "worker_id": _PROBE_WORKER,
            "worker_species_id": _PROBE_SPECIES,
            "capabilities": [_PROBE_CAP],
            "currently_implements": list(implements),
            "privilege_envelope": envelope or {},
        }
    )
    if attested is not None:
        registered, current = attested
        registry.set_attestation(_PROBE_WORKER, registered, lambda: current)
    return make_decision(
        _inp(hall, **fields),
        rules,
        registry=registry,
        policy_gate_eval=gate if gate is not None else (lambda _c: ("ALLOW", "probe", "probe")),
        hall_config=config or hall.config,
    )


def _check(level: str, name: str, fn: Callable[[], tuple[bool, str]]) -> Check:
    try:
        passed, why = fn()
    except Exception as exc:  # a probe that breaks is a failed check, with the reason
        passed, why = False, f"the probe failed: {type(exc).__name__}: {exc}"
    return Check(level, name, passed, why)


def probe(hall: Any) -> list[Check]:
    config = hall.config
    digest_a, digest_b = "a" * 64, "b" * 64

    def routing() -> tuple[bool, str]:
        unmatched = [
            r.tool.name
            for r in hall.tools()
            if hall.decide(_inp(hall, capability_id=r.capabilities[0]), r).matched_rule_id
            in ("NO_MATCH", "PRE_ROUTING")
        ]
        if not hall.tools():
            return False, "the hall serves no tools"
        if unmatched:
            return False, f"no rule routes the capability of {', '.join(unmatched)}"
        return True, f"every served capability ({len(hall.tools())}) matches a rule"

    def fail_closed() -> tuple[bool, str]:
        d = hall.decide(_inp(hall, capability_id="cap.conformance.unknown-capability"))
        return (
            d.deny_code == "DENY_NO_MATCHING_RULE",
            f"an unknown capability gives {d.deny_code or 'an ALLOW'}",
        )

    def deterministic() -> tuple[bool, str]:
        record = hall.tools()[0] if hall.tools() else None
        cap = record.capabilities[0] if record else _PROBE_CAP
        inp = _inp(hall, capability_id=cap, correlation_id="conformance-determinism")
        a, b = (hall.decide(inp, record).model_dump(mode="json") for _ in range(2))
        for d in (a, b):
            for key in _VOLATILE:
                d.pop(key, None)
            for event in d["telemetry_envelopes"]:
                event.pop("timestamp", None)
        return (
            a == b,
            "two identical inputs give identical decisions"
            if a == b
            else "two identical inputs gave different decisions",
        )

    def controls() -> tuple[bool, str]:
        if not config.enforce_required_controls:
            return False, "floor enforce_required_controls is off"
        d = _probe_decision(hall, required=("ctrl.conformance.probe",))
        return (
            d.deny_code == "DENY_MISSING_REQUIRED_CONTROLS",
            f"a worker lacking a required control gives {d.deny_code or 'an ALLOW'}",
        )

    def telemetry() -> tuple[bool, str]:
        from ..conformance import default_conformance_spec, validate_required_telemetry

        d = _probe_decision(
            hall,
            config=config.model_copy(
                update={
                    "require_worker_attestation": False,
                    "require_signatory": False,
                    "require_credential": False,
                }
            ),
            env="dev",
        )
        if d.denied:
            return False, f"the telemetry probe was denied ({d.deny_code})"
        errors = validate_required_telemetry(d.telemetry_envelopes, default_conformance_spec())
        denied = _probe_decision(hall, capability_id="cap.conformance.unknown-capability")
        has_denied = any(e["event_id"] == "evt.os.task.denied" for e in denied.telemetry_envelopes)
        ok = not errors and has_denied
        return ok, (
            "routed/selected/gated on allow, task.denied on deny"
            if ok
            else f"missing: {errors or ['evt.os.task.denied']}"
        )

    def dry_run() -> tuple[bool, str]:
        d = _probe_decision(hall, dry_run=True)
        events = d.telemetry_envelopes
        ok = d.dry_run and all(e.get("dry_run") is True for e in events) and bool(events)
        return (
            ok,
            "dry runs are marked on the decision and every event"
            if ok
            else "a dry run is not marked everywhere",
        )

    def blast() -> tuple[bool, str]:
        if not config.enforce_blast_scoring_in_prod:
            return False, "floor enforce_blast_scoring_in_prod is off"
        # Attested, so that the hold (which waits for the later stages) is the answer.
        d = _probe_decision(hall, env="prod", blast_score=95, attested=(digest_a, digest_a))
        return (
            d.deny_code == "DENY_REQUIRES_HUMAN" and d.supervisor_required,
            f"a prod call with blast score 95 gives {d.deny_code or 'an ALLOW'}",
        )

    def privilege() -> tuple[bool, str]:
        if not config.enforce_privilege_envelopes:
            return False, "floor enforce_privilege_envelopes is off"
        d = _probe_decision(
            hall,
            env="prod",
            data_label="RESTRICTED",
            blast_score=0,
            envelope={"secrets_access": ["vault:probe"]},
            attested=(digest_a, digest_a),
            config=config.model_copy(update={"enforce_blast_scoring_in_prod": False}),
        )
        return (
            d.deny_code == "DENY_PRIVILEGE_ENVELOPE_VIOLATED",
            f"secrets with RESTRICTED data in prod give {d.deny_code or 'an ALLOW'}",
        )

    def policy_gate() -> tuple[bool, str]:
        from ..policy import NoPolicyEngine

        if not config.enforce_policy_gate:
            return False, "floor enforce_policy_gate is off"
        if isinstance(hall.policy, NoPolicyEngine):
            return False, "no policy files: the gate only denies"
        d = _probe_decision(hall, gate=hall.policy)
        return (
            d.deny_code == "DENY_POLICY_GATE",
            f"a call no statement allows gives {d.deny_code or 'an ALLOW'} "
            f"(policy {hall.policy.version[:19]})",
        )

    def receipts() -> tuple[bool, str]:
        from ..audit import ReceiptLog, verify_log
        from ..layout import HallLayout

        if not hall.settings.audit.enabled:
            return False, "audit is disabled in hall.yaml"
        with tempfile.TemporaryDirectory() as state:
            layout = HallLayout.for_hall(hall.layout.root, state)
            log = ReceiptLog.open(layout)
            try:
                log.record_sync(
                    {"kind": "decision", "decision": "dry_run", "tool": "conformance-probe"}
                )
            finally:
                log.close()
            report = verify_log(layout)
        return report.ok, (
            "receipts are signed, chained and verify"
            if report.ok
            else f"a fresh receipt does not verify: {report.first_error}"
        )

    def discovery() -> tuple[bool, str]:
        problems = hall.problems
        if not hall.tools():
            return False, "no tools are served"
        if problems:
            return False, f"{len(problems)} worker record(s) quarantined"
        return True, f"{len(hall.tools())} tools listed from valid enrollment records"

    def signatory() -> tuple[bool, str]:
        if not config.require_signatory:
            return False, "floor require_signatory is off"
        d = _probe_decision(hall, tenant_id="conformance-stranger")
        return (
            d.deny_code == "DENY_UNKNOWN_TENANT",
            f"an unregistered tenant gives {d.deny_code or 'an ALLOW'}",
        )

    def attestation() -> tuple[bool, str]:
        if not config.require_worker_attestation:
            return False, "floor require_worker_attestation is off"
        if hall.attestation_failures:
            worker, code = next(iter(hall.attestation_failures.items()))
            return False, f"{worker} does not verify ({code})"
        d = _probe_decision(hall, attested=(digest_a, digest_b))
        return (
            d.deny_code == "DENY_WORKER_TAMPERED",
            f"every served worker verifies; a changed package gives {d.deny_code}",
        )

    return [
        _check("WCP-Basic", "capability routing", routing),
        _check("WCP-Basic", "fail closed", fail_closed),
        _check("WCP-Basic", "deterministic", deterministic),
        _check("WCP-Standard", "controls enforced", controls),
        _check("WCP-Standard", "mandatory telemetry", telemetry),
        _check("WCP-Standard", "dry run", dry_run),
        _check("WCP-Full", "blast radius gate", blast),
        _check("WCP-Full", "privilege envelopes", privilege),
        _check("WCP-Full", "policy gate", policy_gate),
        _check("WCP-Full", "evidence receipts", receipts),
        _check("WCP-Full", "discovery", discovery),
        _check("WCP-Full", "signatory tenants", signatory),
        _check("WCP-Full", "worker attestation", attestation),
    ]
