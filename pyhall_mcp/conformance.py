"""Decision-level conformance checks (reference API) used in CI and by ``pyhall conformance``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["default_conformance_spec", "validate_required_fields", "validate_required_telemetry"]


def default_conformance_spec() -> dict[str, Any]:
    """The WCP-Standard requirements: core decision fields and the three mandatory events."""
    return {
        "spec_version": "1.0",
        "decision_output_schema": {
            "required_fields": [
                "decision_id",
                "timestamp",
                "correlation_id",
                "tenant_id",
                "capability_id",
                "matched_rule_id",
                "denied",
                "telemetry_envelopes",
            ]
        },
        "telemetry_requirements": {
            "required_events": [
                {
                    "event": "evt.os.task.routed",
                    "must_include_dimensions": [
                        "correlation_id",
                        "tenant_id",
                        "capability_id",
                        "qos_class",
                    ],
                },
                {
                    "event": "evt.os.worker.selected",
                    "must_include_dimensions": ["correlation_id", "capability_id"],
                },
                {
                    "event": "evt.os.policy.gated",
                    "must_include_dimensions": ["correlation_id", "decision"],
                },
            ]
        },
    }


def validate_required_fields(decision: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """Required decision fields that are absent."""
    required = spec.get("decision_output_schema", {}).get("required_fields", [])
    return [f for f in required if f not in decision]


def validate_required_telemetry(
    events: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]
) -> list[str]:
    """``missing_required_event:X`` / ``event_missing_dimensions:X`` for each unmet requirement."""
    by_event: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_event.setdefault(event.get("event_id"), []).append(event)
    errors = []
    for requirement in spec.get("telemetry_requirements", {}).get("required_events", []):
        name, dims = requirement["event"], requirement.get("must_include_dimensions", [])
        if name not in by_event:
            errors.append(f"missing_required_event:{name}")
        elif not any(all(e.get(d) is not None for d in dims) for e in by_event[name]):
            errors.append(f"event_missing_dimensions:{name}")
    return errors
