"""The gateway through the official MCP client, in both protocol eras.

Every scenario runs in-process (``Client(server)``) as its own test, and all of
them run again in order against one real ``python -m pyhall_mcp`` subprocess
per era, whose receipt log is verified afterwards. The hall is
tests/fixtures/halls/gate, where each tool's outcome is fixed by its files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp.types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters

from pyhall_mcp.audit import SQLiteReceiptStore, verify_log
from pyhall_mcp.gateway import DENIED_CODE, HELD_CODE, Gateway, build_server
from pyhall_mcp.hall import (
    META_CORRELATION_ID,
    META_DATA_LABEL,
    META_DRY_RUN,
    META_GOVERNANCE,
    Hall,
)
from pyhall_mcp.layout import HallLayout

pytestmark = pytest.mark.timeout(60)

TOOLS = {
    "crash",
    "delete",
    "echo",
    "forbidden",
    "hang",
    "noisy",
    "progress",
    "sleep",
    "uncontrolled",
    "unrouted",
    "wipe",
}
_HEX64 = set("0123456789abcdef")


# -- sessions ------------------------------------------------------------------------------


@dataclass
class Session:
    """One connected client plus what the checks need to know about its hall."""

    client: Client
    mode: str
    hall: Path
    state: Path
    gateway: Gateway | None = None  # in-process only
    tool_list_changes: list[object] = field(default_factory=list)
    correlation_ids: list[str] = field(default_factory=list)

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        meta: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> types.CallToolResult:
        """call_tool with a fresh correlation id unless given (the receipts are matched on it)."""
        meta = dict(meta or {})
        meta.setdefault(META_CORRELATION_ID, f"test-{uuid.uuid4()}")
        self.correlation_ids.append(meta[META_CORRELATION_ID])
        return await self.client.call_tool(tool, arguments or {}, meta=meta, **kwargs)

    async def tool_names(self) -> set[str]:
        listing = await self.client.list_tools(cache_mode="bypass")
        return {tool.name for tool in listing.tools}


def _collector(session_box: list[Session]) -> Callable[[Any], Awaitable[None]]:
    async def handle(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification) and session_box:
            session_box[0].tool_list_changes.append(message)

    return handle


@asynccontextmanager
async def in_process(
    hall: Path,
    mode: str,
    *,
    overrides: dict[str, Any] | None = None,
    watch: bool = True,
) -> AsyncIterator[Session]:
    state = hall.parent / f"{hall.name}-state"
    gateway = Gateway(Hall.load(hall, overrides=overrides, state_dir=state), overrides=overrides)
    box: list[Session] = []
    server = build_server(gateway, watch=watch)
    async with Client(server, mode=mode, message_handler=_collector(box)) as client:
        box.append(Session(client, mode, hall, state, gateway=gateway))
        yield box[0]


def gateway_params(hall: Path, state: Path, *args: str, **env: str) -> StdioServerParameters:
    """How a host launches ``pyhall-mcp`` (``python -m pyhall_mcp``) on a hall."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "pyhall_mcp", "--hall", str(hall), "--state-dir", str(state), *args],
        env={"PYHALL_EVENTS": "off", **env},
    )


@asynccontextmanager
async def over_stdio(hall: Path, mode: str, *args: str, **env: str) -> AsyncIterator[Session]:
    state = hall.parent / f"{hall.name}-state"
    box: list[Session] = []
    params = gateway_params(hall, state, *args, **env)
    async with Client(params, mode=mode, message_handler=_collector(box)) as client:
        box.append(Session(client, mode, hall, state))
        yield box[0]


# -- helpers ---------------------------------------------------------------------------------


def _text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def _governance(result: types.CallToolResult) -> dict[str, Any]:
    assert result.meta is not None, "every answer carries the governance record in _meta"
    return result.meta[META_GOVERNANCE]


def _is_hash(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX64


def _workspace_file(session: Session, text: str = "delete me\n") -> Path:
    path = session.hall / "workspace" / f"file-{uuid.uuid4().hex[:8]}.txt"
    path.write_text(text)
    return path


async def _wait_for_pid(path: Path, timeout_s: float = 10) -> int:
    with anyio.fail_after(timeout_s):
        while not path.exists():
            await anyio.sleep(0.02)
    return int(path.read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _wait_gone(pid: int, timeout_s: float = 5) -> None:
    with anyio.move_on_after(timeout_s):
        while _alive(pid):
            await anyio.sleep(0.02)
    assert not _alive(pid), f"worker process {pid} is still alive"


def _check_denial(result: types.CallToolResult, code: str) -> dict[str, Any]:
    """A denial is a tool error the model can read, with the record in three places."""
    assert result.is_error is True
    summary = result.structured_content
    assert summary is not None
    assert summary["denied"] is True
    assert summary["deny_code"] == code
    assert summary["deny_message"]
    for key in ("decision_id", "correlation_id", "matched_rule_id", "policy_version"):
        assert key in summary
    gov = _governance(result)
    assert gov["decision_id"] == summary["decision_id"]
    assert gov["correlation_id"] == summary["correlation_id"]
    assert gov["deny_reason_if_denied"]["code"] == code
    assert _is_hash(gov["receipt_hash"])
    assert gov["receipt_id"] == summary["receipt_id"]
    assert code in _text(result)
    return summary


# -- scenarios (each runs in-process on a fresh hall, and in order over stdio) ----------------


async def scenario_list_tools(s: Session) -> None:
    listing = await s.client.list_tools(cache_mode="bypass")
    tools = {tool.name: tool for tool in listing.tools}
    assert set(tools) == TOOLS
    echo = tools["echo"]
    assert echo.description == "Echo a text back."
    assert echo.input_schema == {
        "type": "object",
        "properties": {"text": {"type": "string", "maxLength": 1000}},
        "required": ["text"],
        "additionalProperties": False,
    }
    assert echo.output_schema == {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }
    assert echo.annotations is not None
    assert echo.annotations.read_only_hint is True
    assert echo.annotations.idempotent_hint is True
    delete = tools["delete"].annotations
    assert delete is not None
    assert delete.destructive_hint is True
    assert delete.read_only_hint is False


async def scenario_allowed(s: Session) -> None:
    result = await s.call("echo", {"text": "hello"}, meta={META_CORRELATION_ID: "corr-allowed-1"})
    assert result.is_error is not True
    assert result.structured_content == {"text": "hello"}
    listing = await s.client.list_tools()
    schema = next(t.output_schema for t in listing.tools if t.name == "echo")
    jsonschema.validate(result.structured_content, schema)
    assert json.loads(_text(result)) == {"text": "hello"}
    gov = _governance(result)
    assert gov["denied"] is False
    assert gov["correlation_id"] == "corr-allowed-1"
    uuid.UUID(gov["decision_id"])
    assert gov["receipt_id"].startswith("rcpt_")
    assert _is_hash(gov["receipt_hash"])
    assert gov["matched_rule_id"] == "rr.test.run"
    assert gov["policy_version"].startswith("sha256:")
    assert gov["tenant_id"] == "tester"
    assert gov["env"] == "dev"
    assert gov["worker_id"] == "org.test.echo"
    assert gov["outcome"]["status"] == "ok"
    assert gov["outcome"]["outcome_receipt_id"].startswith("rcpt_")
    assert gov["outcome"]["outcome_receipt_id"] != gov["receipt_id"]


async def scenario_correlation_id_is_new_without_meta(s: Session) -> None:
    first = await s.client.call_tool("echo", {"text": "a"})
    second = await s.client.call_tool("echo", {"text": "b"})
    ids = {_governance(first)["correlation_id"], _governance(second)["correlation_id"]}
    assert len(ids) == 2
    s.correlation_ids.extend(ids)


async def scenario_deny_no_matching_rule(s: Session) -> None:
    result = await s.call("unrouted", {"text": "x"})
    summary = _check_denial(result, "DENY_NO_MATCHING_RULE")
    assert summary["matched_rule_id"] == "NO_MATCH"
    assert "not retry" in _text(result)


async def scenario_deny_policy(s: Session) -> None:
    result = await s.call("forbidden", {"text": "x"}, meta={META_CORRELATION_ID: "corr-deny-7"})
    summary = _check_denial(result, "DENY_POLICY_GATE")
    assert summary["correlation_id"] == "corr-deny-7"
    assert summary["matched_rule_id"] == "rr.test.run"
    assert summary["policy_version"].startswith("sha256:")
    assert "pol.test.forbidden" in summary["deny_message"]


async def scenario_deny_missing_controls(s: Session) -> None:
    result = await s.call("uncontrolled", {"text": "x"})
    summary = _check_denial(result, "DENY_MISSING_REQUIRED_CONTROLS")
    assert summary["matched_rule_id"] == "rr.test.sandboxed"
    assert "ctrl.test.sandbox" in _governance(result)["deny_reason_if_denied"]["missing"]


async def scenario_held_for_human(s: Session) -> None:
    target = _workspace_file(s)
    result = await s.call("wipe", {"path": target.name})
    summary = _check_denial(result, "DENY_REQUIRES_HUMAN_APPROVAL")
    assert summary["held"] is True
    assert summary["pending_approval_id"]
    assert summary["supervisor_level"] == "gatekeeper"
    assert "approval" in _text(result).lower()
    assert target.exists(), "a held call runs nothing"


async def scenario_unknown_tool(s: Session) -> None:
    with pytest.raises(MCPError) as caught:
        await s.call("no_such_tool", {})
    assert caught.value.error.code == -32602
    assert caught.value.error.data["deny_code"] == "DENY_UNKNOWN_TOOL"
    assert "Traceback" not in caught.value.error.message


async def scenario_invalid_arguments(s: Session) -> None:
    missing = await s.call("echo", {})
    assert missing.is_error is True
    assert missing.structured_content is not None
    assert missing.structured_content["invalid_arguments"] is True
    assert any("text" in e for e in missing.structured_content["errors"])
    assert _governance(missing)["deny_code"] == "DENY_INVALID_ARGUMENTS"
    wrong = await s.call("echo", {"text": 5, "extra": True})
    assert wrong.is_error is True
    errors = wrong.structured_content["errors"]  # type: ignore[index]
    assert any("extra" in e for e in errors) and any("text" in e for e in errors)
    assert "text" in _text(wrong)


async def scenario_operator_fixes_tenant_and_env(s: Session) -> None:
    """The model's arguments and _meta cannot choose who or where; a label can only go up."""
    smuggled = await s.call("echo", {"text": "x", "env": "prod", "tenant_id": "root"})
    assert smuggled.is_error is True
    errors = smuggled.structured_content["errors"]  # type: ignore[index]
    assert any("env" in e for e in errors)
    meta = {"dev.pyhall/env": "prod", "dev.pyhall/tenant_id": "root", META_DATA_LABEL: "INTERNAL"}
    result = await s.call("echo", {"text": "x"}, meta=meta)
    assert result.is_error is not True
    gov = _governance(result)
    assert (gov["env"], gov["tenant_id"], gov["data_label"]) == ("dev", "tester", "INTERNAL")
    # a label the hall does not know is refused, not ignored (that would run it as PUBLIC)
    for label in ("internal", ["INTERNAL"]):
        refused = await s.call("echo", {"text": "x"}, meta={META_DATA_LABEL: label})
        assert refused.is_error is True, label
        assert _governance(refused)["deny_code"] == "DENY_INVALID_ARGUMENTS"
        assert any(META_DATA_LABEL in e for e in refused.structured_content["errors"])  # type: ignore[index]


async def scenario_dry_run(s: Session) -> None:
    target = _workspace_file(s)
    for misspelt in ("true", 1):  # a dry run asked for, but not as JSON true: nothing runs
        refused = await s.call("delete", {"path": target.name}, meta={META_DRY_RUN: misspelt})
        assert refused.is_error is True
        assert _governance(refused)["deny_code"] == "DENY_INVALID_ARGUMENTS"
        assert target.exists(), misspelt
    dry = await s.call("delete", {"path": target.name}, meta={META_DRY_RUN: True})
    assert dry.is_error is True  # no output of the worker to return
    assert dry.structured_content is not None
    assert dry.structured_content["dry_run"] is True
    assert dry.structured_content["denied"] is False
    assert dry.structured_content["would_run"] == "org.test.delete"
    assert _governance(dry)["dry_run"] is True
    assert "outcome" not in _governance(dry)
    assert target.exists(), "a dry run executes nothing"
    real = await s.call("delete", {"path": target.name})
    assert real.structured_content == {"deleted": target.name}
    assert not target.exists()


async def scenario_worker_crash(s: Session) -> None:
    result = await s.call("crash", {})
    assert result.is_error is True
    assert "crashed" in _text(result)
    assert "boom" not in _text(result), "a worker's stderr is for logs, not for the client"
    assert _governance(result)["outcome"]["status"] == "error"
    after = await s.call("echo", {"text": "still here"})
    assert after.structured_content == {"text": "still here"}


async def scenario_timeout_while_serving_others(s: Session) -> None:
    pidfile = s.hall / "workspace" / "hang.pid"
    done: dict[str, Any] = {}

    async def hang() -> None:
        done["hang"] = await s.call("hang", {"pidfile": pidfile.name})

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(hang)
            pid = await _wait_for_pid(pidfile)
            other = await s.call("echo", {"text": "meanwhile"})
            assert other.structured_content == {"text": "meanwhile"}
            assert "hang" not in done, "the other call was answered while the worker hung"
    result = done["hang"]
    assert result.is_error is True
    assert "timed out after 1 s" in _text(result)
    assert _governance(result)["outcome"]["status"] == "timeout"
    await _wait_gone(pid)


async def scenario_cancel_kills_worker(s: Session) -> None:
    pidfile = s.hall / "workspace" / "sleep.pid"
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(s.call, "sleep", {"pidfile": pidfile.name})
            pid = await _wait_for_pid(pidfile)
            assert _alive(pid)
            tasks.cancel_scope.cancel()
    await _wait_gone(pid)  # well before the worker's own 30 s timeout
    after = await s.call("echo", {"text": "after cancel"})
    assert after.structured_content == {"text": "after cancel"}


async def scenario_progress(s: Session) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    result = await s.call("progress", {"steps": 3}, progress_callback=on_progress)
    assert result.structured_content == {"steps": 3}
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


async def scenario_worker_writing_stdout(s: Session) -> None:
    result = await s.call("noisy", {})
    assert result.structured_content == {"ok": True}
    assert (await s.call("echo", {"text": "ok"})).structured_content == {"text": "ok"}


async def scenario_reload_and_list_changed(s: Session) -> None:
    workers = s.hall / "workers"
    before = await s.tool_names()

    async with _tool_list_changes(s) as changed:
        shutil.copytree(workers / "echo", workers / "echo2")
        record = workers / "echo2" / "worker.yaml"
        record.write_text(
            record.read_text()
            .replace("org.test.echo", "org.test.echo2")
            .replace("name: echo", "name: echo2")
        )
        await changed(before | {"echo2"})
        echoed = await s.call("echo2", {"text": "new"})
        assert echoed.structured_content == {"text": "new"}

        # A record that would break tools/list: the served set stays what it was.
        (workers / "broken").mkdir()
        (workers / "broken" / "worker.yaml").write_text(
            "worker_id: org.test.broken\nworker_species_id: wrk.test.broken\n"
            "capabilities: [cap.test.broken]\n"
            "tool: {name: broken, description: x, input_schema: {}}\n"
        )
        await anyio.sleep(0.6)  # several reload intervals
        assert await s.tool_names() == before | {"echo2"}
        assert (await s.call("echo2", {"text": "x"})).structured_content == {"text": "x"}

        shutil.rmtree(workers / "echo2")
        await changed(before)
    with pytest.raises(MCPError) as caught:
        await s.call("echo2", {"text": "gone"})
    assert caught.value.error.code == -32602


async def scenario_policy_edit_takes_effect_without_a_restart(s: Session) -> None:
    """An operator tightening a policy must not have to remember to restart the gateway."""
    policy = s.hall / "policies" / "test.yaml"
    original = policy.read_text()
    closing = (
        "\n  - id: pol.test.no-more-echo\n    effect: deny\n    description: Closed for now.\n"
        "    when:\n      tool: echo\n"
    )

    async def echo_code() -> str | None:
        return _governance(await s.call("echo", {"text": "x"})).get("deny_code")

    async def settles_on(code: str | None) -> None:
        with anyio.fail_after(10):
            while await echo_code() != code:
                await anyio.sleep(0.1)

    policy.write_text(original + closing)
    await settles_on("DENY_POLICY_GATE")
    policy.write_text(original)
    await settles_on(None)


async def scenario_a_refused_reload_is_retried_when_the_missing_file_appears(
    s: Session,
) -> None:
    """hall.yaml names a rule file that does not exist yet: that reload is refused (the
    old hall serves on), and writing the file then reloads without another edit."""
    hall_yaml = s.hall / "hall.yaml"
    original = hall_yaml.read_text()
    late = s.hall / "late-rules.yaml"

    async def unrouted_code() -> str | None:
        return _governance(await s.call("unrouted", {"text": "x"})).get("deny_code")

    assert await unrouted_code() == "DENY_NO_MATCHING_RULE"
    hall_yaml.write_text(original.replace("rules: [rules]", "rules: [rules, late-rules.yaml]"))
    await anyio.sleep(0.6)  # several reload intervals: refused, nothing changed
    assert await unrouted_code() == "DENY_NO_MATCHING_RULE"
    late.write_text(
        "rules:\n  - rule_id: rr.test.late\n    match: {capability_id: cap.test.unrouted}\n"
        "    decision:\n      candidate_workers_ranked: [{worker_species_id: wrk.test.unrouted}]\n"
        "      required_controls_suggested: [ctrl.obs.audit-log-append-only]\n"
    )
    with anyio.fail_after(10):
        while await unrouted_code() is not None:
            await anyio.sleep(0.1)
    hall_yaml.write_text(original)
    with anyio.fail_after(10):
        while await unrouted_code() != "DENY_NO_MATCHING_RULE":
            await anyio.sleep(0.1)


@asynccontextmanager
async def _tool_list_changes(s: Session) -> AsyncIterator[Callable[[set[str]], Awaitable[None]]]:
    """``await changed(names)``: wait for change notices until the tools listed are ``names``.

    Legacy sessions get ``notifications/tools/list_changed``; modern ones a
    ``subscriptions/listen`` stream. A reload that changed nothing visible may
    notify too, hence the loop.
    """
    if s.mode == "legacy":
        seen = len(s.tool_list_changes)

        async def next_notice() -> None:
            nonlocal seen
            while len(s.tool_list_changes) == seen:
                await anyio.sleep(0.02)
            seen = len(s.tool_list_changes)

        yield _until_listed(s, next_notice)
        return
    async with s.client.listen(tools_list_changed=True) as subscription:
        events = subscription.__aiter__()

        async def next_event() -> None:
            await events.__anext__()

        yield _until_listed(s, next_event)


def _until_listed(
    s: Session, next_notice: Callable[[], Awaitable[object]]
) -> Callable[[set[str]], Awaitable[None]]:
    async def changed(names: set[str]) -> None:
        with anyio.fail_after(10):
            while True:
                await next_notice()
                if await s.tool_names() == names:
                    return

    return changed


SCENARIOS = [
    scenario_list_tools,
    scenario_allowed,
    scenario_correlation_id_is_new_without_meta,
    scenario_deny_no_matching_rule,
    scenario_deny_policy,
    scenario_deny_missing_controls,
    scenario_held_for_human,
    scenario_unknown_tool,
    scenario_invalid_arguments,
    scenario_operator_fixes_tenant_and_env,
    scenario_dry_run,
    scenario_worker_crash,
    scenario_timeout_while_serving_others,
    scenario_cancel_kills_worker,
    scenario_progress,
    scenario_worker_writing_stdout,
    scenario_reload_and_list_changed,
    scenario_policy_edit_takes_effect_without_a_restart,
    scenario_a_refused_reload_is_retried_when_the_missing_file_appears,
]


def check_receipts(s: Session) -> None:
    """One decision receipt per call, one outcome per execution, and the chain verifies."""
    layout = HallLayout.for_hall(s.hall, s.state)
    report = verify_log(layout)
    assert report.ok, report.first_error
    store = SQLiteReceiptStore(layout.audit_db, readonly=True)
    try:
        receipts = [json.loads(r.payload) for r in store.iter_all()]
    finally:
        store.close()
    assert report.count == len(receipts)
    decisions = [r for r in receipts if r["kind"] == "decision"]
    outcomes = [r for r in receipts if r["kind"] == "outcome"]
    assert sorted(r["correlation_id"] for r in decisions) == sorted(s.correlation_ids)
    executed = {r["receipt_id"] for r in decisions if r["decision"] == "allowed"}
    assert sorted(r["decision_receipt_id"] for r in outcomes) == sorted(executed)
    statuses = {r["status"] for r in outcomes}
    assert {"ok", "error", "timeout", "cancelled"} <= statuses
    # A held call also leaves the receipt of its pending approval; nothing else is logged.
    approvals = [r for r in receipts if r["kind"] == "approval"]
    held = [r for r in decisions if r["decision"] == "held"]
    assert held and sorted(a["decision_receipt_id"] for a in approvals) == sorted(
        h["receipt_id"] for h in held
    )
    assert len(receipts) == len(decisions) + len(outcomes) + len(approvals)


# -- in-process ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("scenario_"))
async def test_in_process(
    scenario: Callable[[Session], Awaitable[None]], gate_hall: Path, client_mode: str
) -> None:
    async with in_process(gate_hall, client_mode) as session:
        await scenario(session)


async def test_deny_mode_jsonrpc(gate_hall: Path, client_mode: str) -> None:
    async with in_process(gate_hall, client_mode, overrides={"deny_mode": "jsonrpc"}) as s:
        await _check_jsonrpc_denials(s)


async def _check_jsonrpc_denials(s: Session) -> None:
    with pytest.raises(MCPError) as denied:
        await s.call("forbidden", {"text": "x"}, meta={META_CORRELATION_ID: "corr-rpc"})
    error = denied.value.error
    assert error.code == DENIED_CODE == -31001
    assert error.data["deny_reason_if_denied"]["code"] == "DENY_POLICY_GATE"
    assert error.data["deny_code"] == "DENY_POLICY_GATE"  # one place for every record
    assert error.data["deny_message"] == error.data["deny_reason_if_denied"]["message"]
    assert error.data["correlation_id"] == "corr-rpc"
    uuid.UUID(error.data["decision_id"])
    assert _is_hash(error.data["receipt_hash"])
    with pytest.raises(MCPError) as held:
        await s.call("wipe", {"path": "README.txt"})
    assert held.value.error.code == HELD_CODE == -31002
    assert held.value.error.data["pending_approval_id"]
    assert (s.hall / "workspace" / "README.txt").exists()
    ok = await s.call("echo", {"text": "fine"})
    assert ok.structured_content == {"text": "fine"}


async def test_unknown_tenant(gate_hall: Path, client_mode: str) -> None:
    async with in_process(gate_hall, client_mode, overrides={"tenant_id": "intruder"}) as s:
        result = await s.call("echo", {"text": "x"})
    _check_denial(result, "DENY_UNKNOWN_TENANT")


async def test_worker_attestation(gate_hall: Path, client_mode: str) -> None:
    """Attestation on: a signed worker runs, an unsigned one is denied, an edited one too."""
    from pyhall_mcp.attestation import sign_package, trust_attestation_key
    from pyhall_mcp.signing import SigningKey

    key = SigningKey.generate()
    trust_attestation_key(HallLayout.for_hall(gate_hall).trusted_keys, key, ["org.test"])
    echo = gate_hall / "workers" / "echo"
    record = echo / "worker.yaml"  # without annotations: their default must not change the pin
    record.write_text(
        "".join(line for line in record.read_text().splitlines(True) if "annotations" not in line)
    )
    sign_package(echo, key)
    floors = {"floors": {"require_worker_attestation": True}}
    async with in_process(gate_hall, client_mode, overrides=floors, watch=False) as s:
        signed = await s.call("echo", {"text": "signed"})
        assert signed.structured_content == {"text": "signed"}
        gov = _governance(signed)
        assert (gov["worker_attestation_checked"], gov["worker_attestation_valid"]) == (True, True)

        unsigned = _check_denial(await s.call("crash", {}), "DENY_WORKER_ATTESTATION_MISSING")
        assert unsigned["denied"] is True

        with (echo / "echo.py").open("a") as f:
            f.write("\n# an edit after signing\n")
        _check_denial(await s.call("echo", {"text": "x"}), "DENY_WORKER_TAMPERED")


async def test_demo_hall(demo_hall: Path, client_mode: str) -> None:
    """The bundled demo hall, attestation on as shipped: allowed, denied and held calls."""
    async with in_process(demo_hall, client_mode) as s:
        demo_tools = {"greet", "summarize_document", "hash_document", "read_file", "delete_file"}
        assert demo_tools <= await s.tool_names()
        greet = await s.call("greet", {"name": "Ada"})
        assert greet.structured_content == {"greeting": "Hello, Ada!"}
        assert _governance(greet)["worker_attestation_valid"] is True
        # The reader's privilege envelope confines it, symlinks resolved: the worker never runs.
        (demo_hall / "workspace" / "notes" / "out.txt").symlink_to(demo_hall / "hall.yaml")
        (demo_hall / "workspace" / "notes" / "in.txt").symlink_to("meeting.txt")
        # A loop outside, then a way back in through a link that leads out again: a path
        # resolver that stops at the loop would leave `away` unfollowed.
        (demo_hall / "loop").symlink_to("loop")
        (demo_hall / "workspace" / "away").symlink_to(demo_hall / "rules")
        looped = f"{demo_hall}/loop/../workspace/away/demo.yaml"
        for path in (
            "/etc/passwd",
            "../hall.yaml",
            "notes/../../hall.yaml",
            "notes/out.txt",
            "away/demo.yaml",
        ):
            denied = _check_denial(
                await s.call("read_file", {"path": path}), "DENY_PRIVILEGE_ENVELOPE_VIOLATED"
            )
            assert denied["deny_message"] == (
                "The argument 'path' names a file outside the directories the worker's "
                "privilege envelope lets it read."
            )
        # As the kernel sees it: `workspace/..` is not there to step back out of.
        for path in ("notes/a\x00b", looped, "workspace/../../hall.yaml"):
            unresolvable = await s.call("read_file", {"path": path})
            denied = _check_denial(unresolvable, "DENY_PRIVILEGE_ENVELOPE_VIOLATED")
            assert denied["deny_message"] == (
                "The argument 'path' is not a path the hall can resolve."
            )
        inside = await s.call("read_file", {"path": "notes/in.txt"})
        assert inside.structured_content["path"] == "notes/meeting.txt"
        assert _governance(inside)["privilege_envelope_ok"] is True
        # The deleter's policy confines it first (`under: workspace`); a path the policy
        # reads as inside but that leads out is denied, not held for a person in vain.
        _check_denial(await s.call("delete_file", {"path": "../hall.yaml"}), "DENY_POLICY_GATE")
        leads_out = await s.call("delete_file", {"path": "notes/out.txt"})
        assert not _check_denial(leads_out, "DENY_PRIVILEGE_ENVELOPE_VIOLATED").get("held")
        target = demo_hall / "workspace" / "scratch" / "held.txt"
        target.write_text("keep me\n")
        held = await s.call("delete_file", {"path": str(target)})
        assert _check_denial(held, "DENY_REQUIRES_HUMAN_APPROVAL")["held"] is True
        assert target.exists()


async def test_a_re_pointed_workspace_counts_where_it_points_now(
    demo_hall: Path, client_mode: str
) -> None:
    """The gateway and the worker resolve through the workspace at each call, alike."""
    (demo_hall / "workspace").rename(demo_hall / "ws_a")
    (demo_hall / "ws_b" / "notes").mkdir(parents=True)
    (demo_hall / "ws_b" / "notes" / "x.txt").write_text("from b\n")
    (demo_hall / "ws_a" / "notes" / "x.txt").write_text("from a\n")
    (demo_hall / "workspace").symlink_to("ws_a")
    async with in_process(demo_hall, client_mode) as s:
        first = await s.call("read_file", {"path": "notes/x.txt"})
        assert first.structured_content["content"] == "from a\n"
        (demo_hall / "workspace").unlink()
        (demo_hall / "workspace").symlink_to("ws_b")
        second = await s.call("read_file", {"path": "notes/x.txt"})
        assert second.structured_content["content"] == "from b\n"
        stale = await s.call("read_file", {"path": str(demo_hall / "ws_a" / "notes" / "x.txt")})
        _check_denial(stale, "DENY_PRIVILEGE_ENVELOPE_VIOLATED")


# -- over a real pyhall-mcp subprocess ---------------------------------------------------------


async def test_stdio_session(gate_hall: Path, client_mode: str) -> None:
    """Every scenario against one real gateway process per era, then its receipts."""
    async with over_stdio(gate_hall, client_mode) as session:
        for scenario in SCENARIOS:
            await scenario(session)
    check_receipts(session)


async def test_stdio_deny_mode_jsonrpc(gate_hall: Path, client_mode: str) -> None:
    async with over_stdio(gate_hall, client_mode, "--deny-mode", "jsonrpc") as session:
        await _check_jsonrpc_denials(session)


async def test_stdio_unknown_tenant_from_the_command_line(
    gate_hall: Path, client_mode: str
) -> None:
    async with over_stdio(gate_hall, client_mode, "--tenant", "intruder") as session:
        result = await session.call("echo", {"text": "x"})
    summary = _check_denial(result, "DENY_UNKNOWN_TENANT")
    assert _governance(result)["tenant_id"] == "intruder"
    assert summary["matched_rule_id"]
