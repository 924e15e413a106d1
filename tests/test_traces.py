"""Golden traces: every session in traces/ replays green against a fresh gateway.

Each replay starts its own gateway on a temporary copy of its hall, with a
temporary state directory; nothing is shared between replays. They run two at
a time (each is mostly a gateway cold start) so the suite stays well under a
minute on two cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from pyhall_mcp.traces import S2C, Frame, ReplayResult, Trace, copy_hall, replay

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"
TRACE_FILES = sorted(TRACES.glob("*.jsonl"))
CLI = "import sys; from pyhall_mcp.cli import main; sys.exit(main())"


@pytest.fixture(scope="module")
def replays(request: pytest.FixtureRequest) -> Iterator[dict[str, Future[ReplayResult]]]:
    """Start the replays of the selected trace files, two at a time."""
    wanted = [
        item.callspec.params["name"]
        for item in request.session.items
        if item.originalname == "test_trace_replays_green" and hasattr(item, "callspec")
    ]
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        yield {name: pool.submit(replay, TRACES / name) for name in wanted}


def test_every_scenario_of_the_suite_is_recorded_in_both_eras() -> None:
    spec = importlib.util.spec_from_file_location("make_suite", TRACES / "make_suite.py")
    assert spec is not None and spec.loader is not None
    make_suite = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_suite", make_suite)  # its dataclasses look themselves up
    spec.loader.exec_module(make_suite)
    names = {p.name for p in TRACE_FILES}
    for scenario in make_suite.SCENARIOS:
        for era in ("legacy", "modern"):
            name = f"{scenario.name}-{era}.jsonl"
            assert name in names, f"run: python traces/make_suite.py {scenario.name}"
            assert Trace.load(TRACES / name).era == era


@pytest.mark.parametrize("name", [p.name for p in TRACE_FILES])
def test_trace_replays_green(name: str, replays: dict[str, Future[ReplayResult]]) -> None:
    result = replays[name].result(timeout=110)
    assert result.ok, result.report()


# -- a change to what clients see fails the matching trace, and --update accepts it ----------


def test_a_changed_deny_message_fails_then_update_rewrites(tmp_path: Path) -> None:
    hall = copy_hall(REPO, tmp_path / "hall")
    files = hall / "policies" / "files.yaml"
    old = "Nothing outside workspace/ is ever deleted."
    text = files.read_text()
    assert old in text
    files.write_text(text.replace(old, "Deleting outside the workspace is not allowed."))
    trace = tmp_path / "deny.jsonl"
    trace.write_bytes((TRACES / "deny-mode-jsonrpc-legacy.jsonl").read_bytes())

    failed = replay(trace, hall=hall)
    assert not failed.ok
    [mismatch] = failed.mismatches
    assert mismatch.summary == "error to id 2 (tools/call delete_file) differs"
    removed, added = _changed_lines(mismatch.diff)
    assert any(old in line for line in removed)
    assert any("Deleting outside the workspace is not allowed." in line for line in added)
    assert f"frame {mismatch.index} (line {mismatch.line})" in failed.report()

    updated = replay(trace, hall=hall, update=True)
    assert updated.updated
    assert "Deleting outside the workspace is not allowed." in trace.read_text()
    assert replay(trace, hall=hall).ok


def test_a_changed_tool_description_fails_with_a_diff(tmp_path: Path) -> None:
    source = (TRACES / "basics-legacy.jsonl").read_text()
    old = "Extractive summary: the document's most representative sentences"
    assert old in source
    trace = tmp_path / "listing.jsonl"
    trace.write_text(source.replace(old, "A summary"))
    done = subprocess.run(
        [sys.executable, "-c", CLI, "traces", "replay", str(trace), "--hall", str(REPO), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    [mismatch] = report["results"][0]["mismatches"]
    assert mismatch["summary"] == "response to id 2 (tools/list) differs"
    removed, added = _changed_lines(mismatch["diff"])
    assert [line.strip() for line in removed] == [
        '"description": "A summary, in their original order.",'
    ]
    assert [line.strip() for line in added] == [
        f'"description": "{old}, in their original order.",'
    ]


def _changed_lines(diff: str) -> tuple[list[str], list[str]]:
    lines = diff.splitlines()[2:]  # after the ---/+++ file lines
    return (
        [line[1:] for line in lines if line.startswith("-")],
        [line[1:] for line in lines if line.startswith("+")],
    )


# -- a session of the SDK's own client, recorded through the relay, replays green ---------------


async def _client_session(command: list[str], mode: str, cwd: Path) -> None:
    from mcp import MCPError, StdioServerParameters
    from mcp.client import Client

    params = StdioServerParameters(
        command=sys.executable,
        args=command,
        cwd=str(cwd),
        env={"PYTHONPATH": str(REPO), "PYHALL_EVENTS": "off"},
    )
    async with Client(params, mode=mode) as client:
        tools = await client.list_tools()
        assert "greet" in {t.name for t in tools.tools}
        result = await client.call_tool("greet", {"name": "Relay"})
        assert result.structured_content == {"greeting": "Hello, Relay!"}
        with pytest.raises(MCPError):
            await client.call_tool("no_such_tool", {})


@pytest.mark.parametrize(
    ("how", "mode"), [("relay", "legacy"), ("gateway --record", "auto")], ids=["relay", "record"]
)
def test_a_recorded_sdk_client_session_replays_green(tmp_path: Path, how: str, mode: str) -> None:
    hall = copy_hall(REPO, tmp_path / "hall")
    out = tmp_path / "session.jsonl"
    gateway = ["--hall", str(hall), "--state-dir", str(tmp_path / "state")]
    if how == "relay":
        command = ["-c", CLI, "traces", "record", str(out), "--"]
        command += [sys.executable, "-m", "pyhall_mcp", *gateway]
    else:
        command = ["-m", "pyhall_mcp", "--record", str(out), *gateway]
    anyio.run(_client_session, command, mode, tmp_path)

    trace = Trace.load(out)
    assert trace.era == ("legacy" if mode == "legacy" else "modern")
    assert trace.header["hall"] == "hall"  # relative to the trace file
    assert trace.header["launch"] == {"args": [], "env": {"PYHALL_EVENTS": "off"}}
    methods = [f.msg.get("method") for f in trace.frames if f.dir == "c2s"]
    assert methods.count("tools/call") == 2
    answers = [f.msg for f in trace.frames if f.dir == "s2c"]
    assert answers[-1]["error"]["code"] == -32602  # the unknown tool, last
    if how == "relay":  # (--record runs this same relay; one replay proves the pair)
        result = replay(out)
        assert result.ok, result.report()


def test_a_frame_that_never_comes_times_out_instead_of_hanging(tmp_path: Path) -> None:
    trace = Trace.load(TRACES / "denial-tenant-legacy.jsonl")
    never = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"data": "never"}}
    trace.frames.append(Frame(S2C, trace.frames[-1].t_ms, msg=never))
    path = tmp_path / "never.jsonl"
    trace.dump(path)
    result = replay(path, timeout_s=1.0)
    assert not result.ok
    [missing] = result.mismatches
    assert missing.index == len(trace.frames) - 1
    assert missing.summary == ("notification notifications/message did not arrive (not within 1 s)")
    assert result.seconds < 30
