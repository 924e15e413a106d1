"""Signed checkpoints of the receipt log: RFC 6962 Merkle roots kept outside it.

A hash chain shows that no receipt was edited, removed or reordered *inside*
the log, but cutting its tail leaves a shorter chain that still verifies. A
checkpoint, signed and appended to a separate file, commits to the log's size,
its Merkle root and its head hash; a log shorter than its latest checkpoint, or
one whose first ``size`` receipts hash to another root, has been tampered with.

The tree is RFC 6962 §2.1: leaf = SHA-256(0x00 || receipt hash bytes), node =
SHA-256(0x01 || left || right), split at the largest power of two below the
size. :class:`MerkleFrontier` keeps only the roots of the perfect subtrees
(at most 64 hashes) so appends and roots cost O(log n). Each checkpoint also
carries that frontier, so a restarting log resumes from its latest checkpoint
instead of rehashing every receipt.

A checkpoint line is the canonical JSON of::

    {"v": 1, "size": N, "root": hex, "head_hash": hex, "frontier": [hex, ...],
     "at_us": int, "signing_key_id": "ed25519:...", "signature": base64}

where ``signature`` is Ed25519 over
``pae(CHECKPOINT_PAYLOAD_TYPE, canonical_json(checkpoint without signature))``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .canonical import canonical_json
from .errors import SigningError
from .signing import Keyring, SigningKey, b64decode, b64encode, pae

__all__ = [
    "CHECKPOINT_PAYLOAD_TYPE",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "MerkleFrontier",
    "append_checkpoint",
    "read_checkpoints",
    "sign_checkpoint",
    "time_of_us",
]

#: DSSE payload type of a signed checkpoint.
CHECKPOINT_PAYLOAD_TYPE = "application/vnd.pyhall.checkpoint+json"
CHECKPOINT_VERSION = 1

_EMPTY_ROOT = hashlib.sha256(b"").digest()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_of_us(us: int) -> datetime:
    """Unix microseconds as an aware datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(microseconds=us)


class MerkleFrontier:
    """An append-only RFC 6962 Merkle tree, kept as its perfect-subtree roots."""

    __slots__ = ("_nodes", "size")

    def __init__(self, size: int = 0, nodes: Iterable[bytes] = ()) -> None:
        # _nodes[i] is the root of a perfect subtree; sizes follow the binary
        # digits of ``size`` from the largest down.
        self._nodes: list[bytes] = list(nodes)
        self.size = size
        if len(self._nodes) != bin(size).count("1"):
            raise ValueError("frontier does not match the tree size")

    def append(self, leaf_data: bytes) -> None:
        node = hashlib.sha256(b"\x00" + leaf_data).digest()
        size = self.size
        # Merge with the equal-sized subtrees to the left (the trailing 1 bits).
        while size & 1:
            node = hashlib.sha256(b"\x01" + self._nodes.pop() + node).digest()
            size >>= 1
        self._nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self._nodes:
            return _EMPTY_ROOT
        acc = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            acc = hashlib.sha256(b"\x01" + node + acc).digest()
        return acc

    def nodes_hex(self) -> list[str]:
        return [node.hex() for node in self._nodes]

    def copy(self) -> MerkleFrontier:
        return MerkleFrontier(self.size, self._nodes)


@dataclass(frozen=True)
class Checkpoint:
    """One parsed checkpoint line; ``line`` is its 1-based line number in ``source``."""

    body: dict[str, Any]
    line: int
    source: str = "checkpoints"

    @property
    def size(self) -> int:
        return self.body["size"]

    @property
    def root(self) -> str:
        return self.body["root"]

    @property
    def head_hash(self) -> str | None:
        return self.body["head_hash"]

    def frontier(self) -> MerkleFrontier:
        """The tree this checkpoint commits to; ValueError if it disagrees with ``root``."""
        nodes = [bytes.fromhex(node) for node in self.body["frontier"]]
        tree = MerkleFrontier(self.size, nodes)
        if tree.root().hex() != self.root:
            raise ValueError("frontier does not hash to root")
        return tree

    def verify(self, keyring: Keyring) -> None:
        """Check the signature (purpose ``receipts``); SigningError says why not."""
        unsigned = {k: v for k, v in self.body.items() if k != "signature"}
        try:
            signature = b64decode(self.body["signature"])
        except ValueError:
            raise SigningError("checkpoint signature is not base64") from None
        try:
            message = pae(CHECKPOINT_PAYLOAD_TYPE, canonical_json(unsigned))
            when = time_of_us(self.body["at_us"])
        except (ValueError, OverflowError, RecursionError) as exc:  # e.g. at_us of 10**30
            raise SigningError(f"checkpoint cannot be checked: {exc}") from None
        keyring.verify(
            self.body["signing_key_id"], message, signature, purpose="receipts", when=when
        )


def sign_checkpoint(
    tree: MerkleFrontier, head_hash: str | None, key: SigningKey, at_us: int
) -> dict[str, Any]:
    """A signed checkpoint of ``tree`` whose last receipt hash is ``head_hash``."""
    body: dict[str, Any] = {
        "v": CHECKPOINT_VERSION,
        "size": tree.size,
        "root": tree.root().hex(),
        "head_hash": head_hash,
        "frontier": tree.nodes_hex(),
        "at_us": at_us,
        "signing_key_id": key.key_id,
    }
    body["signature"] = b64encode(key.sign(pae(CHECKPOINT_PAYLOAD_TYPE, canonical_json(body))))
    return body


def append_checkpoint(path: Path, checkpoint: Mapping[str, Any]) -> None:
    """Append one checkpoint line and fsync it (and the directory when the file is new)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, canonical_json(dict(checkpoint)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "size": int,
    "root": str,
    "head_hash": (str, type(None)),
    "frontier": list,
    "at_us": int,
    "signing_key_id": str,
    "signature": str,
}


def read_checkpoints(path: Path, *, kept: bool = False) -> tuple[list[Checkpoint], list[str]]:
    """Parse every checkpoint line; return (checkpoints, warnings).

    In the hall's own file, a last line without its newline is a write cut short by
    a crash: it is skipped with a warning. In a copy ``kept`` elsewhere by the operator
    nothing is skipped: a last line counts as one. Any malformed line is a ValueError
    naming it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], []
    warnings: list[str] = []
    lines = data.split(b"\n")
    if kept and lines[-1].strip():
        lines.append(b"")
    elif lines[-1]:
        warnings.append(f"{path}: ignored an incomplete last line (a write cut short)")
    checkpoints = []
    for number, raw in enumerate(lines[:-1], start=1):
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ValueError(f"{path}:{number}: not a JSON checkpoint") from None
        problem = _shape_problem(body)
        if problem:
            raise ValueError(f"{path}:{number}: {problem}")
        checkpoints.append(Checkpoint(body, number, path.name))
    return checkpoints, warnings


def _shape_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "not a JSON object"
    if set(body) != set(_FIELDS):
        return f"unexpected fields {sorted(set(body) ^ set(_FIELDS))}"
    for name, kind in _FIELDS.items():
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"field {name!r} has the wrong type"
    if body["v"] != CHECKPOINT_VERSION:
        return f"unknown checkpoint version {body['v']}"
    if body["size"] < 0:
        return "negative size"
    return None
