"""WCP telemetry events (spec section 9).

Builders are pure: they take the decision's timestamp instead of reading the
clock, so one decision's events agree with it and with each other. Ids are
stripped of control characters before they reach an event (log injection).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = [
    "MANDATORY_EVENTS",
    "attestation_skipped",
    "blast_scored",
    "policy_gated",
    "privilege_envelope_checked",
    "sanitize_id",
    "task_denied",
    "task_routed",
    "worker_selected",
    "write_events",
]

#: Every allowed decision emits these three, in this order.
MANDATORY_EVENTS = ("evt.os.task.routed", "evt.os.worker.selected", "evt.os.policy.gated")

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def sanitize_id(value: Any) -> Any:
    """Strip ``\\x00``-``\\x1f`` and ``\\x7f`` from an id; other values pass unchanged."""
    if isinstance(value, str) and not value.isprintable():
        return _CONTROL_CHARS.sub("", value)
    return value


def _event(
    event_id: str, timestamp: str, correlation_id: str, dry_run: bool, **fields: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "correlation_id": correlation_id,
        **fields,
    }
    for key, value in event.items():
        if type(value) is str and not value.isprintable():
            event[key] = _CONTROL_CHARS.sub("", value)
    if dry_run:
        event["dry_run"] = True
    return event


def blast_scored(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    capability_id: str,
    env: str,
    data_label: str,
    rule_id: str,
    policy_version: str | None,
    blast_score: int,
    decision: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.gov.blast_scored",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        capability_id=capability_id,
        env=env,
        data_label=data_label,
        matched_rule_id=rule_id,
        policy_version=policy_version,
        blast_score=blast_score,
        decision=decision,
    )


def privilege_envelope_checked(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    capability_id: str,
    env: str,
    data_label: str,
    rule_id: str,
    policy_version: str | None,
    worker_species_id: str | None,
    worker_id: str | None,
    decision: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.gov.privilege_envelope.checked",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        capability_id=capability_id,
        env=env,
        data_label=data_label,
        matched_rule_id=rule_id,
        policy_version=policy_version,
        worker_species_id=worker_species_id,
        worker_id=worker_id,
        decision=decision,
    )


def attestation_skipped(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    capability_id: str,
    env: str,
    worker_species_id: str | None,
    worker_id: str | None,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.os.worker.attestation_skipped",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        capability_id=capability_id,
        env=env,
        worker_species_id=worker_species_id,
        worker_id=worker_id,
        reason="require_worker_attestation is off",
        severity="warn",
    )


def task_routed(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    task_id: str,
    capability_id: str,
    rule_id: str,
    worker_species_id: str | None,
    worker_id: str | None,
    policy_version: str | None,
    qos_class: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.os.task.routed",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        task_id=task_id,
        capability_id=capability_id,
        matched_rule_id=rule_id,
        selected_worker_species_id=worker_species_id,
        worker_id=worker_id,
        policy_version=policy_version,
        qos_class=qos_class,
    )


def worker_selected(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    capability_id: str,
    rule_id: str,
    worker_species_id: str | None,
    worker_id: str | None,
    reason: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.os.worker.selected",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        capability_id=capability_id,
        matched_rule_id=rule_id,
        selected_worker_species_id=worker_species_id,
        worker_id=worker_id,
        reason=reason,
    )


def policy_gated(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    capability_id: str,
    rule_id: str,
    decision: str,
    policy_version: str | None,
    reason: str,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.os.policy.gated",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        capability_id=capability_id,
        matched_rule_id=rule_id,
        decision=decision,
        policy_version=policy_version,
        reason=reason,
    )


def task_denied(
    ts: str,
    corr: str,
    *,
    tenant_id: str,
    capability_id: str,
    rule_id: str,
    deny_code: str,
    deny_message: str,
    policy_version: str | None,
    worker_species_id: str | None = None,
    worker_id: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    return _event(
        "evt.os.task.denied",
        ts,
        corr,
        dry_run,
        tenant_id=tenant_id,
        capability_id=capability_id,
        matched_rule_id=rule_id,
        deny_code=deny_code,
        deny_message=deny_message,
        policy_version=policy_version,
        worker_species_id=worker_species_id,
        worker_id=worker_id,
    )


def write_events(events: Iterable[dict[str, Any]], stream: TextIO | None = None) -> None:
    """Write events as JSON lines to ``stream`` (stderr by default; never stdout)."""
    out = stream if stream is not None else sys.stderr
    for event in events:
        out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=True, default=str) + "\n")
    out.flush()
