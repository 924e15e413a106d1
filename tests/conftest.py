"""Shared fixtures: halls copied into tmp_path, and both MCP protocol eras."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURE_HALLS = Path(__file__).resolve().parent / "fixtures" / "halls"

#: What a hall directory holds (its state, .pyhall/, is never copied).
HALL_PARTS = ("hall.yaml", "rules", "policies", "workers", "workspace", "keys")


def copy_hall(source: Path, target: Path) -> Path:
    """Copy the configuration of the hall at ``source`` to ``target``; return ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".pyhall")
    for part in HALL_PARTS:
        src = source / part
        if src.is_dir():
            shutil.copytree(src, target / part, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, target / part)
    return target


@pytest.fixture(autouse=True)
def _no_operator_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's PYHALL_* variables must not leak into what a test loads."""
    import os

    for name in list(os.environ):
        if name.startswith("PYHALL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def demo_hall(tmp_path: Path) -> Path:
    """A copy of the repository's demo hall; its state goes to ``<copy>/.pyhall``."""
    return copy_hall(REPO, tmp_path / "demo-hall")


@pytest.fixture
def gate_hall(tmp_path: Path) -> Path:
    """A copy of tests/fixtures/halls/gate, the hall whose every outcome the tests control."""
    return copy_hall(FIXTURE_HALLS / "gate", tmp_path / "gate-hall")


@pytest.fixture(params=["modern", "legacy"])
def client_mode(request: pytest.FixtureRequest) -> str:
    """``mcp.Client`` mode for each protocol era: 2026-07-28 (``auto``) and the handshake."""
    return "auto" if request.param == "modern" else "legacy"


class RawGateway:
    """A ``pyhall-mcp`` subprocess spoken to in raw JSON-RPC lines (handshake era)."""

    def __init__(self, hall: Path) -> None:
        import os
        import subprocess
        import sys

        self.hall = hall
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYHALL_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyhall_mcp", "--hall", str(hall)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def send(self, message: dict) -> None:
        import json

        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        import json

        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())

    def handshake(self) -> None:
        self.send(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            }
        )
        assert self.receive()["id"] == 0
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def receipts(self) -> list[dict]:
        """Every receipt body in the hall's audit log, in chain order."""
        import json

        from pyhall_mcp.audit import SQLiteReceiptStore
        from pyhall_mcp.layout import HallLayout

        store = SQLiteReceiptStore(HallLayout.for_hall(self.hall).audit_db, readonly=True)
        try:
            return [json.loads(record.payload) for record in store.iter_all()]
        finally:
            store.close()


@pytest.fixture
def raw_gateway(gate_hall: Path):
    """Start a handshaken ``pyhall-mcp`` on a copy of the gate hall; killed at teardown."""
    gateway = RawGateway(gate_hall)
    gateway.handshake()
    yield gateway
    if gateway.proc.poll() is None:
        gateway.proc.kill()
    gateway.proc.wait()
