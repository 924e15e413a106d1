"""Where things live in a hall directory.

A hall is a directory. Its configuration (``hall.yaml``, rules, policies,
workers, trusted public keys) is meant for version control; its state (the
private signing key, receipts, checkpoints, approvals) lives in a state
directory, ``.pyhall/`` inside the hall unless ``PYHALL_STATE_DIR`` or
``hall.yaml``'s ``state_dir`` says otherwise, and is never committed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HallLayout", "bundled_demo_hall", "default_hall_dir"]


def bundled_demo_hall() -> Path:
    """The demo hall shipped with the package (the repository root in a checkout)."""
    here = Path(__file__).resolve().parent
    packaged = here / "demo_hall"
    if (packaged / "hall.yaml").exists():
        return packaged
    return here.parent


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
        state = Path(chosen).expanduser() if chosen else Path(".pyhall")
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
