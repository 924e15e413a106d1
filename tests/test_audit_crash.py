"""A writer killed with SIGKILL mid-burst leaves a chain that verifies and keeps every ack."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyhall_mcp.audit import ReceiptLog, verify_log
from pyhall_mcp.layout import HallLayout

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX only")

# Eight concurrent callers; each prints a receipt only after record() returned it.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pyhall_mcp.audit import ReceiptLog
    from pyhall_mcp.layout import HallLayout

    log = ReceiptLog.open(HallLayout.for_hall(sys.argv[1]), checkpoint_every=25)

    async def caller(c):
        i = 0
        while True:
            receipt = await log.record({"kind": "decision", "caller": c, "i": i})
            sys.stdout.write(f"{receipt.seq} {receipt.receipt_id}\\n")
            sys.stdout.flush()
            i += 1

    async def main():
        await asyncio.gather(*(caller(c) for c in range(8)))

    asyncio.run(main())
    """
)


def burst_then_kill(hall: Path, acks_before_kill: int) -> dict[int, str]:
    """Run the child until it has acknowledged enough receipts, SIGKILL it, return its acks."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(hall)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: dict[int, str] = {}
    try:
        assert child.stdout is not None
        while len(acked) < acks_before_kill:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {child.stderr.read() if child.stderr else ''}")
            seq, receipt_id = line.split()
            acked[int(seq)] = receipt_id
        os.kill(child.pid, signal.SIGKILL)  # mid-burst: the callers never stop on their own
        rest, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    for line in rest.splitlines(keepends=True):
        if line.endswith("\n"):  # a line cut by the kill was never an acknowledgement
            seq, receipt_id = line.split()
            acked[int(seq)] = receipt_id
    return acked


def stored_ids(layout: HallLayout) -> dict[int, str]:
    conn = sqlite3.connect(f"{layout.audit_db.as_uri()}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT seq, receipt_id FROM receipts"))
    finally:
        conn.close()


def test_sigkill_mid_burst_keeps_every_acknowledged_receipt(tmp_path: Path) -> None:
    hall = tmp_path / "hall"
    layout = HallLayout.for_hall(hall)
    all_acked: dict[int, str] = {}
    for acks in (300, 200):  # the second round recovers from the first crash
        acked = burst_then_kill(hall, acks)
        assert acked, "the child acknowledged nothing"
        all_acked.update(acked)

        report = verify_log(layout)
        assert report.ok, report.first_error
        assert report.count >= max(all_acked)
        stored = stored_ids(layout)
        missing = {seq for seq, rid in all_acked.items() if stored.get(seq) != rid}
        assert not missing, f"acknowledged receipts lost: {sorted(missing)[:10]}"

    # The killed log reopens and continues the same chain.
    with ReceiptLog.open(layout) as log:
        head_seq, _ = log.head
        assert head_seq == len(stored_ids(layout))
        after = log.record_sync({"kind": "decision", "after": "crash"})
    assert after.seq == head_seq + 1
    report = verify_log(layout)
    assert report.ok and report.checkpoint_size == after.seq
