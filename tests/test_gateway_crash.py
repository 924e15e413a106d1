"""SIGKILL in the middle of a burst of calls: every call the client got an answer to
has its decision receipt, and the chain still verifies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from pyhall_mcp.audit import SQLiteReceiptStore, verify_log
from pyhall_mcp.layout import HallLayout

GATE = Path(__file__).parent / "fixtures" / "halls" / "gate"


def _send(proc: subprocess.Popen, message: dict) -> None:
    proc.stdin.write((json.dumps(message) + "\n").encode())  # type: ignore[union-attr]
    proc.stdin.flush()  # type: ignore[union-attr]


def _call(i: int) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": i,
        "method": "tools/call",
        "params": {
            "name": "echo",
            "arguments": {"text": f"call {i}"},
            "_meta": {"dev.pyhall/correlation_id": f"burst-{i}"},
        },
    }


def test_sigkill_mid_burst_keeps_a_receipt_for_every_answer(tmp_path: Path) -> None:
    hall = tmp_path / "hall"
    shutil.copytree(GATE, hall)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyhall_mcp", "--hall", str(hall)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    _send(
        proc,
        {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "burst", "version": "0"},
            },
        },
    )
    proc.stdout.readline()
    _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    # Back-to-back calls, the next sent as soon as the previous is answered; the kill
    # lands right after an answer, when a receipt not yet on disk would be lost.
    answered: list[str] = []
    for i in range(1, 61):
        _send(proc, _call(i))
        message = json.loads(proc.stdout.readline())
        answered.append(message["result"]["_meta"]["dev.pyhall/governance"]["correlation_id"])
    _send(proc, _call(61))  # one more in flight while the gateway dies
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    layout = HallLayout.for_hall(hall)
    report = verify_log(layout)
    assert report.ok, report.first_error
    store = SQLiteReceiptStore(layout.audit_db, readonly=True)
    try:
        decided = {
            body["correlation_id"]
            for body in (json.loads(r.payload) for r in store.iter_all())
            if body.get("kind") == "decision"
        }
    finally:
        store.close()
    missing = [c for c in answered if c not in decided]
    assert not missing, f"answered without a durable decision receipt: {missing}"
