"""OpenTelemetry: governance attributes on the SDK's spans, and an opt-in exporter.

The MCP SDK already wraps every inbound message in a SERVER span following the
GenAI MCP conventions (``gen_ai.operation.name=execute_tool``,
``gen_ai.tool.name``, ``mcp.method.name``); it costs nothing until a tracer
provider is installed. pyhall-mcp adds what the hall decided to that span and,
when ``PYHALL_OTEL`` asks for it, installs a provider: ``stderr`` (JSON spans
on stderr, never stdout: stdout is the protocol) or ``otlp`` (needs
``opentelemetry-exporter-otlp``; configured by the standard ``OTEL_*`` variables).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["annotate_current_span", "configure_tracing"]

_ATTRIBUTES = {
    "decision_id": "pyhall.decision.id",
    "correlation_id": "pyhall.correlation.id",
    "matched_rule_id": "pyhall.rule.id",
    "policy_version": "pyhall.policy.version",
    "worker_id": "pyhall.worker.id",
    "receipt_id": "pyhall.receipt.id",
    "blast_score": "pyhall.blast.score",
}


def configure_tracing(mode: str | None = None, *, install: bool = True) -> bool:
    """Install a tracer provider for ``mode`` (default ``$PYHALL_OTEL``); False when off.

    ``install=False`` only checks that the mode is known and its packages are there (for
    ``--check`` and ``pyhall validate``); ConfigError names what is missing either way.
    """
    mode = (mode if mode is not None else os.environ.get("PYHALL_OTEL", "")).strip().lower()
    if mode in ("", "off", "none"):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError(
            "opentelemetry-sdk is not installed",
            file="PYHALL_OTEL",
            fix="pip install 'pyhall-mcp[otel]' or unset PYHALL_OTEL",
        ) from None
    if mode == "stderr":
        exporter: Any = ConsoleSpanExporter(out=sys.stderr)
    elif mode == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                "the OTLP exporter is not installed",
                file="PYHALL_OTEL",
                fix="pip install opentelemetry-exporter-otlp-proto-http",
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise ConfigError(
            f"unknown tracing mode {mode!r}", file="PYHALL_OTEL", fix="use stderr, otlp or off"
        )
    if not install:
        return True
    provider = TracerProvider(resource=Resource.create({"service.name": "pyhall-mcp"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def annotate_current_span(status: str, governance: Mapping[str, Any]) -> None:
    """Record the hall's decision on the SDK's span for this request (no-op without OTel)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute("pyhall.outcome", status)
    code = governance.get("deny_code")
    if code:
        span.set_attribute("pyhall.deny.code", code)
    for key, name in _ATTRIBUTES.items():
        value = governance.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            span.set_attribute(name, value)
