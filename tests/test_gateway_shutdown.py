"""SIGTERM while a worker hangs: the worker dies, the evidence stays whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyhall_mcp.audit import SQLiteReceiptStore, verify_log
from pyhall_mcp.layout import HallLayout

GATE = Path(__file__).parent / "fixtures" / "halls" / "gate"


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def _send(proc: subprocess.Popen, message: dict) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()


def test_sigterm_kills_running_workers_and_keeps_the_chain(tmp_path: Path) -> None:
    hall = tmp_path / "hall"
    shutil.copytree(GATE, hall)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyhall_mcp", "--hall", str(hall)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "0"},
                },
            },
        )
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["id"] == 1
        _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "sleep", "arguments": {"pidfile": "sleeper.pid"}},
            },
        )
        pidfile = hall / "workspace" / "sleeper.pid"
        deadline = time.monotonic() + 20
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        assert _alive(worker)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived the gateway"
    assert "SIGTERM, shutting down" in proc.stderr.read()

    layout = HallLayout.for_hall(hall)
    assert verify_log(layout).ok
    store = SQLiteReceiptStore(layout.audit_db, readonly=True)
    try:
        bodies = [json.loads(record.payload) for record in store.iter_all()]
    finally:
        store.close()
    outcomes = [b for b in bodies if b.get("kind") == "outcome"]
    assert [o["status"] for o in outcomes] == ["cancelled"]
