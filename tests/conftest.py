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
