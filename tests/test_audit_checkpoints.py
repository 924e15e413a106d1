"""RFC 6962 Merkle roots and signed checkpoints."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from pyhall_mcp.checkpoints import (
    Checkpoint,
    MerkleFrontier,
    append_checkpoint,
    read_checkpoints,
    sign_checkpoint,
)
from pyhall_mcp.errors import SigningError
from pyhall_mcp.signing import Keyring, SigningKey

# Certificate Transparency's reference leaves and tree heads (RFC 6962 test data).
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, recursively, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])
    ).digest()


def test_frontier_matches_the_ct_reference_roots() -> None:
    tree = MerkleFrontier()
    assert tree.root().hex() == CT_ROOTS[0]
    for size, leaf in enumerate(CT_LEAVES, start=1):
        tree.append(leaf)
        assert tree.size == size
        assert tree.root().hex() == CT_ROOTS[size]


def test_frontier_matches_the_recursive_definition_at_every_size() -> None:
    rng = random.Random(6962)
    leaves = [rng.randbytes(32) for _ in range(140)]
    tree = MerkleFrontier()
    for size in range(1, len(leaves) + 1):
        tree.append(leaves[size - 1])
        assert tree.root() == reference_root(leaves[:size]), size


def test_frontier_resumes_from_its_nodes() -> None:
    leaves = [bytes([i]) * 32 for i in range(45)]
    tree = MerkleFrontier()
    for leaf in leaves[:29]:
        tree.append(leaf)
    resumed = MerkleFrontier(tree.size, [bytes.fromhex(h) for h in tree.nodes_hex()])
    for leaf in leaves[29:]:
        resumed.append(leaf)
    assert resumed.root() == reference_root(leaves)
    with pytest.raises(ValueError):
        MerkleFrontier(5, [b"x" * 32])  # size 5 needs two subtree roots


def _tree(n: int) -> MerkleFrontier:
    tree = MerkleFrontier()
    for i in range(n):
        tree.append(hashlib.sha256(bytes([i])).digest())
    return tree


def test_checkpoint_round_trip_and_signature(tmp_path: Path) -> None:
    key = SigningKey.generate()
    ring = Keyring([key.trusted(["receipts"])])
    path = tmp_path / "checkpoints.jsonl"
    for n in (3, 7):
        append_checkpoint(path, sign_checkpoint(_tree(n), "ab" * 32, key, 1_700_000_000_000_000))
    checkpoints, warnings = read_checkpoints(path)
    assert warnings == [] and [c.size for c in checkpoints] == [3, 7]
    for checkpoint in checkpoints:
        checkpoint.verify(ring)
        assert checkpoint.frontier().root().hex() == checkpoint.root
    assert checkpoints[1].line == 2

    forged = Checkpoint({**checkpoints[1].body, "size": 8}, 2)
    with pytest.raises(SigningError, match="does not verify"):
        forged.verify(ring)
    with pytest.raises(SigningError, match="not trusted for receipts"):
        checkpoints[0].verify(Keyring([key.trusted(["attestation"])]))


def test_malformed_checkpoint_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    path.write_text('{"v": 1}\n')
    with pytest.raises(ValueError, match=r"checkpoints.jsonl:1: unexpected fields"):
        read_checkpoints(path)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r":1: not a JSON checkpoint"):
        read_checkpoints(path)
    assert read_checkpoints(tmp_path / "missing.jsonl") == ([], [])
