"""SIGTERM while a worker hangs: the worker dies, the evidence stays whole."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from pyhall_mcp.audit import verify_log
from pyhall_mcp.layout import HallLayout


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_sigterm_kills_running_workers_and_keeps_the_chain(raw_gateway) -> None:
    raw_gateway.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "sleep", "arguments": {"pidfile": "sleeper.pid"}},
        }
    )
    pidfile = raw_gateway.hall / "workspace" / "sleeper.pid"
    deadline = time.monotonic() + 20
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(pidfile.read_text())
    assert _alive(worker)

    raw_gateway.proc.send_signal(signal.SIGTERM)
    assert raw_gateway.proc.wait(timeout=15) == 0
    deadline = time.monotonic() + 5
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker), "the worker outlived the gateway"
    assert "SIGTERM, shutting down" in raw_gateway.proc.stderr.read()

    assert verify_log(HallLayout.for_hall(raw_gateway.hall)).ok
    outcomes = [b for b in raw_gateway.receipts() if b["kind"] == "outcome"]
    assert [o["status"] for o in outcomes] == ["cancelled"]
