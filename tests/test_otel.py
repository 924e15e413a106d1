"""OpenTelemetry: the SDK's span for a tools/call carries the hall's decision."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pyhall_mcp.errors import ConfigError
from pyhall_mcp.gateway import Gateway, build_server
from pyhall_mcp.hall import Hall
from pyhall_mcp.otel import configure_tracing

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> None:
    # The global provider can be set once per process; every test here shares it.
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    else:  # another test module installed one first: listen to it as well
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))


def _call_spans() -> list:
    return [
        s
        for s in _EXPORTER.get_finished_spans()
        if s.kind == trace.SpanKind.SERVER and s.attributes.get("mcp.method.name") == "tools/call"
    ]


async def test_spans_carry_the_decision(gate_hall: Path) -> None:
    _EXPORTER.clear()
    hall = Hall.load(gate_hall)
    async with Client(build_server(Gateway(hall), watch=False), mode="legacy") as client:
        allowed = await client.call_tool("echo", {"text": "hi"})
        denied = await client.call_tool("forbidden", {"text": "hi"})
    assert not allowed.is_error and denied.is_error
    spans = {s.attributes["gen_ai.tool.name"]: s.attributes for s in _call_spans()}
    assert spans["echo"]["gen_ai.operation.name"] == "execute_tool"
    assert spans["echo"]["pyhall.outcome"] == "allowed"
    assert (
        spans["echo"]["pyhall.decision.id"] == allowed.meta["dev.pyhall/governance"]["decision_id"]
    )
    assert "pyhall.deny.code" not in spans["echo"]
    assert spans["forbidden"]["pyhall.outcome"] == "denied"
    assert spans["forbidden"]["pyhall.deny.code"] == denied.structured_content["deny_code"]


def test_tracing_modes() -> None:
    assert configure_tracing("off") is False
    assert configure_tracing("") is False
    with pytest.raises(ConfigError, match="unknown tracing mode"):
        configure_tracing("carrier-pigeon")
