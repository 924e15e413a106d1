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

from .errors import ConfigError

__all__ = [
    "HallLayout",
    "bundled_demo_hall",
    "default_hall_dir",
    "hall_dir_from",
    "require_hall_dir",
]


_PACKAGED_DEMO = Path(__file__).resolve().parent / "demo_hall"


def bundled_demo_hall() -> Path:
    """The demo hall shipped with the package (the repository root in a checkout)."""
    if (_PACKAGED_DEMO / "hall.yaml").exists():
        return _PACKAGED_DEMO
    return _PACKAGED_DEMO.parent.parent


def default_hall_dir() -> Path:
    """``$PYHALL_HALL`` if set, else the bundled demo hall."""
    env = _named_path(os.environ.get("PYHALL_HALL"), "PYHALL_HALL")
    return env if env is not None else bundled_demo_hall()


def hall_dir_from(chosen: str | None, source: str = "--hall") -> Path:
    """The hall ``--hall`` names, else :func:`default_hall_dir`."""
    path = _named_path(chosen, source)
    return path if path is not None else default_hall_dir()


def require_hall_dir(root: Path) -> Path:
    """``root``, or ``ConfigError`` when it is not a directory."""
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "hall directory not found"
        raise ConfigError(what, file=str(root), fix="pass a hall directory to --hall")
    return root


def _named_path(value: str | None, source: str) -> Path | None:
    """``value`` as a path; None when not given. An empty value is an error, not a
    default: a blank variable in a script must not open some other hall."""
    if value is None:
        return None
    if not value.strip():
        raise ConfigError(
            "is set but empty",
            location=source,
            fix=f"name a directory, or leave {source} out to use the default",
        )
    return Path(value).expanduser()


@dataclass(frozen=True)
class HallLayout:
    root: Path
    state_dir: Path
    state_source: str = "the state directory"  # what chose it, for error messages

    @classmethod
    def for_hall(cls, root: str | Path, state_dir: str | Path | None = None) -> HallLayout:
        root = Path(root).expanduser().resolve()
        if state_dir is not None:  # typed in a shell: relative to where it runs
            source = "--state-dir"
            state = _named_path(str(state_dir), source)
        else:
            source = "PYHALL_STATE_DIR"
            state = _named_path(os.environ.get(source), source)
            if state is not None and not state.is_absolute():
                # Set in an MCP client's config, it would count from a directory nobody
                # chose, and quietly start a second log, keys and approvals there.
                raise ConfigError(
                    f"must be an absolute path, not {str(state)!r}",
                    location=source,
                    fix="give the state directory's full path",
                )
        if state is None:
            source = "the state directory (default .pyhall in the hall)"
            if root == _PACKAGED_DEMO.resolve():
                # The demo hall inside an installed package is not ours to write into.
                base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
                state = Path(base) / "pyhall-mcp" / "demo-hall"
            else:
                state = root / ".pyhall"
        # A relative --state-dir counts from the current directory like --hall does, not
        # from inside the hall (where its signing key could be committed with the hall).
        return cls(root=root, state_dir=state.expanduser().absolute(), state_source=source)

    def check(self, *, writes: bool = True) -> None:
        """``ConfigError`` unless the hall is a directory and the state directory is, or
        can become, one this command can use: writable when it ``writes``; for a command
        that only reads (an auditor's read-only copy), a directory or nothing yet.
        Creates nothing: a read-only command leaves no trace."""
        require_hall_dir(self.root)
        path = self.state_dir
        while not path.exists() and path != path.parent:
            path = path.parent  # the nearest existing ancestor would hold it
        problem = None
        if not path.is_dir():
            problem = f"{path} is not a directory"
        elif writes and not os.access(path, os.W_OK | os.X_OK):
            problem = f"{path} is not writable"
        if problem:
            raise ConfigError(
                f"cannot hold the hall's state ({self.state_dir}): {problem}",
                location=self.state_source,
                fix="point it at a writable directory, where receipts, keys and approvals can live",
            )

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
    def attestation_key(self) -> Path:
        """The private key ``pyhall init`` makes for signing this hall's worker packages."""
        return self.state_dir / "keys" / "attestation.key"

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
