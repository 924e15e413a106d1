"""The receipt log: building, chaining, group commit, recovery, keys, tampering."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
import rfc8785
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhall_mcp.audit import (
    RECEIPT_PAYLOAD_TYPE,
    Receipt,
    ReceiptLog,
    ReceiptStore,
    SQLiteReceiptStore,
    StoredRecord,
    build_receipt,
    export_dsse,
    verify_log,
    verify_receipt,
)
from pyhall_mcp.errors import AuditError, IntegrityError, SigningError
from pyhall_mcp.layout import HallLayout
from pyhall_mcp.signing import Keyring, SigningKey

# -- helpers ---------------------------------------------------------------------------


def decision(n: int, **extra: Any) -> dict[str, Any]:
    body = {
        "kind": "decision",
        "correlation_id": f"corr-{n}",
        "decision_id": f"dec-{n}",
        "tenant_id": "acme",
        "tool": "summarize_document",
        "worker_id": "org.acme.summarizer",
        "decision": "allowed",
        "deny_code": None,
        "blast_score": 12,
        "arguments_digest": "sha256:" + "ab" * 32,
        "dry_run": False,
        "controls_verified": ["ctrl.a", "ctrl.b"],
        "n": n,
    }
    body.update(extra)
    return body


@pytest.fixture
def layout(tmp_path: Path) -> HallLayout:
    return HallLayout.for_hall(tmp_path / "hall")


def write_log(layout: HallLayout, count: int, **options: Any) -> list[Receipt]:
    with ReceiptLog.open(layout, **options) as log:
        return [log.record_sync(decision(n)) for n in range(count)]


def db(layout: HallLayout) -> sqlite3.Connection:
    return sqlite3.connect(layout.audit_db, isolation_level=None)


def row(layout: HallLayout, seq: int) -> tuple[str, str, str, str]:
    with db(layout) as conn:
        return conn.execute(
            "SELECT receipt_id, receipt_hash, payload, signature FROM receipts WHERE seq = ?",
            (seq,),
        ).fetchone()


def set_row(layout: HallLayout, seq: int, **columns: str) -> None:
    names = ", ".join(f"{name} = ?" for name in columns)
    conn = db(layout)
    conn.execute(f"UPDATE receipts SET {names} WHERE seq = ?", (*columns.values(), seq))
    conn.close()


def put_receipt(layout: HallLayout, receipt: Receipt, *, replace: bool) -> None:
    record = StoredRecord.of(receipt)
    conn = db(layout)
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.execute(f"{verb} INTO receipts VALUES (?, ?, ?, ?, ?)", tuple(record))
    conn.close()


def first_error(layout: HallLayout) -> dict[str, Any]:
    report = verify_log(layout)
    assert not report.ok, "tampering went undetected"
    assert report.first_error is not None
    return report.first_error


# -- building receipts -------------------------------------------------------------------


def test_chain_builds_and_verifies(layout: HallLayout) -> None:
    receipts = write_log(layout, 40, checkpoint_every=16)
    assert [r.seq for r in receipts] == list(range(1, 41))
    assert receipts[0].body["prev_receipt_hash"] is None
    for before, after in itertools.pairwise(receipts):
        assert after.body["prev_receipt_hash"] == before.receipt_hash
    assert len({r.receipt_id for r in receipts}) == 40
    for receipt in receipts:
        assert receipt.receipt_id.startswith("rcpt_") and len(receipt.receipt_id) == 37
        assert isinstance(receipt.body["recorded_at_us"], int)
        assert receipt.body["v"] == 1 and receipt.body["kind"] == "decision"

    report = verify_log(layout)
    assert report.ok, report.first_error
    assert report.count == 40
    assert report.checkpoint_size == 40  # the final checkpoint, written on close
    assert report.head_hash == receipts[-1].receipt_hash
    # checkpoints every 16 receipts, then the final one
    lines = layout.checkpoints.read_text().splitlines()
    assert [json.loads(line)["size"] for line in lines] == [16, 32, 40]


def test_receipt_hash_and_signature_follow_the_documented_construction(
    layout: HallLayout,
) -> None:
    receipt = write_log(layout, 1)[0]
    body = dict(receipt.body)
    signature = base64.b64decode(body.pop("signature"))
    hashed = {k: v for k, v in body.items() if k != "receipt_hash"}
    # independent RFC 8785 encoder, not the project's fast path
    assert hashlib.sha256(rfc8785.dumps(hashed)).hexdigest() == receipt.receipt_hash
    assert receipt.payload == rfc8785.dumps(body)
    public = _trusted_public_key(layout, body["signing_key_id"])
    public.verify(signature, _independent_pae(RECEIPT_PAYLOAD_TYPE, rfc8785.dumps(body)))


def test_receipt_fields_are_exactly_body_plus_chain_fields(layout: HallLayout) -> None:
    receipt = write_log(layout, 1)[0]
    chain = {
        "v",
        "receipt_id",
        "seq",
        "recorded_at_us",
        "prev_receipt_hash",
        "signing_key_id",
        "receipt_hash",
        "signature",
    }
    assert set(receipt.body) == set(decision(0)) | chain


@pytest.mark.parametrize(
    "body, where",
    [
        ({"kind": "decision", "blast_score": 1.5}, "body.blast_score"),
        ({"kind": "decision", "nested": {"list": [1, 2.0]}}, "body.nested.list[1]"),
        ({"kind": "decision", "nan": float("nan")}, "body.nan"),
    ],
)
def test_floats_are_refused(layout: HallLayout, body: dict[str, Any], where: str) -> None:
    with ReceiptLog.open(layout) as log:
        with pytest.raises(ValueError, match="floats are not allowed") as info:
            log.record_sync(body)
        assert where in str(info.value)
        assert log.count == 0


@pytest.mark.parametrize(
    "body, message",
    [
        ({"kind": "decision", "seq": 7}, "set by the receipt log"),
        ({"kind": "decision", "signature": "x"}, "set by the receipt log"),
        ({"decision": "allowed"}, "body.kind"),
        ({"kind": "decision", 3: "x"}, "keys must be strings"),
        ({"kind": "decision", "when": object()}, "not a JSON value"),
        ({"kind": "decision", "big": 2**60}, "exact JSON range"),
    ],
)
async def test_bad_bodies_are_refused_before_anything_is_written(
    layout: HallLayout, body: dict[Any, Any], message: str
) -> None:
    async with ReceiptLog.open(layout) as log:
        with pytest.raises(ValueError, match=message):
            await log.record(body)
        assert log.count == 0


def test_tuples_and_str_subclasses_become_plain_json(layout: HallLayout) -> None:
    import enum

    class Decision(enum.StrEnum):
        ALLOWED = "allowed"

    with ReceiptLog.open(layout) as log:
        receipt = log.record_sync({"kind": "decision", "decision": Decision.ALLOWED, "t": (1, 2)})
    assert type(receipt.body["decision"]) is str and receipt.body["t"] == [1, 2]
    assert verify_log(layout).ok


# -- group commit, durability, failures ----------------------------------------------------


class CountingStore:
    """Wraps a store, counting batches; can be told to fail the next ``fail`` batches."""

    def __init__(self, inner: ReceiptStore) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.threads: list[str] = []  # which thread committed each batch
        self.fail = 0

    def append_batch(self, records: Sequence[StoredRecord]) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full (simulated)")
        self.inner.append_batch(records)
        self.batches.append(len(records))
        self.threads.append(threading.current_thread().name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_group_commit_keeps_order_and_answers_every_caller(layout: HallLayout) -> None:
    store = CountingStore(SQLiteReceiptStore(layout.audit_db))
    async with ReceiptLog.open(layout, store=store) as log:

        async def caller(c: int) -> list[Receipt]:
            mine = []
            for i in range(25):
                receipt = await log.record(decision(c * 1000 + i, caller=c))
                assert receipt.body["caller"] == c and receipt.body["n"] == c * 1000 + i
                mine.append(receipt)
            return mine

        results = await asyncio.gather(*(caller(c) for c in range(16)))
    seqs = sorted(r.seq for mine in results for r in mine)
    assert seqs == list(range(1, 401))
    for mine in results:  # each caller's receipts are in the order it made them
        assert [r.seq for r in mine] == sorted(r.seq for r in mine)
    assert sum(store.batches) == 400
    assert max(store.batches) > 1, "no batch ever held more than one receipt"
    assert len(store.batches) < 400
    report = verify_log(layout)
    assert report.ok and report.count == 400


async def test_a_lone_caller_commits_on_its_loop_and_a_turn_shares_one_commit(
    layout: HallLayout,
) -> None:
    store = CountingStore(SQLiteReceiptStore(layout.audit_db))
    here = threading.current_thread().name
    async with ReceiptLog.open(layout, store=store) as log:
        _, outcome = log.submit({"kind": "outcome", "status": "ok"})
        first = await log.record(decision(0))
        assert (await outcome).seq == first.seq - 1  # it rode along
        # Callers that reach record() in the same turn of the loop share one commit.
        together = await asyncio.gather(*(log.record(decision(n)) for n in range(1, 9)))
        assert [r.seq for r in together] == list(range(first.seq + 1, first.seq + 9))
    assert store.batches == [2, 8]
    assert store.threads == [here, here], "no hand-off to the writer thread"
    assert verify_log(layout).ok


async def test_callers_that_know_of_others_hand_the_commit_to_the_writer(
    layout: HallLayout,
) -> None:
    store = CountingStore(SQLiteReceiptStore(layout.audit_db))
    async with ReceiptLog.open(layout, store=store) as log:
        receipts = await asyncio.gather(
            *(log.record(decision(n), on_loop=False) for n in range(12))
        )

        # The writer settles a batch while it still holds the write lock; a lone call
        # arriving then is handed over to it (correct too). Let it let go first.
        def writer_let_go() -> None:
            with log._write_lock:
                pass

        await asyncio.to_thread(writer_let_go)
        mixed = [await log.record(decision(20)), await log.record(decision(21), on_loop=False)]
    assert sorted(r.seq for r in receipts) == list(range(1, 13))
    assert [r.seq for r in mixed] == [13, 14]
    assert store.threads[-1] == "pyhall-receipts"
    assert store.threads[-2] == threading.current_thread().name
    assert set(store.threads[:-2]) == {"pyhall-receipts"}
    assert verify_log(layout).ok


async def test_the_writer_signs_checkpoints_while_the_loop_commits(
    layout: HallLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyhall_mcp.audit as audit_module

    signers: list[str] = []
    sign = audit_module.sign_checkpoint

    def recording(*args: Any, **kwargs: Any) -> Any:
        signers.append(threading.current_thread().name)
        return sign(*args, **kwargs)

    monkeypatch.setattr(audit_module, "sign_checkpoint", recording)
    # Keep committing until the writer has signed twice: on a loaded machine it may wake
    # a few commits late, and its first checkpoint then covers more than ten receipts.
    written = 0
    async with ReceiptLog.open(layout, checkpoint_every=10) as log:
        deadline = time.monotonic() + 10
        while len(signers) < 2 and time.monotonic() < deadline:
            await log.record(decision(written))
            written += 1
            await asyncio.sleep(0.001)
        assert len(signers) >= 2, f"fewer than two checkpoints in {written} receipts"
    assert set(signers) == {"pyhall-receipts"}, "a checkpoint was signed on the event loop"
    report = verify_log(layout)
    assert report.ok and report.count == written


@pytest.mark.parametrize(("durability", "synchronous"), [("fsync", 2), ("os", 1)])
def test_durability_sets_how_a_commit_reaches_the_disk(
    layout: HallLayout, durability: str, synchronous: int
) -> None:
    with ReceiptLog.open(layout, durability=durability) as log:  # type: ignore[arg-type]
        log.record_sync(decision(0))
        conn = log._store._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    assert verify_log(layout).ok
    with pytest.raises(ValueError, match="durability"):
        SQLiteReceiptStore(layout.audit_db, durability="never")  # type: ignore[arg-type]


@pytest.mark.parametrize(("durability", "synchronous"), [("fsync", 2), ("os", 1)])
async def test_a_halls_durability_reaches_its_receipt_store(
    gate_hall: Path, durability: str, synchronous: int
) -> None:
    from pyhall_mcp.hall import Hall

    hall_yaml = gate_hall / "hall.yaml"
    text = hall_yaml.read_text()
    assert "audit:\n  enabled: true" in text
    hall_yaml.write_text(
        text.replace(
            "audit:\n  enabled: true", f"audit:\n  enabled: true\n  durability: {durability}"
        )
    )
    hall = Hall.load(gate_hall)
    log = hall.open_audit()
    try:
        assert log is not None
        outcome = await hall.call("echo", {"text": "x"})
        assert outcome.status == "allowed"
        conn = log._store._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
    finally:
        await hall.aclose()


async def test_an_allowed_decision_on_record_always_gets_its_outcome(
    gate_hall: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its decision receipt is being committed, a call still leaves an
    outcome receipt beside it: the log never says "allowed" and then nothing."""
    from pyhall_mcp.hall import Hall

    hall = Hall.load(gate_hall)
    log = hall.open_audit()
    assert log is not None
    record, entered, release = log.record, asyncio.Event(), asyncio.Event()

    async def slow_record(body: dict[str, Any], **kwargs: Any) -> Any:
        queued = asyncio.ensure_future(record(body, **kwargs))  # committed whatever happens
        if body["kind"] == "decision":
            entered.set()
            await release.wait()
        return await queued

    monkeypatch.setattr(log, "record", slow_record)
    scope = anyio.CancelScope()  # how the SDK cancels a handler (and shutdown, all of them)

    async def call() -> None:
        with scope:  # a worker that would run for two minutes: only cancelling ends it
            await hall.call("sleep", {"pidfile": "sleep.pid"})

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(call)
        await entered.wait()
        scope.cancel()
        release.set()
    assert scope.cancelled_caught
    await hall.aclose()

    store = SQLiteReceiptStore(hall.layout.audit_db, readonly=True)
    bodies = [json.loads(r.payload) for r in store.iter_range(1)]
    decision, outcome = bodies
    assert (decision["kind"], decision["decision"]) == ("decision", "allowed")
    assert (outcome["kind"], outcome["status"]) == ("outcome", "cancelled")
    assert outcome["decision_receipt_id"] == decision["receipt_id"]


async def test_a_receipt_is_durable_when_record_returns(layout: HallLayout) -> None:
    async with ReceiptLog.open(layout) as log:
        for n in range(5):
            receipt = await log.record(decision(n))
            # another connection, as another process would see it
            other = sqlite3.connect(f"{layout.audit_db.as_uri()}?mode=ro", uri=True)
            found = other.execute(
                "SELECT seq FROM receipts WHERE receipt_id = ?", (receipt.receipt_id,)
            ).fetchone()
            other.close()
            assert found == (receipt.seq,)
            assert log.get(receipt.receipt_id) == receipt


async def test_a_failed_write_fails_its_callers_and_loses_nothing(layout: HallLayout) -> None:
    store = CountingStore(SQLiteReceiptStore(layout.audit_db))
    async with ReceiptLog.open(layout, store=store) as log:
        first = await log.record(decision(0))
        store.fail = 1
        with pytest.raises(AuditError, match="disk full"):
            await log.record(decision(1))
        assert log.head == (1, first.receipt_hash)  # the chain did not move
        later = [await log.record(decision(n)) for n in range(2, 5)]
        assert [r.seq for r in later] == [2, 3, 4]
        assert later[0].body["prev_receipt_hash"] == first.receipt_hash
        assert log.record_sync(decision(9)).seq == 5
    assert verify_log(layout).ok


async def test_an_unrecoverable_store_fails_closed(layout: HallLayout) -> None:
    store = CountingStore(SQLiteReceiptStore(layout.audit_db))
    log = ReceiptLog.open(layout, store=store)
    await log.record(decision(0))
    store.fail = 1
    store.head = lambda: (_ for _ in ()).throw(OSError("I/O error"))  # recovery fails too
    with pytest.raises(AuditError, match="disk full"):
        await log.record(decision(1))
    with pytest.raises(AuditError, match="unavailable"):
        await log.record(decision(2))
    await log.aclose()
    assert verify_log(layout).ok


async def test_a_cancelled_caller_still_leaves_its_receipt(layout: HallLayout) -> None:
    async with ReceiptLog.open(layout) as log:
        tasks = [asyncio.create_task(log.record(decision(n))) for n in range(20)]
        await asyncio.sleep(0)
        tasks[5].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[5], asyncio.CancelledError)
        after = await log.record(decision(99))
    assert after.seq == 21  # the cancelled call's receipt was written all the same
    assert verify_log(layout).ok


async def test_every_kind_of_caller_at_once_leaves_one_whole_chain(layout: HallLayout) -> None:
    """Loop commits, writer commits, lazy receipts, threads and failing writes, interleaved."""
    import random

    rng = random.Random(7)
    store = CountingStore(SQLiteReceiptStore(layout.audit_db))
    written: list[Receipt] = []
    failed = 0
    lazy: list[asyncio.Future[Receipt]] = []
    async with ReceiptLog.open(layout, store=store) as log:

        async def caller(c: int) -> None:
            nonlocal failed
            for i in range(30):
                if rng.random() < 0.3:
                    lazy.append(log.submit({"kind": "outcome", "caller": c, "i": i})[1])
                if rng.random() < 0.05:
                    store.fail = 1
                try:
                    receipt = await asyncio.wait_for(
                        log.record(decision(i, caller=c), on_loop=rng.random() < 0.5), 10
                    )
                except AuditError:
                    failed += 1
                    continue
                written.append(receipt)
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        def threaded(t: int) -> None:
            nonlocal failed
            for i in range(20):
                try:
                    written.append(log.record_sync(decision(i, thread=t)))
                except AuditError:
                    failed += 1

        threads = [asyncio.to_thread(threaded, t) for t in range(2)]
        await asyncio.gather(*(caller(c) for c in range(8)), *threads)
        outcomes = await asyncio.wait_for(asyncio.gather(*lazy, return_exceptions=True), 10)
    written += [r for r in outcomes if isinstance(r, Receipt)]
    assert failed > 0, "no write failed: the test did not exercise recovery"
    assert sorted(r.seq for r in written) == list(range(1, len(written) + 1))
    report = verify_log(layout)
    assert report.ok and report.count == len(written)


def test_record_sync_from_many_threads(layout: HallLayout) -> None:
    with ReceiptLog.open(layout) as log:
        got: list[Receipt] = []
        lock = threading.Lock()

        def work(t: int) -> None:
            for i in range(20):
                receipt = log.record_sync(decision(t * 100 + i))
                with lock:
                    got.append(receipt)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.seq for r in got) == list(range(1, 121))
    assert verify_log(layout).ok


def test_record_after_close_is_refused(layout: HallLayout) -> None:
    log = ReceiptLog.open(layout)
    log.close()
    with pytest.raises(AuditError, match="closed"):
        log.record_sync(decision(0))


def test_one_writer_per_state_directory(layout: HallLayout) -> None:
    with ReceiptLog.open(layout), pytest.raises(AuditError, match="another process"):
        ReceiptLog.open(layout)
    ReceiptLog.open(layout).close()  # released on close


def test_an_idle_log_writes_a_checkpoint_after_the_interval(layout: HallLayout) -> None:
    with ReceiptLog.open(layout, checkpoint_interval_s=0.1) as log:
        log.record_sync(decision(0))
        log.record_sync(decision(1))
        deadline = time.monotonic() + 5
        while not layout.checkpoints.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        lines = layout.checkpoints.read_text().splitlines()
        assert json.loads(lines[-1])["size"] == 2


# -- recovery -----------------------------------------------------------------------------


def test_reopen_continues_the_chain(layout: HallLayout) -> None:
    first = write_log(layout, 12, checkpoint_every=5)
    with ReceiptLog.open(layout, checkpoint_every=5) as log:
        assert log.head == (12, first[-1].receipt_hash)
        more = log.record_sync(decision(12))
    assert more.seq == 13 and more.body["prev_receipt_hash"] == first[-1].receipt_hash
    report = verify_log(layout)
    assert report.ok and report.count == 13 and report.checkpoint_size == 13


def test_reopen_without_checkpoints_rebuilds_the_tree(layout: HallLayout) -> None:
    write_log(layout, 9)
    layout.checkpoints.unlink()
    with ReceiptLog.open(layout) as log:
        log.record_sync(decision(9))
    report = verify_log(layout)
    assert report.ok and report.checkpoint_size == 10


def test_open_refuses_a_tampered_last_record(layout: HallLayout) -> None:
    write_log(layout, 3)
    _, _, payload, _ = row(layout, 3)
    set_row(layout, 3, payload=payload.replace('"allowed"', '"denied"'))
    with pytest.raises(IntegrityError, match="seq 3") as info:
        ReceiptLog.open(layout)
    assert info.value.seq == 3


def test_open_refuses_a_log_truncated_below_its_checkpoint(layout: HallLayout) -> None:
    write_log(layout, 10)
    with db(layout) as conn:
        conn.execute("DELETE FROM receipts WHERE seq > 7")
    with pytest.raises(IntegrityError, match="truncated"):
        ReceiptLog.open(layout)


# -- keys ----------------------------------------------------------------------------------


def test_signing_key_is_owner_only_and_never_in_receipts(layout: HallLayout) -> None:
    receipts = write_log(layout, 3)
    assert layout.signing_key.stat().st_mode & 0o777 == 0o600
    key = SigningKey.load(layout.signing_key)
    secret = key._private.private_bytes_raw()  # test-only peek at the secret
    blob = layout.audit_db.read_bytes() + layout.checkpoints.read_bytes()
    blob += layout.receipt_keyring.read_bytes()
    assert secret not in blob
    assert base64.b64encode(secret) not in blob
    assert all(r.body["signing_key_id"] == key.key_id for r in receipts)
    assert "SigningKey(key_id=" in repr(key)


def test_key_rotation_is_recorded_and_verifies(layout: HallLayout) -> None:
    write_log(layout, 4)
    old = SigningKey.load(layout.signing_key)
    shutil.move(layout.signing_key, layout.state_dir / "old-signing.key")
    with ReceiptLog.open(layout) as log:
        new_key_id = log.key_id
        after = log.record_sync(decision(99))
    assert new_key_id != old.key_id
    rotation = json.loads(row(layout, 5)[2])
    assert rotation["kind"] == "key_rotation"
    assert rotation["old_key_id"] == old.key_id
    assert rotation["new_key_id"] == new_key_id == rotation["signing_key_id"]
    assert after.seq == 6 and after.body["signing_key_id"] == new_key_id
    report = verify_log(layout)
    assert report.ok, report.first_error
    assert report.key_ids == [old.key_id, new_key_id]
    # both public halves are in the receipt keyring
    assert {k.key_id for k in Keyring.load(layout.receipt_keyring)} == {old.key_id, new_key_id}

    # A holder of the retired key cannot append after the rotation.
    forged = build_receipt(decision(100), seq=7, prev_receipt_hash=after.receipt_hash, key=old)
    put_receipt(layout, forged, replace=False)
    error = first_error(layout)
    assert error["seq"] == 7 and "without a key_rotation receipt" in error["problem"]


def test_a_revoked_hall_key_refuses_to_start(layout: HallLayout) -> None:
    write_log(layout, 1)
    ring = yaml.safe_load(layout.receipt_keyring.read_text())
    ring["keys"][0]["revoked"] = True
    layout.receipt_keyring.write_text(yaml.safe_dump(ring))
    with pytest.raises(SigningError, match="revoked"):
        ReceiptLog.open(layout)


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture
def log30(layout: HallLayout) -> list[Receipt]:
    return write_log(layout, 30, checkpoint_every=10)


def test_editing_a_field_is_detected(layout: HallLayout, log30: list[Receipt]) -> None:
    _, _, payload, _ = row(layout, 7)
    set_row(layout, 7, payload=payload.replace('"allowed"', '"denied"'))
    error = first_error(layout)
    assert error["seq"] == 7 and error["receipt_id"] == log30[6].receipt_id
    assert "receipt_hash does not match" in error["problem"]


def test_editing_a_field_and_its_hash_is_caught_by_the_signature(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    body = json.loads(row(layout, 17)[2])
    body["decision"] = "denied"
    del body["receipt_hash"]
    body["receipt_hash"] = hashlib.sha256(rfc8785.dumps(body)).hexdigest()
    set_row(layout, 17, payload=rfc8785.dumps(body).decode(), receipt_hash=body["receipt_hash"])
    error = first_error(layout)
    # seq 18's link breaks too; the earliest problem is reported
    assert error["seq"] == 17 and "signature" in error["problem"]


def test_deleting_a_record_is_detected(layout: HallLayout, log30: list[Receipt]) -> None:
    with db(layout) as conn:
        conn.execute("DELETE FROM receipts WHERE seq = 12")
    error = first_error(layout)
    assert error["seq"] == 12 and "missing" in error["problem"]


def test_a_gap_is_reported_before_a_damaged_record_after_it(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    _, _, payload, _ = row(layout, 13)
    set_row(layout, 13, payload=payload.replace('"allowed"', '"denied"'))
    with db(layout) as conn:
        conn.execute("DELETE FROM receipts WHERE seq = 12")
    error = first_error(layout)
    assert error["seq"] == 12 and "missing" in error["problem"]


def test_swapping_two_records_is_detected(layout: HallLayout, log30: list[Receipt]) -> None:
    five, six = row(layout, 5), row(layout, 6)
    conn = db(layout)
    conn.execute("DELETE FROM receipts WHERE seq IN (5, 6)")
    conn.execute("INSERT INTO receipts VALUES (5, ?, ?, ?, ?)", six)
    conn.execute("INSERT INTO receipts VALUES (6, ?, ?, ?, ?)", five)
    conn.close()
    error = first_error(layout)
    assert error["seq"] == 5 and "says it is seq 6" in error["problem"]


def test_swapping_two_records_and_renumbering_is_detected(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    bodies = {seq: json.loads(row(layout, seq)[2]) for seq in (5, 6)}
    for seq, other in ((5, 6), (6, 5)):
        body = dict(bodies[other], seq=seq)
        set_row(layout, seq, payload=rfc8785.dumps(body).decode())
    assert first_error(layout)["seq"] == 5


def test_truncating_the_tail_is_caught_by_the_checkpoint(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    with db(layout) as conn:
        conn.execute("DELETE FROM receipts WHERE seq > 21")
    error = first_error(layout)
    assert error["seq"] == 22
    assert "truncated" in error["problem"] and "covers 30" in error["problem"]


def test_replacing_a_signature_is_detected(layout: HallLayout, log30: list[Receipt]) -> None:
    set_row(layout, 9, signature=row(layout, 10)[3])
    error = first_error(layout)
    assert error["seq"] == 9 and "signature does not verify" in error["problem"]


def test_signing_with_an_untrusted_key_is_detected(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    intruder = SigningKey.generate()
    hall_key = SigningKey.load(layout.signing_key)
    # Even dressed up as a key rotation, an unknown key does not verify.
    forged = build_receipt(
        {"kind": "key_rotation", "old_key_id": hall_key.key_id, "new_key_id": intruder.key_id},
        seq=31,
        prev_receipt_hash=log30[-1].receipt_hash,
        key=intruder,
    )
    put_receipt(layout, forged, replace=False)
    error = first_error(layout)
    assert error["seq"] == 31 and "not in the keyring" in error["problem"]


def test_a_silent_key_change_is_detected(layout: HallLayout, log30: list[Receipt]) -> None:
    """Even a key trusted for receipts may take over only through a key_rotation receipt."""
    intruder = SigningKey.generate()
    ring = Keyring.load(layout.receipt_keyring)
    ring.add(intruder.trusted(["receipts"]))
    ring.save(layout.receipt_keyring)
    forged = build_receipt(
        decision(31), seq=31, prev_receipt_hash=log30[-1].receipt_hash, key=intruder
    )
    put_receipt(layout, forged, replace=False)
    error = first_error(layout)
    assert error["seq"] == 31 and "without a key_rotation receipt" in error["problem"]


def test_rewriting_history_with_the_hall_key_is_caught_by_the_checkpoint(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    """An attacker holding the key re-signs a consistent chain; the checkpoint remembers."""
    key = SigningKey.load(layout.signing_key)
    prev = log30[3].receipt_hash
    for receipt in log30[4:]:
        body = {k: v for k, v in receipt.body.items() if k in decision(0) or k == "kind"}
        if receipt.seq == 5:
            body["decision"] = "denied"
        forged = build_receipt(
            body,
            seq=receipt.seq,
            prev_receipt_hash=prev,
            key=key,
            receipt_id=receipt.receipt_id,
            recorded_at_us=receipt.body["recorded_at_us"],
        )
        put_receipt(layout, forged, replace=True)
        prev = forged.receipt_hash
    error = first_error(layout)
    assert error["seq"] == 10 and "Merkle root" in error["problem"]


def test_a_tampered_checkpoint_is_detected(layout: HallLayout, log30: list[Receipt]) -> None:
    lines = layout.checkpoints.read_text().splitlines()
    doctored = json.loads(lines[-1])
    doctored["size"] = 25
    lines[-1] = json.dumps(doctored)
    layout.checkpoints.write_text("\n".join(lines) + "\n")
    error = first_error(layout)
    assert "checkpoint line 3" in error["problem"] and "signature" in error["problem"]


def test_a_torn_last_checkpoint_line_is_ignored_with_a_warning(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    with layout.checkpoints.open("a") as fh:
        fh.write('{"v":1,"size":3')
    report = verify_log(layout)
    assert report.ok and report.checkpoint_size == 30
    assert any("incomplete last line" in w for w in report.warnings)


def test_reopening_after_a_torn_checkpoint_line_repairs_the_file(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    with layout.checkpoints.open("a") as fh:
        fh.write('{"v":1,"size":3')
    with ReceiptLog.open(layout) as log:
        log.record_sync(decision(31))
    report = verify_log(layout)
    assert report.ok and report.checkpoint_size == 31 and not report.warnings


def test_open_refuses_a_log_rewritten_under_a_checkpoint(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    key = SigningKey.load(layout.signing_key)
    last = log30[-1]
    body = {k: v for k, v in last.body.items() if k in decision(0) or k == "kind"}
    forged = build_receipt(
        {**body, "decision": "denied"},
        seq=30,
        prev_receipt_hash=last.body["prev_receipt_hash"],
        key=key,
        receipt_id=last.receipt_id,
    )
    put_receipt(layout, forged, replace=True)
    with pytest.raises(IntegrityError, match="rewritten"):
        ReceiptLog.open(layout)


def test_verify_with_a_keyring_kept_elsewhere(layout: HallLayout, log30: list[Receipt]) -> None:
    assert verify_log(layout, keyring=Keyring.load(layout.receipt_keyring)).ok
    stranger = Keyring([SigningKey.generate().trusted(["receipts"])])
    report = verify_log(layout, keyring=stranger)
    assert not report.ok and "not in the keyring" in report.first_error["problem"]


def _cut_log_and_checkpoints(layout: HallLayout, keep: int) -> None:
    """What an attacker who can write the state directory does to hide the last receipts."""
    with db(layout) as conn:
        conn.execute("DELETE FROM receipts WHERE seq > ?", (keep,))
    lines = layout.checkpoints.read_text().splitlines(keepends=True)
    layout.checkpoints.write_text("".join(x for x in lines if json.loads(x)["size"] <= keep))


def test_a_cut_of_log_and_checkpoints_is_caught_by_checkpoints_kept_elsewhere(
    layout: HallLayout, log30: list[Receipt], tmp_path: Path
) -> None:
    kept = tmp_path / "elsewhere.jsonl"
    kept.write_text(layout.checkpoints.read_text().splitlines(keepends=True)[-1])
    _cut_log_and_checkpoints(layout, 20)
    assert verify_log(layout).ok  # the state directory alone cannot tell
    report = verify_log(layout, anchors=kept)
    assert not report.ok and report.count == 20
    assert report.first_error["seq"] == 21
    assert "elsewhere.jsonl covers 30 receipts" in report.first_error["problem"]


def test_the_last_line_of_checkpoints_kept_elsewhere_counts_without_its_newline(
    layout: HallLayout, log30: list[Receipt], tmp_path: Path
) -> None:
    kept = tmp_path / "kept.jsonl"
    kept.write_text(layout.checkpoints.read_text().rstrip("\n"))  # as an editor saves it
    _cut_log_and_checkpoints(layout, 20)
    report = verify_log(layout, anchors=kept)
    assert not report.ok and report.first_error["seq"] == 21


def test_checkpoints_kept_elsewhere_must_be_signed_and_match(
    layout: HallLayout, log30: list[Receipt], tmp_path: Path
) -> None:
    kept = tmp_path / "kept.jsonl"
    doctored = json.loads(layout.checkpoints.read_text().splitlines()[0])
    doctored["size"] = 9
    kept.write_text(json.dumps(doctored) + "\n")
    report = verify_log(layout, anchors=kept)
    assert not report.ok and report.first_error["seq"] is None
    assert "kept.jsonl: checkpoint line 1" in report.first_error["problem"]
    kept.write_text("")
    report = verify_log(layout, anchors=kept)
    assert not report.ok and "holds no checkpoint" in report.first_error["problem"]


def test_receipts_no_checkpoint_covers_yet_are_named(layout: HallLayout) -> None:
    write_log(layout, 12, checkpoint_every=5)
    _cut_log_and_checkpoints(layout, 12)  # keep the log; drop the closing checkpoint
    lines = layout.checkpoints.read_text().splitlines(keepends=True)
    layout.checkpoints.write_text("".join(lines[:2]))  # sizes 5 and 10
    report = verify_log(layout)
    assert report.ok and report.checkpoint_size == 10
    assert any("receipts 11 to 12 are covered by no checkpoint" in w for w in report.warnings)


def test_reopening_signs_a_checkpoint_for_what_a_crash_left_unsigned(layout: HallLayout) -> None:
    write_log(layout, 7, checkpoint_every=100)
    layout.checkpoints.unlink()  # as if the gateway died before its closing checkpoint
    with ReceiptLog.open(layout, checkpoint_interval_s=3600):
        lines = layout.checkpoints.read_text().splitlines()  # before any close
    assert [json.loads(x)["size"] for x in lines] == [7]


def test_a_gap_names_the_missing_seq_not_the_next_receipt(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    with db(layout) as conn:
        conn.execute("DELETE FROM receipts WHERE seq = 5")
    error = first_error(layout)
    assert error["seq"] == 5 and error["receipt_id"] is None


def test_a_bad_checkpoint_still_lets_the_receipts_be_counted(
    layout: HallLayout, log30: list[Receipt]
) -> None:
    lines = layout.checkpoints.read_text().splitlines()
    doctored = json.loads(lines[0])
    doctored["at_us"] = 10**30  # beyond RFC 8785's integers and any date
    layout.checkpoints.write_text("\n".join([json.dumps(doctored), *lines[1:]]) + "\n")
    report = verify_log(layout)
    assert not report.ok and report.count == 30
    assert report.first_error["seq"] is None
    assert (
        "checkpoints.jsonl: checkpoint line 1: checkpoint cannot be checked"
        in (report.first_error["problem"])
    )


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("UPDATE receipts SET payload = ? WHERE seq = 4", "not valid JSON"),
        ("DROP TABLE receipts", "cannot be read"),
        ("PRAGMA user_version = 99", "cannot be read"),
    ],
)
def test_any_damage_is_a_verdict_not_a_crash(
    layout: HallLayout, log30: list[Receipt], damage: str, expected: str
) -> None:
    conn = db(layout)
    conn.execute(damage, ("[" * 100_000 + "]" * 100_000,) if "?" in damage else ())
    conn.close()
    error = first_error(layout)
    assert expected in error["problem"]


def test_a_changed_signing_key_is_said_at_open(
    layout: HallLayout, log30: list[Receipt], caplog: pytest.LogCaptureFixture
) -> None:
    layout.signing_key.unlink()
    with caplog.at_level("WARNING", logger="pyhall_mcp.audit"):
        ReceiptLog.open(layout).close()
    assert "the hall's signing key changed" in caplog.text
    report = verify_log(layout)
    assert report.ok and len(report.key_ids) == 2


def test_verify_reports_progress(layout: HallLayout) -> None:
    write_log(layout, 1500, max_batch=512)
    calls: list[tuple[int, int]] = []
    assert verify_log(layout, progress=lambda done, total: calls.append((done, total))).ok
    assert calls[-1] == (1500, 1500) and calls[0][0] < 1500


def test_verify_receipt_checks_one_receipt(layout: HallLayout) -> None:
    receipt = write_log(layout, 1)[0]
    ring = Keyring.load(layout.receipt_keyring)
    verify_receipt(receipt.body, ring)
    with pytest.raises(IntegrityError, match="receipt_hash"):
        verify_receipt({**receipt.body, "decision": "denied"}, ring)


# -- DSSE export, checked independently -------------------------------------------------------


def _independent_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 PAE written from the spec, not imported from pyhall_mcp."""
    kind = payload_type.encode()
    return b" ".join(
        [b"DSSEv1", str(len(kind)).encode(), kind, str(len(payload)).encode(), payload]
    )


def _trusted_public_key(layout: HallLayout, key_id: str) -> Ed25519PublicKey:
    ring = yaml.safe_load(layout.receipt_keyring.read_text())
    entry = next(k for k in ring["keys"] if k["key_id"] == key_id)
    assert "receipts" in entry["purposes"]
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["public_key"]))


def dsse_verify(envelope: dict[str, Any], layout: HallLayout) -> dict[str, Any]:
    """Verify a DSSE envelope the way any third party would; return the payload."""
    assert set(envelope) == {"payloadType", "payload", "signatures"}
    payload = base64.b64decode(envelope["payload"])
    (signature,) = envelope["signatures"]
    public = _trusted_public_key(layout, signature["keyid"])
    public.verify(
        base64.b64decode(signature["sig"]),
        _independent_pae(envelope["payloadType"], payload),
    )  # raises InvalidSignature
    return json.loads(payload)


def test_exported_receipt_is_a_valid_dsse_envelope(layout: HallLayout) -> None:
    receipt = write_log(layout, 2)[1]
    envelope = export_dsse(receipt.body)
    assert envelope["payloadType"] == RECEIPT_PAYLOAD_TYPE == "application/vnd.pyhall.receipt+json"
    statement = dsse_verify(envelope, layout)
    assert statement == {k: v for k, v in receipt.body.items() if k != "signature"}
    # the payload commits to its own hash
    hashed = {k: v for k, v in statement.items() if k != "receipt_hash"}
    assert hashlib.sha256(rfc8785.dumps(hashed)).hexdigest() == statement["receipt_hash"]

    from cryptography.exceptions import InvalidSignature

    tampered = dict(
        envelope,
        payload=base64.b64encode(json.dumps({**statement, "decision": "denied"}).encode()).decode(),
    )
    with pytest.raises(InvalidSignature):
        dsse_verify(tampered, layout)


def test_export_refuses_an_unsigned_body() -> None:
    with pytest.raises(ValueError, match="signature"):
        export_dsse({"kind": "decision", "signing_key_id": "ed25519:x"})


# -- the canonical form, for any body ---------------------------------------------------------

_RESERVED = {
    "kind",
    "v",
    "receipt_id",
    "seq",
    "recorded_at_us",
    "prev_receipt_hash",
    "signing_key_id",
    "receipt_hash",
    "signature",
}
_HYPOTHESIS_KEY = SigningKey.generate()
_json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    extra=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k not in _RESERVED), _json_values, max_size=8
    )
)
def test_sealed_payload_and_hash_are_rfc8785_for_any_body(extra: dict[str, Any]) -> None:
    key = _HYPOTHESIS_KEY
    receipt = build_receipt({"kind": "decision", **extra}, seq=3, prev_receipt_hash=None, key=key)
    unsigned = {k: v for k, v in receipt.body.items() if k != "signature"}
    assert receipt.payload == rfc8785.dumps(unsigned)
    hashed = {k: v for k, v in unsigned.items() if k != "receipt_hash"}
    assert receipt.receipt_hash == hashlib.sha256(rfc8785.dumps(hashed)).hexdigest()
    ring = Keyring([key.trusted(["receipts"])])
    verify_receipt(receipt.body, ring)


# -- receipts nobody waits on (outcomes) ------------------------------------------------------


async def test_submitted_receipt_rides_with_the_next_awaited_one(tmp_path: Path) -> None:
    layout = HallLayout.for_hall(tmp_path)
    log = ReceiptLog.open(layout)
    try:
        receipt_id, future = log.submit({"kind": "outcome", "status": "ok"})
        assert receipt_id.startswith("rcpt_")
        decision = await log.record({"kind": "decision", "decision": "allowed"})
        outcome = await future
        # One commit for both: the queued outcome precedes the decision in the chain.
        assert outcome.receipt_id == receipt_id
        assert outcome.seq == decision.seq - 1
        assert decision.body["prev_receipt_hash"] == outcome.receipt_hash
    finally:
        await log.aclose()
    assert verify_log(layout).ok


async def test_submitted_receipt_alone_is_committed_within_its_delay(tmp_path: Path) -> None:
    layout = HallLayout.for_hall(tmp_path)
    log = ReceiptLog.open(layout)
    try:
        started = time.monotonic()
        _, future = log.submit({"kind": "outcome", "status": "ok"})
        receipt = await asyncio.wait_for(future, timeout=5)
        assert receipt.seq == 1
        assert time.monotonic() - started < 2  # bounded, not parked until close
    finally:
        await log.aclose()


async def test_close_flushes_submitted_receipts(tmp_path: Path) -> None:
    layout = HallLayout.for_hall(tmp_path)
    log = ReceiptLog.open(layout)
    ids = [log.submit({"kind": "outcome", "status": "ok", "n": n})[0] for n in range(20)]
    await log.aclose()
    report = verify_log(layout)
    assert report.ok and report.count == 20
    store = SQLiteReceiptStore(layout.audit_db, readonly=True)
    try:
        assert [r.receipt_id for r in store.iter_all()] == ids
    finally:
        store.close()


def test_receipt_ids_are_unique_and_ordered_by_time() -> None:
    """Time-ordered ids keep the log's unique index growing at its end."""
    import re
    import time

    from pyhall_mcp.audit import _new_receipt_id

    ids = []
    for _ in range(5):
        ids.extend(_new_receipt_id() for _ in range(200))  # many within one millisecond
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"rcpt_[0-9a-f]{32}", i) for i in ids)
    prefixes = [i[5:17] for i in ids]
    assert prefixes == sorted(prefixes)
    assert len(set(prefixes)) >= 5
    assert abs(int(prefixes[-1], 16) - time.time() * 1000) < 60_000  # Unix milliseconds
