"""Receipt log benchmark: durable receipts per second and verification time.

    .venv/bin/python benchmarks/audit.py [--verify-size 100000]

Every figure counts receipts that were committed (WAL, synchronous=FULL)
before the writer answered. Baselines measured in the same run: sealing alone
(hash + Ed25519, no storage) and one bare SQLite durable commit per row.
Targets (issue 4): >= 5,000 durable receipts/s with group commit; verifying
100,000 receipts in under 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyhall_mcp.audit import (
    ReceiptLog,
    SQLiteReceiptStore,
    StoredRecord,
    build_receipt,
    verify_log,
)
from pyhall_mcp.canonical import canonical_json
from pyhall_mcp.checkpoints import (
    MerkleFrontier,
    append_checkpoint,
    sign_checkpoint,
)
from pyhall_mcp.hall import Hall
from pyhall_mcp.layout import HallLayout
from pyhall_mcp.signing import SigningKey

GATE_HALL = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "halls" / "gate"


def decision_body(i: int) -> dict:
    """A decision receipt body the size the hall writes (~1 KB sealed)."""
    return {
        "kind": "decision",
        "correlation_id": f"corr-{i:012d}",
        "decision_id": f"dec-{i:012d}",
        "tenant_id": "acme",
        "tool": "summarize_document",
        "worker_id": "org.acme.summarizer",
        "worker_species_id": "wrk.doc.summarizer",
        "capability_id": "cap.doc.summarize",
        "decision": "allowed",
        "deny_code": None,
        "matched_rule_id": "rule.doc.summarize.prod",
        "policy_version": "sha256:" + "a" * 64,
        "blast_score": 12,
        "arguments_digest": "sha256:" + "b" * 64,
        "dry_run": False,
        "artifact_hash": "sha256:" + "c" * 64,
        "controls_verified": ["ctrl.obs.audit-log-required", "ctrl.privacy.no-pii"],
        "policy_decision": "ALLOW",
        "dispatched_at": 1_700_000_000_000_000 + i,
    }


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>9,.0f} receipts/s  ({seconds / n * 1e6:,.0f} us each)"


def bench_baselines(tmp: Path, n: int) -> tuple[float, float]:
    key = SigningKey.generate()
    start = time.perf_counter()
    prev = None
    for i in range(n):
        prev = build_receipt(decision_body(i), seq=i + 1, prev_receipt_hash=prev, key=key)
        prev = prev.receipt_hash
    seal = time.perf_counter() - start

    conn = sqlite3.connect(tmp / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT)")
    row = canonical_json(decision_body(0)).decode()
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (i + 1, row))
        conn.execute("COMMIT")
    bare = time.perf_counter() - start
    conn.close()
    return seal, bare


def bench_sequential_sync(layout: HallLayout, n: int) -> float:
    with ReceiptLog.open(layout) as log:
        start = time.perf_counter()
        for i in range(n):
            log.record_sync(decision_body(i))
        return time.perf_counter() - start


async def bench_sequential_async(layout: HallLayout, n: int) -> float:
    async with ReceiptLog.open(layout) as log:
        start = time.perf_counter()
        for i in range(n):
            await log.record(decision_body(i))
        return time.perf_counter() - start


async def bench_concurrent(layout: HallLayout, n: int, writers: int) -> tuple[float, int]:
    async with ReceiptLog.open(layout) as log:
        first = log.count

        async def writer(w: int) -> None:
            for i in range(w, n, writers):
                await log.record(decision_body(i))

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(writers)))
        elapsed = time.perf_counter() - start
        assert log.count == first + n
    return elapsed, n


def build_log(layout: HallLayout, n: int) -> float:
    """Write ``n`` sealed receipts straight into the store, then one checkpoint."""
    ReceiptLog.open(layout).close()  # key + keyring, as the hall would
    key = SigningKey.load(layout.signing_key)
    store = SQLiteReceiptStore(layout.audit_db)
    tree = MerkleFrontier()
    prev: str | None = None
    batch: list[StoredRecord] = []
    start = time.perf_counter()
    for i in range(n):
        receipt = build_receipt(decision_body(i), seq=i + 1, prev_receipt_hash=prev, key=key)
        prev = receipt.receipt_hash
        tree.append(bytes.fromhex(prev))
        batch.append(StoredRecord.of(receipt))
        if len(batch) == 10_000:
            store.append_batch(batch)
            batch = []
    store.append_batch(batch)
    store.close()
    append_checkpoint(layout.checkpoints, sign_checkpoint(tree, prev, key, time.time_ns() // 1000))
    return time.perf_counter() - start


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_verify(layout: HallLayout) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds across threads, receipts verified)."""
    cpu = cpu_seconds()
    start = time.perf_counter()
    report = verify_log(layout)
    elapsed = time.perf_counter() - start
    assert report.ok, report.first_error
    return elapsed, cpu_seconds() - cpu, report.count


async def _call_latencies(hall: Hall, n: int) -> tuple[float, float]:
    """(p50, mean) in µs of sequential governed calls through ``Hall.call``."""
    for _ in range(50):  # warm up: imports, caches, the writer thread
        await hall.call("echo", {"text": "warm"})
    samples = []
    for i in range(n):
        started = time.perf_counter()
        outcome = await hall.call("echo", {"text": f"call {i}"})
        samples.append((time.perf_counter() - started) * 1e6)
        assert outcome.status == "allowed" and outcome.value is not None
    samples.sort()
    return samples[len(samples) // 2], sum(samples) / len(samples)


async def bench_call_latency(tmp: Path, n: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The gateway's call path with receipts off, then on: the receipts' added latency."""
    results = []
    for enabled in (False, True):
        root = tmp / f"hall-audit-{'on' if enabled else 'off'}"
        shutil.copytree(GATE_HALL, root)
        hall = Hall.load(root, overrides={"audit": {"enabled": enabled}, "events": "off"})
        hall.open_audit()
        try:
            results.append(await _call_latencies(hall, n))
        finally:
            await hall.aclose()
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=2_000, help="receipts per sequential run")
    parser.add_argument("--concurrent", type=int, default=20_000, help="receipts, 8 writers")
    parser.add_argument("--verify-size", type=int, default=100_000, help="receipts to verify")
    parser.add_argument("--calls", type=int, default=2_000, help="governed calls, receipts on/off")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pyhall-bench-audit-") as tmp_name:
        tmp = Path(tmp_name)
        n = args.sequential
        print(f"receipt log benchmark (durable: SQLite WAL, synchronous=FULL); tmp dir {tmp}")
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{os.cpu_count()} CPUs; load average at start {load} (figures shift with load)")

        seal, bare = bench_baselines(tmp, n)
        print(f"baseline  seal only (hash + sign, no I/O) {rate(n, seal)}")
        print(f"baseline  bare SQLite, 1 commit per row   {rate(n, bare)}")

        sync_s = bench_sequential_sync(HallLayout.for_hall(tmp / "seq-sync"), n)
        print(f"sequential record_sync                    {rate(n, sync_s)}")
        async_s = asyncio.run(bench_sequential_async(HallLayout.for_hall(tmp / "seq-async"), n))
        print(f"sequential await record                   {rate(n, async_s)}")

        conc_s, conc_n = asyncio.run(
            bench_concurrent(HallLayout.for_hall(tmp / "concurrent"), args.concurrent, 8)
        )
        print(f"8 concurrent async writers (group commit) {rate(conc_n, conc_s)}")
        print(
            f"  group commit vs sequential await: x{async_s / n / (conc_s / conc_n):.1f}; "
            f"vs bare SQLite commit per row: x{bare / n / (conc_s / conc_n):.1f}"
        )
        target = conc_n / conc_s >= 5_000
        print(f"  target >= 5,000 receipts/s: {'met' if target else 'NOT met'}")

        off, on = asyncio.run(bench_call_latency(tmp, args.calls))
        print(
            f"Hall.call (echo worker, events off), {args.calls:,} sequential calls: receipts off "
            f"p50 {off[0]:.0f} µs, on p50 {on[0]:.0f} µs; added per call: "
            f"p50 {on[0] - off[0]:+.0f} µs, mean {on[1] - off[1]:+.0f} µs (x{on[1] / off[1]:.2f})"
        )

        layout = HallLayout.for_hall(tmp / "verify")
        build_s = build_log(layout, args.verify_size)
        print(f"built {args.verify_size:,} receipts for verification in {build_s:.1f} s")
        verify_s, verify_cpu, count = bench_verify(layout)
        print(
            f"verify_log of {count:,} receipts: {verify_s:.2f} s "
            f"({count / verify_s:,.0f} receipts/s, {verify_cpu:.1f} s CPU over all threads); "
            f"target < 15 s for 100,000: {'met' if verify_s < 15 * count / 100_000 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
