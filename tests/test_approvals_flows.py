"""Human approval end to end: through the SDK client in both eras, and out of band.

- In band, handshake era: the gateway asks with ``elicitation/create``.
- In band, 2026-07-28 era: an ``InputRequiredResult`` with a sealed state; the
  SDK client asks its elicitation callback and retries by itself.
- Out of band (no elicitation): held, the operator runs ``pyhall approvals``
  as a subprocess, the identical retry runs exactly once.

Each test checks what ran (a workspace file deleted or not) and the receipts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from conftest import FIXTURE_HALLS, REPO, copy_hall
from mcp import Client, MCPError

from pyhall_mcp.approvals import APPROVAL_DENIED_CODE, APPROVAL_INVALID_CODE
from pyhall_mcp.audit import SQLiteReceiptStore, verify_log
from pyhall_mcp.gateway import Gateway, build_server
from pyhall_mcp.hall import META_CORRELATION_ID, META_GOVERNANCE, Hall
from pyhall_mcp.layout import HallLayout

pytestmark = pytest.mark.timeout(60)

HELD = "DENY_REQUIRES_HUMAN_APPROVAL"
ELICITED = "person at the MCP client (elicitation)"
_CLI = "import sys; from pyhall_mcp.cli import main; sys.exit(main(sys.argv[1:]))"

Elicit = Callable[[Any, types.ElicitRequestParams], Awaitable[types.ElicitResult]]


# -- harness -------------------------------------------------------------------------------------


class Asker:
    """An elicitation callback that answers as told and remembers every question."""

    def __init__(self, action: str = "accept", approve: bool = True, delay_s: float = 0) -> None:
        self.action, self.approve, self.delay_s = action, approve, delay_s
        self.messages: list[str] = []
        self.before_answer: Callable[[], None] | None = None

    async def __call__(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.messages.append(params.message)
        assert isinstance(params, types.ElicitRequestFormParams)
        assert params.requested_schema["properties"]["approve"]["type"] == "boolean"
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        if self.before_answer is not None:
            self.before_answer()
        if self.action != "accept":
            return types.ElicitResult(action=self.action)  # type: ignore[arg-type]
        return types.ElicitResult(action="accept", content={"approve": self.approve})


@asynccontextmanager
async def connect(
    hall: Path,
    mode: str,
    *,
    elicit: Elicit | None = None,
    floors: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Client, Gateway]]:
    """An in-process gateway on ``hall`` (state beside it) and an SDK client."""
    overrides = {
        "events": "off",
        "floors": {"require_worker_attestation": False, **(floors or {})},
        **settings,
    }
    state = hall.parent / "state"
    gateway = Gateway(Hall.load(hall, overrides=overrides, state_dir=state), overrides=overrides)
    server = build_server(gateway, watch=False)
    async with Client(server, mode=mode, elicitation_callback=elicit) as client:
        yield client, gateway


def layout_of(hall: Path) -> HallLayout:
    return HallLayout.for_hall(hall, hall.parent / "state")


def receipts(hall: Path) -> list[dict[str, Any]]:
    store = SQLiteReceiptStore(layout_of(hall).audit_db, readonly=True)
    try:
        return [json.loads(r.payload) for r in store.iter_all()]
    finally:
        store.close()


def steps(hall: Path, approval_id: str) -> list[str]:
    return [
        r["step"]
        for r in receipts(hall)
        if r["kind"] == "approval" and r.get("approval_id") == approval_id
    ]


def decisions(hall: Path, approval_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in receipts(hall)
        if r["kind"] == "decision"
        and approval_id in (r.get("pending_approval_id"), r.get("approval_id"))
    ]


def assert_chain_ok(hall: Path) -> None:
    report = verify_log(layout_of(hall))
    assert report.ok, report.first_error


def gov(result: types.CallToolResult) -> dict[str, Any]:
    assert result.meta is not None
    return result.meta[META_GOVERNANCE]


def held_id(result: types.CallToolResult) -> str:
    assert result.is_error is True
    summary = result.structured_content or {}
    assert summary.get("held") is True, result
    assert summary["deny_code"] in (HELD, "DENY_REQUIRES_HUMAN")
    return summary["pending_approval_id"]


def denial(result: types.CallToolResult, code: str) -> dict[str, Any]:
    assert result.is_error is True
    summary = result.structured_content or {}
    assert summary.get("deny_code") == code, result
    assert not summary.get("held")
    assert code in result.content[0].text  # type: ignore[union-attr]
    return summary


async def pyhall(hall: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """``pyhall approvals ...`` as the operator runs it: a separate process, --json."""
    where = ["--hall", str(hall), "--state-dir", str(hall.parent / "state"), "--json"]
    done = await anyio.run_process(
        [sys.executable, "-c", _CLI, "approvals", *args, *where],
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")},
    )
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return copy_hall(FIXTURE_HALLS / "gate", tmp_path / "gate")


def doomed(hall: Path, name: str = "doomed.txt") -> Path:
    path = hall / "workspace" / name
    path.write_text("delete me\n")
    return path


ERAS = pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["handshake", "modern"])


# -- in band -------------------------------------------------------------------------------------


@ERAS
async def test_in_band_accept_runs_once(gate: Path, mode: str) -> None:
    target = doomed(gate)
    asker = Asker("accept")
    async with connect(gate, mode, elicit=asker) as (client, _):
        result = await client.call_tool("wipe", {"path": target.name})
        assert result.is_error is not True, result
        assert result.structured_content == {"deleted": target.name}
        record = gov(result)
        approval = record["approval"]
        assert (approval["status"], approval["step"]) == ("executed", "executed")
        assert approval["decided_by"] == ELICITED
    assert not target.exists()
    assert len(asker.messages) == 1
    question = asker.messages[0]
    for part in ("'wipe'", f'"{target.name}"', "Wiping needs a person", approval["expires_at"]):
        assert part in question, part
    apr = approval["approval_id"]
    assert steps(gate, apr) == ["proposed", "approved", "executed", "returned"]
    held, allowed = decisions(gate, apr)
    assert (held["decision"], held["deny_code"]) == ("held", HELD)
    assert (allowed["decision"], allowed["human_approved"]) == ("allowed", True)
    assert allowed["approved_by"] == ELICITED
    assert allowed["correlation_id"] == held["correlation_id"]
    outcomes = [r for r in receipts(gate) if r["kind"] == "outcome"]
    assert [o["status"] for o in outcomes] == ["ok"], "the worker ran exactly once"
    assert_chain_ok(gate)


@ERAS
@pytest.mark.parametrize("action", ["decline", "cancel", "accept-but-no"])
async def test_in_band_no_is_a_receipted_denial(gate: Path, mode: str, action: str) -> None:
    target = doomed(gate)
    asker = Asker("accept", approve=False) if action == "accept-but-no" else Asker(action)
    async with connect(gate, mode, elicit=asker) as (client, _):
        result = await client.call_tool("wipe", {"path": target.name})
        summary = denial(result, APPROVAL_DENIED_CODE)
        apr = gov(result)["approval"]["approval_id"]
        again = await client.call_tool("wipe", {"path": target.name})
    assert target.exists(), "nothing ran"
    status = "cancelled" if action == "cancel" else "denied"
    assert gov(result)["deny_reason_if_denied"]["approval_status"] == status
    assert summary["receipt_id"] == gov(result)["receipt_id"]
    assert steps(gate, apr) == ["proposed", status]
    step = next(r for r in receipts(gate) if r.get("step") == status)
    assert (step["denial"], step["decided_by"]) == (True, ELICITED)
    if status == "denied":
        # A person said no to this exact call: the retry is refused without asking again.
        denial(again, APPROVAL_DENIED_CODE)
        assert len(asker.messages) == 1
        assert decisions(gate, apr)[-1]["approval_id"] == apr
    else:
        # Dismissing is not a decision: the retry asks again (and is dismissed again).
        denial(again, APPROVAL_DENIED_CODE)
        assert len(asker.messages) == 2
        assert gov(again)["approval"]["approval_id"] != apr
    assert [r for r in receipts(gate) if r["kind"] == "outcome"] == []
    assert_chain_ok(gate)


@ERAS
@pytest.mark.parametrize(
    ("operator", "person", "ran", "said"),
    [
        ("approved", "decline", False, "The person declined this call."),
        ("denied", "accept", False, "The operator (operator:test) denied this call."),
        ("approved", "accept", True, None),
        ("approved", "cancel", False, "The operator's approval stands"),
    ],
)
async def test_an_operator_decision_during_the_question_and_the_answer_agree(
    gate: Path, mode: str, operator: str, person: str, ran: bool, said: str | None
) -> None:
    """The operator decides with the CLI while the person is asked: a "no" from either
    wins, two yeses run once, and the model is told what stands."""
    target = doomed(gate)
    asker = Asker(person)
    async with connect(gate, mode, elicit=asker) as (client, gateway):
        store = gateway.hall.approvals.store  # type: ignore[union-attr]

        def operator_decides() -> None:
            [pending] = store.list(["pending"])
            store.decide(pending.approval_id, operator, by="operator:test")  # type: ignore[arg-type]

        asker.before_answer = operator_decides
        result = await client.call_tool("wipe", {"path": target.name})
        assert target.exists() is not ran
        retry = await client.call_tool("wipe", {"path": target.name}) if not ran else None
        [approval] = store.list()
    if ran:
        assert result.structured_content == {"deleted": target.name}
        assert approval.status == "executed"
        return
    assert said is not None and said in result.content[0].text  # type: ignore[union-attr]
    assert "Nothing was run" in result.content[0].text  # type: ignore[union-attr]
    if person == "cancel":  # the operator's yes stands: the retry runs it, once
        assert retry is not None and retry.structured_content == {"deleted": target.name}
    else:
        assert approval.status == "denied" and target.exists()
        denial(retry, APPROVAL_DENIED_CODE)  # type: ignore[arg-type]
    assert_chain_ok(gate)


async def test_handshake_timeout_is_a_denial(gate: Path) -> None:
    target = doomed(gate)
    asker = Asker("accept", delay_s=30)  # the person never answers in time
    async with connect(gate, "legacy", elicit=asker, floors={"approval_ttl_s": 1}) as (client, _):
        started = time.monotonic()
        result = await client.call_tool("wipe", {"path": target.name})
        assert time.monotonic() - started < 10
    summary = denial(result, APPROVAL_DENIED_CODE)
    assert "expired" in summary["deny_message"]
    assert target.exists()
    assert steps(gate, gov(result)["approval"]["approval_id"]) == ["proposed", "expired"]
    assert_chain_ok(gate)


async def test_modern_answer_after_expiry_runs_nothing(gate: Path) -> None:
    target = doomed(gate)
    asker = Asker("accept")
    async with connect(gate, "auto", elicit=asker) as (client, gateway):
        store = gateway.hall.approvals.store  # type: ignore[union-attr]
        asker.before_answer = lambda: setattr(store, "clock", lambda: time.time() + 3600)
        result = await client.call_tool("wipe", {"path": target.name})
    summary = denial(result, APPROVAL_INVALID_CODE)
    assert "expired" in summary["deny_message"]
    assert target.exists()
    refused = [r for r in receipts(gate) if r.get("step") == "refused"]
    assert len(refused) == 1 and "expired" in refused[0]["reason"]
    assert_chain_ok(gate)


@ERAS
@pytest.mark.parametrize(
    "settings",
    [{"env": "stage"}, {"approvals": {"in_band": False}}],
    ids=["stage", "dev-off"],
)
async def test_in_band_off_leaves_the_call_to_the_operator(
    gate: Path, mode: str, settings: dict[str, Any]
) -> None:
    """The client's "person" may be the agent's own code: outside dev (or when the hall
    says so) nobody is asked in band, however eagerly the client would say yes."""
    target = doomed(gate)
    asker = Asker("accept")
    async with connect(gate, mode, elicit=asker, **settings) as (client, gateway):
        assert gateway.hall.settings.in_band_approval is False
        result = await client.call_tool("wipe", {"path": target.name})
        apr = held_id(result)
        again = await client.call_tool("wipe", {"path": target.name})
        assert held_id(again) == apr
    assert asker.messages == [], "nobody was asked in band"
    assert target.exists()
    assert steps(gate, apr) == ["proposed"]


async def test_in_band_can_be_turned_on_outside_dev(gate: Path) -> None:
    target = doomed(gate)
    asker = Asker("accept")
    async with connect(gate, "legacy", elicit=asker, env="stage", approvals={"in_band": True}) as (
        client,
        _,
    ):
        result = await client.call_tool("wipe", {"path": target.name})
        assert result.structured_content == {"deleted": target.name}
    assert len(asker.messages) == 1 and not target.exists()


async def test_a_sealed_answer_is_refused_once_in_band_is_off(gate: Path) -> None:
    """A state sealed while in band was on (before a reload turned it off) approves nothing."""
    from pyhall_mcp.hall import ApprovalSettings

    target = doomed(gate)
    async with connect(gate, "auto", elicit=Asker()) as (client, gateway):
        first = await _first_round(client, {"path": target.name})
        hall = gateway.hall
        hall.settings = hall.settings.model_copy(
            update={"approvals": ApprovalSettings(in_band=False)}
        )
        done = await client.session.call_tool(
            "wipe", {"path": target.name}, input_responses=_YES, request_state=first.request_state
        )
        assert isinstance(done, types.CallToolResult)
        summary = denial(done, APPROVAL_INVALID_CODE)
        assert "in-band approval is off" in summary["deny_message"]
        [pending] = hall.approvals.store.list()  # type: ignore[union-attr]
        assert pending.status == "pending", "still the operator's to decide"
    assert target.exists()


def test_in_band_setting_is_strict(gate: Path) -> None:
    from pyhall_mcp.errors import ConfigError

    text = (gate / "hall.yaml").read_text()
    (gate / "hall.yaml").write_text(text + "approvals:\n  in_band: yes please\n")
    with pytest.raises(ConfigError) as caught:
        Hall.load(gate, state_dir=gate.parent / "state")
    assert caught.value.location == "approvals.in_band"
    assert caught.value.file is not None and caught.value.file.endswith("hall.yaml")


# -- 2026-07-28: the sealed request state ----------------------------------------------------------


async def _first_round(client: Client, arguments: dict[str, Any]) -> types.InputRequiredResult:
    first = await client.session.call_tool("wipe", arguments, allow_input_required=True)
    assert isinstance(first, types.InputRequiredResult), first
    assert first.input_requests and "approval" in first.input_requests
    return first


_YES = {"approval": types.ElicitResult(action="accept", content={"approve": True})}


async def test_modern_state_is_sealed_and_single_use(gate: Path) -> None:
    target = doomed(gate)
    async with connect(gate, "auto", elicit=Asker()) as (client, gateway):
        first = await _first_round(client, {"path": target.name})
        pending = gateway.hall.approvals.store.list(["pending"])  # type: ignore[union-attr]
        assert len(pending) == 1
        apr = pending[0].approval_id
        assert first.request_state and apr not in first.request_state, "the id is encrypted"

        done = await client.session.call_tool(
            "wipe", {"path": target.name}, input_responses=_YES, request_state=first.request_state
        )
        assert isinstance(done, types.CallToolResult) and done.is_error is not True
        assert not target.exists()

        target.write_text("back again\n")
        replay = await client.session.call_tool(
            "wipe", {"path": target.name}, input_responses=_YES, request_state=first.request_state
        )
        assert isinstance(replay, types.CallToolResult)
        denial(replay, APPROVAL_INVALID_CODE)
        assert "already used" in replay.structured_content["deny_message"]  # type: ignore[index]
        assert target.exists(), "a replayed approval runs nothing"
    assert steps(gate, apr) == ["proposed", "approved", "executed", "returned", "refused"]
    assert [r["status"] for r in receipts(gate) if r["kind"] == "outcome"] == ["ok"]
    assert_chain_ok(gate)


async def test_modern_forged_or_moved_state_is_rejected(gate: Path) -> None:
    target, other = doomed(gate), doomed(gate, "other.txt")
    async with connect(gate, "auto", elicit=Asker()) as (client, gateway):
        first = await _first_round(client, {"path": target.name})
        apr = gateway.hall.approvals.store.list(["pending"])[0].approval_id  # type: ignore[union-attr]
        tampered = first.request_state[:-2] + ("AA" if first.request_state[-2:] != "AA" else "BB")  # type: ignore[index]
        for state, arguments in [
            (apr, {"path": target.name}),  # the bare id, unsealed: a client forging "approved"
            ("v1.forged", {"path": target.name}),
            (tampered, {"path": target.name}),
            (first.request_state, {"path": other.name}),  # sealed for other arguments
        ]:
            with pytest.raises(MCPError) as caught:
                await client.session.call_tool(
                    "wipe", arguments, input_responses=_YES, request_state=state
                )
            assert caught.value.error.code == -32602
            assert caught.value.error.message == "Invalid or expired requestState"
        assert target.exists() and other.exists()
        still = gateway.hall.approvals.store.get(apr)  # type: ignore[union-attr]
        assert still is not None and still.status == "pending", "nothing was approved"


# -- out of band ---------------------------------------------------------------------------------


@ERAS
async def test_out_of_band_cli_approval_runs_the_identical_retry_once(
    tmp_path: Path, mode: str
) -> None:
    """Claude Desktop's case: no elicitation; the operator approves with the CLI."""
    demo = copy_hall(REPO, tmp_path / "demo")
    target = demo / "workspace" / "scratch" / "doomed.txt"
    target.write_text("delete me\n")
    call = {"path": str(target)}  # absolute: under the workspace however paths resolve
    async with connect(demo, mode) as (client, _):
        held = await client.call_tool("delete_file", call)
        apr = held_id(held)
        assert held.structured_content["approval_expires_at"]  # type: ignore[index]
        # The model is told a human decides and the id to give the user, not the command.
        told = held.content[0].text  # type: ignore[union-attr]
        assert apr in told and "human operator" in told and "pyhall" not in told
        assert gov(held)["approval"]["waiting_for"] == "a human operator"
        assert "pyhall" not in json.dumps(gov(held))

        again = await client.call_tool("delete_file", call)
        assert held_id(again) == apr, "an identical retry waits on the same approval"

        if mode == "legacy":  # (the listing does not depend on the era: once is enough)
            code, listed = await pyhall(demo, "list")
            assert code == 0 and listed["count"] == 1
            item = listed["approvals"][0]
            assert item["approval_id"] == apr and item["status"] == "pending"
            assert item["tenant_id"] == "demo-agent" and item["tool"] == "delete_file"
            # A declared path argument is shown as the envelope check resolves it.
            resolved = "resolves to: <hall>/workspace/scratch/doomed.txt"
            assert item["arguments_summary"] == {"path": f"{json.dumps(str(target))} ({resolved})"}
            assert "pol.demo.delete-needs-human" in item["reason"]
            assert 0 < item["expires_in_s"] <= 900

        code, approved = await pyhall(demo, "approve", apr, "--note", "cleanup", "--by", "alice")
        assert code == 0, approved
        assert approved["approval"]["status"] == "approved"
        # The running gateway holds the log; the command waited for its sweep to receipt it.
        assert approved["receipts"]["by_gateway"] is True, approved["receipts"]
        assert steps(demo, apr) == ["proposed", "approved"]
        assert target.exists(), "approving runs nothing by itself"

        ran = await client.call_tool("delete_file", call)
        assert ran.is_error is not True, ran
        assert ran.structured_content == {"deleted": "scratch/doomed.txt"}
        assert not target.exists()

        target.write_text("delete me too\n")
        second = await client.call_tool("delete_file", call)
        new = held_id(second)
        assert new != apr, "a used approval never runs a second time"
        assert target.exists()

        if mode == "legacy":
            code, listed = await pyhall(demo, "list")
            assert [i["approval_id"] for i in listed["approvals"]] == [new]
            code, shown = await pyhall(demo, "show", apr)
            assert shown["approval"]["status"] == "executed"
            assert (shown["approval"]["decided_by"], shown["approval"]["note"]) == (
                "alice",
                "cleanup",
            )
    assert steps(demo, apr) == ["proposed", "approved", "executed", "returned"]
    approved_step = next(r for r in receipts(demo) if r.get("step") == "approved")
    assert (approved_step["decided_by"], approved_step["note"]) == ("alice", "cleanup")
    assert steps(demo, new) == ["proposed"]
    assert [r["status"] for r in receipts(demo) if r["kind"] == "outcome"] == ["ok"]
    assert_chain_ok(demo)


async def test_the_operator_sees_a_lossy_summary_flagged_and_can_see_it_all(gate: Path) -> None:
    target = doomed(gate)
    long = "./" * 200 + target.name
    async with connect(gate, "legacy") as (client, _):
        apr = held_id(await client.call_tool("wipe", {"path": long}))
    code, listed = await pyhall(gate, "list")
    item = listed["approvals"][0]
    assert (
        item["summary_lossy"] is True and "characters hidden]" in item["arguments_summary"]["path"]
    )
    assert "arguments" not in item
    code, shown = await pyhall(gate, "show", apr, "--full")
    assert code == 0 and shown["approval"]["arguments"] == {"path": long}
    where = ["--hall", str(gate), "--state-dir", str(gate.parent / "state")]
    for command, part in [
        (["list"], f"pyhall approvals show {apr} --full"),
        (["show", apr], "summary is abridged"),
        (["show", apr, "--full"], json.dumps(long)),
    ]:
        done = await anyio.run_process([sys.executable, "-c", _CLI, "approvals", *command, *where])
        assert part in done.stdout.decode(), (command, done.stdout.decode())


async def test_list_and_show_say_env_data_label_and_supervisor_level(gate: Path) -> None:
    async with connect(gate, "legacy", data_label="INTERNAL") as (client, _):
        apr = held_id(await client.call_tool("wipe", {"path": doomed(gate).name}))
    code, shown = await pyhall(gate, "show", apr)
    item = shown["approval"]
    assert code == 0
    assert (item["env"], item["data_label"]) == ("dev", "INTERNAL")
    assert item["supervisor_level"]
    where = ["--hall", str(gate), "--state-dir", str(gate.parent / "state")]
    for command in (["list"], ["show", apr]):
        done = await anyio.run_process([sys.executable, "-c", _CLI, "approvals", *command, *where])
        text = done.stdout.decode()
        assert "env dev, data label INTERNAL" in text, text
        assert f"supervisor level {item['supervisor_level']}" in text, text


async def test_altered_arguments_do_not_match(gate: Path) -> None:
    first, second = doomed(gate, "a.txt"), doomed(gate, "b.txt")
    async with connect(gate, "legacy") as (client, gateway):
        apr = held_id(await client.call_tool("wipe", {"path": first.name}))
        gateway.hall.approvals.store.decide(apr, "approved", by="operator:test")  # type: ignore[union-attr]
        other = held_id(await client.call_tool("wipe", {"path": second.name}))
        assert other != apr
        assert first.exists() and second.exists()
        ran = await client.call_tool("wipe", {"path": first.name})
        assert ran.structured_content == {"deleted": first.name}
    assert not first.exists() and second.exists()
    assert steps(gate, apr) == ["proposed", "approved", "executed", "returned"]
    assert_chain_ok(gate)


async def test_editing_only_the_rules_invalidates_an_approval(gate: Path) -> None:
    target = doomed(gate)
    async with connect(gate, "legacy") as (client, gateway):
        apr = held_id(await client.call_tool("wipe", {"path": target.name}))
        gateway.hall.approvals.store.decide(apr, "approved", by="operator:test")  # type: ignore[union-attr]
        rules = gate / "rules" / "test.yaml"
        rules.write_text(  # another rule, for a capability nobody calls here
            rules.read_text()
            + "\n  - rule_id: rr.test.added\n    match: {capability_id: cap.test.none}\n"
        )
        assert await gateway.reload()
        again = held_id(await client.call_tool("wipe", {"path": target.name}))
        assert again != apr, "approved under other rules: asked anew"
    assert target.exists()
    assert steps(gate, apr) == ["proposed", "approved"]


async def test_expired_approval_is_held_again(gate: Path) -> None:
    target = doomed(gate)
    async with connect(gate, "legacy") as (client, gateway):
        store = gateway.hall.approvals.store  # type: ignore[union-attr]
        apr = held_id(await client.call_tool("wipe", {"path": target.name}))
        store.decide(apr, "approved", by="operator:test")
        store.clock = lambda: time.time() + 901  # the agent retries too late
        new = held_id(await client.call_tool("wipe", {"path": target.name}))
        assert new != apr
        assert target.exists()
    assert steps(gate, apr) == ["proposed", "approved", "expired"]
    assert_chain_ok(gate)


async def test_operator_denial_refuses_retries_and_is_receipted_without_a_gateway(
    gate: Path,
) -> None:
    target = doomed(gate)
    async with connect(gate, "legacy") as (client, _):
        apr = held_id(await client.call_tool("wipe", {"path": target.name}))
    code, denied = await pyhall(gate, "deny", apr, "--note", "not today")
    assert code == 0 and denied["approval"]["status"] == "denied"
    assert denied["receipts"]["written"] == 1, "no gateway runs: the CLI receipts it itself"
    assert steps(gate, apr) == ["proposed", "denied"]
    assert_chain_ok(gate)
    code, again = await pyhall(gate, "approve", apr)
    assert code == 1 and "already denied" in again["error"]

    async with connect(gate, "auto") as (client, _):
        refused = await client.call_tool("wipe", {"path": target.name})
        summary = denial(refused, APPROVAL_DENIED_CODE)
        assert "not today" in summary["deny_message"]
        other = doomed(gate, "other.txt")
        held_id(await client.call_tool("wipe", {"path": other.name}))
    assert target.exists()
    assert_chain_ok(gate)


async def test_operator_can_revoke_an_approval_before_it_runs(gate: Path) -> None:
    target = doomed(gate)
    async with connect(gate, "legacy") as (client, _):
        apr = held_id(await client.call_tool("wipe", {"path": target.name}))
    code, _ = await pyhall(gate, "approve", apr, "--by", "alice")
    assert code == 0
    code, revoked = await pyhall(gate, "deny", apr, "--by", "bob", "--note", "wrong file")
    assert code == 0, revoked
    assert revoked["approval"]["status"] == "denied"
    assert revoked["approval"]["approved_by"] == "alice"
    async with connect(gate, "legacy") as (client, _):
        refused = await client.call_tool("wipe", {"path": target.name})
        assert "wrong file" in denial(refused, APPROVAL_DENIED_CODE)["deny_message"]
    assert target.exists(), "the revoked approval ran nothing"
    assert steps(gate, apr) == ["proposed", "approved", "denied"]
    step = next(r for r in receipts(gate) if r.get("step") == "denied")
    assert (step["revoked"], step["approved_by"], step["decided_by"]) == (True, "alice", "bob")
    assert_chain_ok(gate)


def _hold_the_log(hall: Path, seconds: float) -> threading.Thread:
    """Another short-lived process's hold on the receipt log (a ``pyhall call``)."""
    from pyhall_mcp.audit import ReceiptLog

    log = ReceiptLog.open(layout_of(hall))
    thread = threading.Thread(target=lambda: (time.sleep(seconds), log.close()))
    thread.start()
    return thread


async def test_the_cli_waits_for_a_briefly_held_log_and_receipts(gate: Path) -> None:
    async with connect(gate, "legacy") as (client, _):
        apr = held_id(await client.call_tool("wipe", {"path": doomed(gate).name}))
    holder = _hold_the_log(gate, 1.5)
    code, denied = await pyhall(gate, "deny", apr)
    holder.join()
    assert code == 0 and denied["receipts"]["written"] == 1, denied["receipts"]
    assert steps(gate, apr) == ["proposed", "denied"]
    assert_chain_ok(gate)


async def test_the_cli_says_when_a_decision_is_not_receipted_yet(gate: Path) -> None:
    async with connect(gate, "legacy") as (client, _):
        apr = held_id(await client.call_tool("wipe", {"path": doomed(gate).name}))
    holder = _hold_the_log(gate, 3.0)
    where = ["--hall", str(gate), "--state-dir", str(gate.parent / "state"), "--json"]
    quick = "import pyhall_mcp.approvals as a; a.SWEEP_INTERVAL_S = 0.2; " + _CLI
    done = await anyio.run_process([sys.executable, "-c", quick, "approvals", "deny", apr, *where])
    holder.join()
    receipts_ = json.loads(done.stdout)["receipts"]
    assert receipts_["written"] == 0 and receipts_["by_gateway"] is False
    assert "NOT receipted yet" in receipts_["message"]
    assert steps(gate, apr) == ["proposed"]
    # ... and a gateway's start receipts it, with no call at all.
    async with connect(gate, "legacy"):
        for _ in range(50):
            if steps(gate, apr) == ["proposed", "denied"]:
                break
            await anyio.sleep(0.1)
    assert steps(gate, apr) == ["proposed", "denied"]
    assert_chain_ok(gate)


async def test_a_stopping_gateway_receipts_the_last_decisions(gate: Path) -> None:
    async with connect(gate, "legacy") as (client, gateway):
        apr = held_id(await client.call_tool("wipe", {"path": doomed(gate).name}))
        gateway.hall.approvals.store.decide(apr, "approved", by="operator:late")  # type: ignore[union-attr]
        # stopped before the next periodic sweep (5 s)
    assert steps(gate, apr) == ["proposed", "approved"]
    assert_chain_ok(gate)


def test_a_damaged_store_fails_check_validate_and_start_as_configuration(
    gate: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3 naming the file and the fix, everywhere: ``--check`` must not say OK about
    a hall whose gateway will refuse to start."""
    from pyhall_mcp.cli import main as pyhall_main
    from pyhall_mcp.gateway import main as gateway_main

    state = gate.parent / "state"
    state.mkdir()
    damaged = state / "approvals.db"
    damaged.write_bytes(b"this is not a database" * 300)
    where = ["--hall", str(gate), "--state-dir", str(state)]
    launch = [*where, "--floor", "require_worker_attestation=false"]
    assert gateway_main([*launch, "--check"]) == 3
    assert gateway_main(launch) == 3
    said = capsys.readouterr().err
    assert said.count(f"{damaged}: cannot open the approvals store: file is not a database") == 2
    assert "(fix: move the damaged file aside" in said
    assert pyhall_main(["approvals", "list", *where]) == 3
    assert "move the damaged file aside" in capsys.readouterr().err

    from pyhall_mcp.cli.validate import check_hall

    (gate / ".pyhall").mkdir()
    (gate / ".pyhall" / "approvals.db").write_bytes(b"this is not a database" * 300)
    found = [p for p in check_hall(gate) if "approvals.db" in str(p.file)]
    assert (
        len(found) == 1 and found[0].severity == "error" and "move the damaged" in str(found[0].fix)
    )


def test_cli_errors_are_clean(gate: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyhall_mcp.cli import main

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        state = str(gate.parent / "state")
        code = main(["approvals", *args, "--hall", str(gate), "--state-dir", state, "--json"])
        return code, json.loads(capsys.readouterr().out)

    code, listed = run("list")
    assert (code, listed["count"]) == (0, 0), "no store yet: nothing waits (and none is created)"
    assert not layout_of(gate).approvals_db.exists()
    code, out = run("approve", "apr_" + "z" * 24)
    assert code == 1 and "no approval" in out["error"]
    code, out = run("show", "apr_" + "z" * 24)
    assert code == 1 and "no approval" in out["error"]
    code, out = run("approve", "rm -rf /")
    assert code == 2 and "not an approval id" in out["error"]


async def test_blast_gate_hold_is_approvable(gate: Path) -> None:
    """DENY_REQUIRES_HUMAN (the blast gate) goes through the same approvals."""
    rules = gate / "rules" / "test.yaml"
    rules.write_text(
        rules.read_text().replace(
            "      required_controls_suggested: [ctrl.obs.audit-log-append-only]\n",
            "      required_controls_suggested: [ctrl.obs.audit-log-append-only]\n"
            "      max_blast_score: 1\n",
            1,
        )
    )
    async with connect(gate, "legacy") as (client, gateway):
        held = await client.call_tool("echo", {"text": "hi"})
        apr = held_id(held)
        assert held.structured_content["deny_code"] == "DENY_REQUIRES_HUMAN"  # type: ignore[index]
        gateway.hall.approvals.store.decide(apr, "approved", by="operator:test")  # type: ignore[union-attr]
        ran = await client.call_tool("echo", {"text": "hi"})
        assert ran.structured_content == {"text": "hi"}
    assert steps(gate, apr) == ["proposed", "approved", "executed", "returned"]


async def test_no_tool_can_resolve_approvals(gate: Path) -> None:
    """The model sees only enrolled workers; approving is the operator's or the person's."""
    async with connect(gate, "legacy") as (client, gateway):
        listed = await client.list_tools()
        names = {t.name for t in listed.tools}
        assert names == {r.tool.name for r in gateway.hall.tools() if r.tool}
        assert not any("approv" in n for n in names)


async def test_dry_run_of_a_held_call_stores_nothing(gate: Path) -> None:
    target = doomed(gate)
    asker = Asker()
    async with connect(gate, "legacy", elicit=asker) as (client, gateway):
        meta = {"dev.pyhall/dry_run": True, META_CORRELATION_ID: "dry-1"}
        result = await client.call_tool("wipe", {"path": target.name}, meta=meta)
        assert result.is_error is True
        assert gateway.hall.approvals.store.list() == []  # type: ignore[union-attr]
        assert asker.messages == [], "a dry run asks nobody"
        # ... and names no approval, which nobody could approve
        assert gov(result)["pending_approval_id"] is None
        text = result.content[0].text  # type: ignore[union-attr]
        assert "would be held" in text and "apr_" not in text
    assert target.exists()


async def test_approvals_survive_a_reload(gate: Path) -> None:
    target = doomed(gate)
    async with connect(gate, "legacy") as (client, gateway):
        apr = held_id(await client.call_tool("wipe", {"path": target.name}))
        desk = gateway.hall.approvals
        assert await gateway.reload()
        assert gateway.hall.approvals is desk, "the new hall keeps the store"
        desk.store.decide(apr, "approved", by="operator:test")  # type: ignore[union-attr]
        ran = await client.call_tool("wipe", {"path": target.name})
        assert ran.structured_content == {"deleted": target.name}
    assert steps(gate, apr) == ["proposed", "approved", "executed", "returned"]
    assert_chain_ok(gate)


async def test_an_approved_call_whose_approval_cannot_be_recorded_leaves_a_not_run_outcome(
    gate: Path,
) -> None:
    """The approved retry's decision is receipted "allowed"; if recording the approval's
    use then fails, the worker does not run and the log says so beside the decision."""
    target = doomed(gate)
    async with connect(gate, "legacy") as (client, gateway):
        desk = gateway.hall.approvals
        assert desk is not None
        apr = held_id(await client.call_tool("wipe", {"path": target.name}))
        desk.store.decide(apr, "approved", by="operator:test")

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the approvals store is gone")

        desk.record = broken  # type: ignore[method-assign]
        failed = await client.call_tool("wipe", {"path": target.name})
        assert failed.is_error is True
    assert target.exists(), "the worker did not run"
    [allowed] = [d for d in decisions(gate, apr) if d["decision"] == "allowed"]
    outcomes = [r for r in receipts(gate) if r["kind"] == "outcome"]
    assert [o["status"] for o in outcomes if o["decision_receipt_id"] == allowed["receipt_id"]] == [
        "error"
    ]
    assert_chain_ok(gate)
