"""A failure inside the gateway's call handling never reaches the client as text."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from pyhall_mcp.gateway import Gateway, build_server
from pyhall_mcp.hall import Hall


async def test_an_unexpected_failure_is_a_generic_denial(gate_hall: Path, client_mode: str) -> None:
    hall = Hall.load(gate_hall)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail /etc/shadow")

    hall.call = broken  # type: ignore[method-assign]
    async with Client(build_server(Gateway(hall), watch=False), mode=client_mode) as client:
        result = await client.call_tool("echo", {"text": "x"})
        assert result.is_error
        assert result.structured_content == {"denied": True, "deny_code": "DENY_INTERNAL_ERROR"}
        assert "secret" not in result.model_dump_json()
        tools = await client.list_tools()  # and the gateway keeps serving
        assert any(t.name == "echo" for t in tools.tools)


def test_a_failure_report_is_one_line_when_described_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyhall_mcp.errors import PolicyError, report_failure

    try:
        raise PolicyError("the path holds a NUL byte")
    except PolicyError as exc:
        report_failure("policy gate", exc)
    assert capsys.readouterr().err == "pyhall: policy gate: the path holds a NUL byte\n"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        report_failure("tools/call")
    err = capsys.readouterr().err
    assert err.startswith("pyhall: tools/call failed:\nTraceback") and "boom" in err
    monkeypatch.setattr("sys.stderr", None)  # launched with stderr closed
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        report_failure("tools/call")  # must not raise: the caller is answering a denial
