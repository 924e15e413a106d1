"""The approvals store and its pure parts: binding, summary, lifecycle, sweep, verdicts."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pyhall_mcp.approvals import (
    Approval,
    ApprovalStore,
    approval_message,
    approval_schema,
    binding_digest,
    check_id,
    summarize_arguments,
    sweep,
    verdict_of,
)
from pyhall_mcp.errors import ApprovalError

_CALL: dict[str, Any] = {
    "tenant_id": "tenant-a",
    "env": "dev",
    "data_label": "PUBLIC",
    "tool": "delete_file",
    "worker_id": "org.demo.file-deleter",
    "arguments": {"path": "notes/a.txt", "force": True},
    "policy_version": "sha256:" + "1" * 64,
    "hold_code": "DENY_REQUIRES_HUMAN_APPROVAL",
}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _approval(clock: Clock, n: int = 0, *, ttl_s: int = 900, **changes: Any) -> Approval:
    base = {
        "approval_id": f"apr_{'x' * 20}{n:04d}",
        "binding": binding_digest(**_CALL),
        "status": "pending",
        "tenant_id": "tenant-a",
        "tool": "delete_file",
        "worker_id": "org.demo.file-deleter",
        "arguments_digest": "sha256:" + "2" * 64,
        "arguments_summary": {"path": '"notes/a.txt"'},
        "reason_code": "DENY_REQUIRES_HUMAN_APPROVAL",
        "reason": "Deleting needs a person.",
        "policy_version": _CALL["policy_version"],
        "supervisor_level": "gatekeeper",
        "correlation_id": "corr-1",
        "decision_id": "dec-1",
        "created_at_us": int(clock.now * 1e6),
        "expires_at_us": int((clock.now + ttl_s) * 1e6),
    }
    return Approval(**{**base, **changes})


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> ApprovalStore:
    opened = ApprovalStore.open(tmp_path / "state" / "approvals.db", clock=clock)
    yield opened
    opened.close()


# -- binding and summary --------------------------------------------------------------------------


def test_binding_is_the_exact_call() -> None:
    same = binding_digest(**{**_CALL, "arguments": {"force": True, "path": "notes/a.txt"}})
    assert same == binding_digest(**_CALL), "key order does not matter (canonical JSON)"
    for key, other in [
        ("tenant_id", "tenant-b"),
        ("env", "prod"),
        ("data_label", "RESTRICTED"),
        ("tool", "read_file"),
        ("worker_id", "org.demo.other"),
        ("arguments", {"path": "notes/b.txt", "force": True}),
        ("arguments", {"path": "notes/a.txt", "force": False}),
        ("policy_version", "sha256:" + "3" * 64),
        ("hold_code", "DENY_REQUIRES_HUMAN"),
    ]:
        assert binding_digest(**{**_CALL, key: other}) != binding_digest(**_CALL), key


def test_summary_redacts_secrets_and_neutralises_text() -> None:
    schema = {"properties": {"pin": {"type": "string", "writeOnly": True}, "code": {}}}
    summary = summarize_arguments(
        {
            "api_key": "sk-live-123",
            "Password": "hunter2",
            "pin": "1234",
            "auth_header": "Bearer abc",
            "path": "a\x1b[31mred\u202etxt.exe",
            "long": "y" * 500,
            "nested": {"a": 1, "b": 2},
            "items": [1, 2, 3],
            "n": 3,
            "flag": False,
            "nothing": None,
        },
        schema,
    )
    for key in ("api_key", "Password", "pin", "auth_header"):
        assert summary[key] == "[redacted]"
    joined = " ".join(summary.values())
    for secret in ("sk-live-123", "hunter2", "1234", "Bearer"):
        assert secret not in joined
    assert "\x1b" not in summary["path"] and "\u202e" not in summary["path"]
    assert "\\u001b" in summary["path"] and "\\u202e" in summary["path"]
    assert len(summary["long"]) == 160 and "…" in summary["long"]
    assert summary["long"].startswith('"y') and summary["long"].endswith('y"')
    assert summary["nested"] == "{object with 2 keys}"
    assert summary["items"] == "[list of 3 items]"
    assert (summary["n"], summary["flag"], summary["nothing"]) == ("3", "false", "null")


def test_long_paths_keep_their_file_name() -> None:
    path = "/srv/" + "deep/" * 60 + "report-2026.pdf"
    shown = summarize_arguments({"path": path})["path"]
    assert len(shown) == 160 and shown.startswith('"/srv/deep/') and "…" in shown
    assert shown.endswith('report-2026.pdf"')


def test_summary_caps_the_number_of_arguments() -> None:
    summary = summarize_arguments({f"k{i:02d}": i for i in range(30)})
    assert len(summary) == 21 and summary["..."] == "10 more arguments"


def test_approval_ids_are_checked() -> None:
    assert check_id("apr_" + "A" * 24) == "apr_" + "A" * 24
    for bad in ("apr_short", "rcpt_" + "a" * 24, "apr_" + "a" * 20 + "; rm", "", "apr_" + "é" * 20):
        with pytest.raises(ApprovalError):
            check_id(bad)


# -- the store -----------------------------------------------------------------------------------


def test_store_file_is_private_and_round_trips(store: ApprovalStore, clock: Clock) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    approval = _approval(clock)
    store.add(approval)
    assert store.get(approval.approval_id) == approval
    assert store.get("apr_" + "n" * 24) is None
    assert store.find(approval.binding, "pending") == approval
    assert store.list(["pending"]) == [approval]


def test_approve_then_consume_exactly_once(store: ApprovalStore, clock: Clock) -> None:
    approval = _approval(clock)
    store.add(approval)
    assert not store.consume(approval.approval_id, approval.binding), "pending is not approved"
    decided = store.decide(approval.approval_id, "approved", by="operator:alice", note="ok")
    assert (decided.status, decided.decided_by, decided.note) == (
        "approved",
        "operator:alice",
        "ok",
    )
    assert not store.consume(approval.approval_id, "sha256:" + "9" * 64), "another call's binding"
    assert store.consume(approval.approval_id, approval.binding)
    assert not store.consume(approval.approval_id, approval.binding), "single use"
    used = store.get(approval.approval_id)
    assert used is not None and used.status == "executed" and used.used_at_us
    with pytest.raises(ApprovalError, match="already used"):
        store.decide(approval.approval_id, "approved", by="operator:alice")


def test_decisions_are_final_and_checked(store: ApprovalStore, clock: Clock) -> None:
    approval = _approval(clock)
    store.add(approval)
    store.decide(approval.approval_id, "denied", by="operator:bob", note="no \x07way")
    with pytest.raises(ApprovalError, match="already denied"):
        store.decide(approval.approval_id, "approved", by="operator:mallory")
    assert store.get(approval.approval_id).note == "no \\u0007way"  # type: ignore[union-attr]
    with pytest.raises(ApprovalError, match="no approval"):
        store.decide("apr_" + "u" * 24, "approved", by="x")
    with pytest.raises(ApprovalError, match="not a decision"):
        store.decide(approval.approval_id, "executed", by="x")  # type: ignore[arg-type]


def test_expiry_by_the_clock(store: ApprovalStore, clock: Clock) -> None:
    pending, approved = _approval(clock, 1), _approval(clock, 2)
    store.add(pending)
    store.add(approved)
    store.decide(approved.approval_id, "approved", by="operator:alice")
    clock.now += 901
    with pytest.raises(ApprovalError, match="expired"):
        store.decide(pending.approval_id, "approved", by="operator:alice")
    assert not store.consume(approved.approval_id, approved.binding), (
        "an expired approval runs nothing"
    )
    assert store.find(approved.binding, "approved") is None
    assert store.get(pending.approval_id).effective_status(store.now_us()) == "expired"  # type: ignore[union-attr]


def test_sweep_receipts_decisions_then_expiries_once(store: ApprovalStore, clock: Clock) -> None:
    bodies: list[dict[str, Any]] = []
    approved, stale = _approval(clock, 1), _approval(clock, 2, ttl_s=10)
    for approval in (approved, stale):
        store.add(approval)
        store.mark_receipted(approval.approval_id, "pending")  # "proposed" was receipted
    store.decide(approved.approval_id, "approved", by="operator:alice", note="go")
    assert sweep(store, bodies.append) == 1
    assert [(b["step"], b["decided_by"], b["note"]) for b in bodies] == [
        ("approved", "operator:alice", "go")
    ]
    assert bodies[0]["kind"] == "approval" and bodies[0]["denial"] is False
    assert "arguments" not in bodies[0] and bodies[0]["arguments_digest"]
    assert sweep(store, bodies.append) == 0, "a receipted step is not receipted again"
    clock.now += 11
    assert sweep(store, bodies.append) == 1
    assert (bodies[-1]["step"], bodies[-1]["approval_id"], bodies[-1]["denial"]) == (
        "expired",
        stale.approval_id,
        True,
    )


def test_an_unreceipted_approval_is_receipted_before_it_expires(
    store: ApprovalStore, clock: Clock
) -> None:
    approval = _approval(clock, ttl_s=5)
    store.add(approval)
    store.mark_receipted(approval.approval_id, "pending")
    store.decide(approval.approval_id, "approved", by="operator:alice")
    clock.now += 6  # the operator approved, nobody retried, the gateway sweeps late
    bodies: list[dict[str, Any]] = []
    sweep(store, bodies.append)
    assert [b["step"] for b in bodies] == ["approved", "expired"]


def test_two_connections_one_run(tmp_path: Path, clock: Clock) -> None:
    """Gateway and CLI share the file; racing consumers get exactly one run."""
    path = tmp_path / "approvals.db"
    gateway, cli = ApprovalStore.open(path, clock=clock), ApprovalStore.open(path, clock=clock)
    try:
        approval = _approval(clock)
        gateway.add(approval)
        cli.decide(approval.approval_id, "approved", by="operator:alice")
        stores = [ApprovalStore.open(path, clock=clock) for _ in range(6)]
        wins: list[bool] = []
        barrier = threading.Barrier(len(stores))

        def consume(s: ApprovalStore) -> None:
            barrier.wait()
            wins.append(s.consume(approval.approval_id, approval.binding))

        threads = [threading.Thread(target=consume, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in stores:
            s.close()
        assert sorted(wins) == [False] * 5 + [True]
    finally:
        gateway.close()
        cli.close()


def test_opening_an_unusable_store_is_an_approval_error(tmp_path: Path) -> None:
    bad = tmp_path / "approvals.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ApprovalError, match=r"approvals\.db"):
        ApprovalStore.open(bad)


# -- what the person sees and answers --------------------------------------------------------------


def test_message_names_tool_arguments_reason_and_expiry(clock: Clock) -> None:
    approval = _approval(clock)
    text = approval_message(approval, int(clock.now * 1e6))
    for part in ("delete_file", "tenant-a", '"notes/a.txt"', "Deleting needs a person.", "15 min"):
        assert part in text, part
    assert approval.expires_at in text and approval.approval_id in text
    schema = approval_schema()
    assert schema["required"] == ["approve"]
    assert schema["properties"]["approve"]["type"] == "boolean"
    assert all(p.get("type") in ("boolean", "string") for p in schema["properties"].values())


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (SimpleNamespace(action="accept", content={"approve": True}), "approved"),
        (SimpleNamespace(action="accept", content={"approve": False}), "denied"),
        (SimpleNamespace(action="accept", content={"approve": "true"}), "denied"),
        (SimpleNamespace(action="accept", content=None), "denied"),
        (SimpleNamespace(action="decline", content=None), "denied"),
        (SimpleNamespace(action="cancel", content=None), "cancelled"),
        (SimpleNamespace(action="whatever", content={"approve": True}), "cancelled"),
        (None, "cancelled"),
    ],
)
def test_only_an_explicit_yes_approves(answer: Any, status: str) -> None:
    assert verdict_of(answer)[0] == status


def test_verdict_keeps_the_note() -> None:
    answer = SimpleNamespace(action="accept", content={"approve": True, "note": "once only"})
    assert verdict_of(answer) == ("approved", "once only")


@pytest.mark.parametrize(
    ("env", "in_band", "allowed"),
    [
        ("dev", None, True),
        ("stage", None, False),
        ("prod", None, False),
        ("edge", None, False),
        ("dev", False, False),
        ("prod", True, True),
    ],
)
def test_in_band_approval_only_in_dev_unless_the_hall_says(
    env: str, in_band: bool | None, allowed: bool
) -> None:
    from pyhall_mcp.hall import HallSettings

    settings = HallSettings.model_validate({"env": env, "approvals": {"in_band": in_band}})
    assert settings.in_band_approval is allowed
