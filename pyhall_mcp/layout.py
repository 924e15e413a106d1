"""Where things live in a hall directory.

A hall is a directory. Its configuration (``hall.yaml``, rules, policies,
workers, trusted public keys) is meant for version control; its state (the
private signing key, receipts, checkpoints, approvals) lives in a state
directory, ``.pyhall/`` inside the hall unless ``PYHALL_STATE_DIR`` (or
``--state-dir``) says otherwise, and is never committed. The demo hall inside an
installed package keeps its state under ``$XDG_STATE_HOME/pyhall-mcp/demo-hall``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HallLayout", "bundled_demo_hall", "default_hall_dir"]


_PACKAGED_DEMO = Path(__file__).resolve().parent / "demo_hall"


def bundled_demo_hall() -> Path:
    """The demo hall shipped with the package (the repository root in a checkout)."""
    if (_PACKAGED_DEMO / "hall.yaml").exists():
        return _PACKAGED_DEMO
    return _PACKAGED_DEMO.parent.parent


def default_hall_dir() -> Path:
    """``$PYHALL_HALL`` if set, else the bundled demo hall."""
    env = os.environ.get("PYHALL_HALL")
    return Path(env).expanduser() if env else bundled_demo_hall()


@dataclass(frozen=True)
class HallLayout:
    root: Path
    state_dir: Path

    @classmethod
    def for_hall(cls, root: str | Path, state_dir: str | Path | None = None) -> HallLayout:
        root = Path(root).expanduser().resolve()
        chosen = state_dir or os.environ.get("PYHALL_STATE_DIR")
        if chosen:
            state = Path(chosen).expanduser()
        elif root == _PACKAGED_DEMO.resolve():
            # The demo hall inside an installed package is not ours to write into.
            base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
            state = Path(base) / "pyhall-mcp" / "demo-hall"
        else:
            state = Path(".pyhall")
        if not state.is_absolute():
            state = root / state
        return cls(root=root, state_dir=state)

    # configuration (version-controlled)
    @property
    def hall_yaml(self) -> Path:
        return self.root / "hall.yaml"

    @property
    def rules_dir(self) -> Path:
        return self.root / "rules"

    @property
    def policies_dir(self) -> Path:
        return self.root / "policies"

    @property
    def workers_dir(self) -> Path:
        return self.root / "workers"

    @property
    def trusted_keys(self) -> Path:
        """Public keys the hall trusts (attestation signers, credential issuers)."""
        return self.root / "keys" / "trusted.yaml"

    @property
    def attestation_deny_list(self) -> Path:
        """Package digests refused whatever their signature says."""
        return self.root / "keys" / "deny-list.yaml"

    # state (never committed)
    @property
    def signing_key(self) -> Path:
        """The hall's private receipt-signing key (0600)."""
        return self.state_dir / "keys" / "signing.key"

    @property
    def receipt_keyring(self) -> Path:
        """Public halves of every receipt-signing key the hall has used."""
        return self.state_dir / "keys" / "receipt-keys.yaml"

    @property
    def audit_db(self) -> Path:
        return self.state_dir / "audit.db"

    @property
    def checkpoints(self) -> Path:
        return self.state_dir / "checkpoints.jsonl"

    @property
    def approvals_db(self) -> Path:
        return self.state_dir / "approvals.db"
