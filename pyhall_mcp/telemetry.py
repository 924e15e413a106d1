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
    "ATTESTATION_SKIPPED",
    "BLAST_SCORED",
    "MANDATORY_EVENTS",
    "POLICY_GATED",
    "PRIVILEGE_ENVELOPE_CHECKED",
    "TASK_DENIED",
    "TASK_ROUTED",
    "WORKER_SELECTED",
    "event",
    "sanitize_id",
    "write_events",
]

BLAST_SCORED = "evt.gov.blast_scored"
PRIVILEGE_ENVELOPE_CHECKED = "evt.gov.privilege_envelope.checked"
ATTESTATION_SKIPPED = "evt.os.worker.attestation_skipped"
TASK_ROUTED = "evt.os.task.routed"
WORKER_SELECTED = "evt.os.worker.selected"
POLICY_GATED = "evt.os.policy.gated"
TASK_DENIED = "evt.os.task.denied"

#: Every allowed decision emits these three, in this order.
MANDATORY_EVENTS = (TASK_ROUTED, WORKER_SELECTED, POLICY_GATED)

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def sanitize_id(value: Any) -> Any:
    """Strip ``\\x00``-``\\x1f`` and ``\\x7f`` from an id; other values pass unchanged."""
    if isinstance(value, str) and not value.isprintable():
        return _CONTROL_CHARS.sub("", value)
    return value


def event(
    event_id: str, timestamp: str, correlation_id: str, *, dry_run: bool = False, **fields: Any
) -> dict[str, Any]:
    """One WCP event: id, time, correlation id, then ``fields``; ids stripped of controls."""
    built: dict[str, Any] = {
        "event_id": event_id,
        "timestamp": timestamp,
        "correlation_id": correlation_id,
        **fields,
    }
    for key, value in built.items():
        if type(value) is str and not value.isprintable():
            built[key] = _CONTROL_CHARS.sub("", value)
    if dry_run:
        built["dry_run"] = True
    return built


def write_events(events: Iterable[dict[str, Any]], stream: TextIO | None = None) -> None:
    """Write events as JSON lines to ``stream`` (stderr by default; never stdout)."""
    out = stream if stream is not None else sys.stderr
    for event in events:
        out.write(json.dumps(event, separators=(",", ":"), ensure_ascii=True, default=str) + "\n")
    out.flush()
