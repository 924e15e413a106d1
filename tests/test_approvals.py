"""The approvals store and its pure parts: binding, summary, lifecycle, sweep, verdicts."""

from __future__ import annotations

import json
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
    is_secret_name,
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
    "rules_digest": "sha256:" + "4" * 64,
    "matched_rule_id": "rr.demo.delete",
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
        "env": "dev",
        "data_label": "PUBLIC",
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
        ("rules_digest", "sha256:" + "5" * 64),
        ("matched_rule_id", "rr.demo.other"),
    ]:
        assert binding_digest(**{**_CALL, key: other}) != binding_digest(**_CALL), key


@pytest.mark.parametrize(
    "arguments",
    [
        {"x" * 40 + "A" + "y" * 40: "harmless", "x" * 40 + "B" + "y" * 40: "rm -rf /"},
        {"a\x00": "1", "a\\u0000": "2"},  # both shown as a\u0000
    ],
)
def test_argument_names_that_shorten_alike_are_all_shown_and_flagged(
    arguments: dict[str, str],
) -> None:
    summary = summarize_arguments(arguments)
    assert len(summary.shown) == 2 and set(summary.shown.values()) == {
        json.dumps(v) for v in arguments.values()
    }
    assert summary.lossy


def test_summary_redacts_secrets_and_neutralises_text() -> None:
    schema = {"properties": {"pin": {"type": "string", "writeOnly": True}, "code": {}}}
    summary = summarize_arguments(
        {
            "api_key": "sk-live-123",
            "Password": "hunter2",
            "pin": "1234",
            "authToken": "Bearer abc",
            "path": "a\x1b[31mred\u202etxt.exe",
            "nested": {"a": 1, "b": {"client_secret": "s3cr3t", "op": "DROP"}},
            "items": [1, {"token": "t0k"}],
            "n": 3,
            "flag": False,
            "nothing": None,
        },
        schema,
    )
    shown = summary.shown
    for key in ("api_key", "Password", "pin", "authToken"):
        assert shown[key] == "[redacted]"
    joined = " ".join(shown.values())
    for secret in ("sk-live-123", "hunter2", "1234", "Bearer", "s3cr3t", "t0k"):
        assert secret not in joined
    assert summary.lossy, "a redaction hides something: the summary says so"
    assert "\x1b" not in shown["path"] and "\u202e" not in shown["path"]
    assert "\\u001b" in shown["path"] and "\\u202e" in shown["path"]
    # Nested values are shown, not counted: a person sees the DROP.
    assert shown["nested"] == '{"a": 1, "b": {"client_secret": "[redacted]", "op": "DROP"}}'
    assert shown["items"] == '[1, {"token": "[redacted]"}]'
    assert (shown["n"], shown["flag"], shown["nothing"]) == ("3", "false", "null")


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "secret",
        "token",
        "api_key",
        "apiKey",
        "api-key",
        "authorization",
        "db_password",
        "client_secret",
        "access_token",
        "authToken",
        "private_key",
        "cookie",
    ],
)
def test_secret_names_are_redacted(name: str) -> None:
    assert is_secret_name(name)
    assert summarize_arguments({name: "x"}).shown[name] == "[redacted]"


@pytest.mark.parametrize(
    "name",
    [
        "author",
        "max_tokens",
        "maxTokens",
        "session",
        "session_id",
        "tokenizer",
        "auth_mode",
        "secretary",
        "path",
        "passage",
        "keyword",
    ],
)
def test_names_that_merely_contain_a_secret_word_stay_visible(name: str) -> None:
    assert not is_secret_name(name)
    summary = summarize_arguments({name: "rm -rf /"})
    assert summary.shown[name] == '"rm -rf /"' and not summary.lossy


def test_clipping_is_said_in_place() -> None:
    path = "/srv/" + "deep/" * 100 + "report-2026.pdf"
    summary = summarize_arguments({"path": path})
    shown = summary.shown["path"]
    hidden = len(path) + 2 - 240  # the JSON quotes count
    assert f"…[{hidden} characters hidden]…" in shown
    assert shown.startswith('"/srv/deep/') and shown.endswith('report-2026.pdf"')
    assert summary.lossy
    short = summarize_arguments({"path": "notes/a.txt"})
    assert short.shown == {"path": '"notes/a.txt"'} and not short.lossy


def test_paths_are_shown_normalised_and_resolved() -> None:
    """The reviewer's case: ``./`` padding hid a ``../`` that redirects the delete."""
    path = "scratch/" + "./" * 45 + "../notes/" + "./" * 45 + "meeting.txt"
    real = "/hall/workspace/notes/meeting.txt"
    shown = summarize_arguments({"path": path}, paths={"path": real}).shown["path"]
    assert "(normalised: notes/meeting.txt; resolves to: /hall/workspace/notes/meeting.txt)" in (
        shown
    )
    lost = summarize_arguments({"path": "../x"}, paths={"path": None}).shown["path"]
    assert lost == '"../x" (cannot be resolved)'
    # Undeclared strings are normalised only when that changes something but a slash.
    assert (
        summarize_arguments({"dir": "a/./b/../c"}).shown["dir"] == '"a/./b/../c" (normalised: a/c)'
    )
    for plain in ("rm -rf /", "https://x.example/a/../b", "notes/a.txt"):
        assert summarize_arguments({"v": plain}).shown["v"] == json.dumps(plain)


def test_schema_properties_come_first_and_extras_are_capped() -> None:
    schema = {"properties": {"path": {"type": "string"}}}
    decoys = {f"a{i:03d}": "ok" for i in range(60)}
    summary = summarize_arguments({**decoys, "path": "notes/meeting.txt"}, schema)
    assert next(iter(summary.shown)) == "path", "decoys cannot push a declared argument out"
    assert len(summary.shown) == 51 and summary.shown["..."] == "11 more arguments not shown"
    assert summary.lossy


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


def test_store_keeps_the_exact_arguments_for_the_operator(
    store: ApprovalStore, clock: Clock
) -> None:
    exact = {"path": "scratch/" + "./" * 200 + "x", "api_key": "sk-live-1", "n": 1.5, "é": [None]}
    approval = _approval(clock, arguments=exact, summary_lossy=True)
    store.add(approval)
    got = store.get(approval.approval_id)
    assert got is not None and got.arguments == exact and got.summary_lossy is True
    assert "arguments" not in got.as_dict(), "only --full shows the exact arguments"
    assert got.as_dict(full=True)["arguments"] == exact
    assert got.as_dict()["summary_lossy"] is True


def test_a_store_written_before_gains_the_new_columns(tmp_path: Path, clock: Clock) -> None:
    """An upgrade keeps the approvals already waiting: old rows read with defaults."""
    import sqlite3

    from pyhall_mcp.approvals import _SCHEMA

    path = tmp_path / "approvals.db"
    old = sqlite3.connect(path)
    old.executescript(_SCHEMA)
    old.execute(
        "INSERT INTO approvals (approval_id, binding, status, tenant_id, tool, "
        "arguments_summary, created_at_us, expires_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("apr_" + "o" * 24, "b", "pending", "t", "wipe", "{}", 1, int(clock.now * 1e6) + 10**9),
    )
    old.commit()
    old.close()
    store = ApprovalStore.open(path, clock=clock)
    try:
        got = store.get("apr_" + "o" * 24)
        assert got is not None and got.arguments is None and got.summary_lossy is False
        store.add(_approval(clock, arguments={"a": 1}))
        assert store.get(_approval(clock).approval_id).arguments == {"a": 1}  # type: ignore[union-attr]
    finally:
        store.close()


def test_approve_then_consume_exactly_once(store: ApprovalStore, clock: Clock) -> None:
    approval = _approval(clock, arguments={"path": "notes/a.txt"})
    store.add(approval)
    assert not store.consume(approval.approval_id, approval.binding), "pending is not approved"
    decided = store.decide(approval.approval_id, "approved", by="operator:alice", note="ok")
    assert decided.arguments == {"path": "notes/a.txt"}  # still there to be looked at
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
    shown = used.as_dict()
    assert shown["approved_by"] == "operator:alice" and shown["approved_at"]
    assert used.arguments is None  # kept for the decision, erased once it ran
    with pytest.raises(ApprovalError, match="already used"):
        store.decide(approval.approval_id, "approved", by="operator:alice")


@pytest.mark.parametrize("end", ["denied", "cancelled", "expired"])
def test_the_exact_arguments_are_kept_only_while_a_decision_waits(
    store: ApprovalStore, clock: Clock, end: str
) -> None:
    approval = _approval(clock, arguments={"path": "notes/a.txt"})
    store.add(approval)
    assert store.get(approval.approval_id).arguments == {"path": "notes/a.txt"}
    store.decide(approval.approval_id, end, by="operator:alice")
    assert store.get(approval.approval_id).arguments is None


def test_an_approval_past_its_time_shows_no_arguments_before_any_sweep(
    store: ApprovalStore, clock: Clock
) -> None:
    approval = _approval(clock, arguments={"path": "notes/a.txt"}, ttl_s=60)
    store.add(approval)
    later = int((clock.now + 120) * 1e6)
    shown = store.get(approval.approval_id).as_dict(later, full=True)
    assert shown["status"] == "expired" and shown["arguments"] is None


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


def test_deny_revokes_an_unused_approval_and_is_receipted(
    store: ApprovalStore, clock: Clock
) -> None:
    approval = _approval(clock)
    store.add(approval)
    store.mark_receipted(approval.approval_id, "pending")
    store.decide(approval.approval_id, "approved", by="operator:alice")
    bodies: list[dict[str, Any]] = []
    sweep(store, bodies.append)
    revoked = store.decide(approval.approval_id, "denied", by="operator:bob", note="oops")
    assert (revoked.status, revoked.decided_by) == ("denied", "operator:bob")
    assert revoked.approved_by == "operator:alice" and revoked.approved_at_us is not None
    assert not store.consume(approval.approval_id, approval.binding), "a revoked one never runs"
    sweep(store, bodies.append)
    assert [b["step"] for b in bodies] == ["approved", "denied"]
    assert bodies[1]["revoked"] is True and bodies[1]["approved_by"] == "operator:alice"
    assert (bodies[1]["decided_by"], bodies[1]["denial"]) == ("operator:bob", True)


def test_a_used_approval_cannot_be_revoked(store: ApprovalStore, clock: Clock) -> None:
    approval = _approval(clock)
    store.add(approval)
    store.decide(approval.approval_id, "approved", by="operator:alice")
    assert store.consume(approval.approval_id, approval.binding)
    with pytest.raises(ApprovalError, match="already used"):
        store.decide(approval.approval_id, "denied", by="operator:bob")
    # Only a denial revokes: a dismissal cannot undo an approval.
    other = _approval(clock, 1)
    store.add(other)
    store.decide(other.approval_id, "approved", by="operator:alice")
    with pytest.raises(ApprovalError, match="already approved"):
        store.decide(other.approval_id, "cancelled", by="person")


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
    for part in (
        "delete_file",
        "tenant-a",
        '"notes/a.txt"',
        "Deleting needs a person.",
        "15 min",
        "env dev, data PUBLIC",
    ):
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
