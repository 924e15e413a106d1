"""Worker attestation: package digests and signed manifests (spec section 8).

A worker package is a directory ``workers/<name>/`` holding ``worker.yaml``
and its code. Its *package digest* covers the whole tree (paths, entry types,
sizes, contents). The signed manifest ``attestation.dsse.json`` beside it is a
DSSE envelope around an in-toto Statement v1 whose subject is the worker id
and the package digest, signed with Ed25519 by a key the hall trusts for
``attestation`` and for the worker's ``org.<name>`` / ``x.<name>`` namespace.

Failures raise ``AttestationError`` with the spec's codes only:

=============================  ===============================================
``ATTEST_MANIFEST_MISSING``    no manifest file, or it is not a regular file
``ATTEST_SIGNATURE_MISSING``   an envelope without signatures
``ATTEST_SIG_INVALID``         not a DSSE envelope of an in-toto statement, a
                               bad signature, a key unknown, revoked, expired
                               or not trusted for ``attestation``
``ATTEST_NAMESPACE_INVALID``   worker id outside ``org.<name>.`` / ``x.<name>.``
                               or the key may not sign for its namespace
``ATTEST_MANIFEST_ID_MISMATCH`` the statement is malformed, or names another
                               worker, species, version or tool definition
                               than the record (or the expected worker id)
``ATTEST_HASH_MISMATCH``       the package differs from the signed digest;
                               also, with distinct messages: the package
                               cannot be hashed (a symlink resolving outside
                               it, a special file, an unreadable entry) and a
                               digest on the hall's deny list
=============================  ===============================================

No message ever contains a digest or a key id.

Hot path: ``PackageMonitor`` answers "what is this package's digest now?" from
the stat data of the package's entries (one ``lstat`` each, no listing, no
file reads) and re-hashes only when they changed. Execution:
``snapshot_package`` copies a verified package to a read-only, content-addressed
directory and re-checks the copy, so a subprocess worker runs exactly the bytes
that were verified, whatever happens to ``workers/<name>/`` after the check.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ._inotify import ChangeWatch
from ._yaml import load_document
from .canonical import canonical_json
from .canonical import digest as canonical_digest
from .errors import AttestationError, ConfigError, RegistryError, SigningError
from .signing import Keyring, SigningKey, sign_envelope, verify_envelope

__all__ = [
    "ATTEST_CODES",
    "ATTEST_HASH_MISMATCH",
    "ATTEST_MANIFEST_ID_MISMATCH",
    "ATTEST_MANIFEST_MISSING",
    "ATTEST_NAMESPACE_INVALID",
    "ATTEST_SIGNATURE_MISSING",
    "ATTEST_SIG_INVALID",
    "MANIFEST_NAME",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "RECORD_NAME",
    "SIGN_ALL_NOTE",
    "STATEMENT_TYPE",
    "AttestedPackage",
    "PackageMonitor",
    "build_statement",
    "find_packages",
    "load_deny_list",
    "package_digest",
    "package_identity",
    "sign_package",
    "snapshot_package",
    "tool_definition_digest",
    "trust_attestation_key",
    "verify_package",
    "worker_namespace",
]

ATTEST_MANIFEST_MISSING = "ATTEST_MANIFEST_MISSING"
ATTEST_MANIFEST_ID_MISMATCH = "ATTEST_MANIFEST_ID_MISMATCH"
ATTEST_HASH_MISMATCH = "ATTEST_HASH_MISMATCH"
ATTEST_SIGNATURE_MISSING = "ATTEST_SIGNATURE_MISSING"
ATTEST_SIG_INVALID = "ATTEST_SIG_INVALID"
ATTEST_NAMESPACE_INVALID = "ATTEST_NAMESPACE_INVALID"
ATTEST_CODES = (
    ATTEST_MANIFEST_MISSING,
    ATTEST_MANIFEST_ID_MISMATCH,
    ATTEST_HASH_MISMATCH,
    ATTEST_SIGNATURE_MISSING,
    ATTEST_SIG_INVALID,
    ATTEST_NAMESPACE_INVALID,
)

MANIFEST_NAME = "attestation.dsse.json"
RECORD_NAME = "worker.yaml"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://pyhall.dev/attestation/worker/v1"
TOOL_FIELDS = ("name", "title", "description", "input_schema", "output_schema", "annotations")

#: Never part of a package, at any depth: caches and version-control data.
_EXCLUDED_NAMES = frozenset({"__pycache__", ".git", ".hg", ".svn", ".DS_Store", ".pytest_cache"})
_EXCLUDED_SUFFIXES = (".pyc",)
_DIGEST_DOMAIN = b"pyhall-package-digest/v1\n"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_WORKER_ID = re.compile(r"^(?:org|x)\.[a-z0-9-]+(?:\.[a-z0-9-]+){1,2}$")
_KEY_ID_TEXT = re.compile(r"\bkey ed25519:[0-9a-f]+")
_HEX_RUN = re.compile(r"[0-9a-f]{16,}")
_MAX_MANIFEST_BYTES = 1 << 20
_CHUNK = 1 << 16

#: (sorted stat rows, newest mtime/ctime in ns) of a package tree.
Fingerprint = tuple[tuple[tuple[Any, ...], ...], int]


# -- package digest ------------------------------------------------------------


def _excluded(name: str, *, at_root: bool) -> bool:
    return (
        name in _EXCLUDED_NAMES
        or name.endswith(_EXCLUDED_SUFFIXES)
        or (at_root and name == MANIFEST_NAME)
    )


def _refuse(reason: str) -> AttestationError:
    return AttestationError(ATTEST_HASH_MISMATCH, f"package cannot be hashed: {_scrub(reason)}")


def _check_link(root: str, rel: str, target: str) -> None:
    """Refuse a symlink unless it stays inside the package, lexically and resolved."""
    if os.path.isabs(target):
        raise _refuse(f"symlink {rel} has an absolute target")
    lexical = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    if lexical == ".." or lexical.startswith("../"):
        raise _refuse(f"symlink {rel} points outside the package")
    resolved = os.path.realpath(os.path.join(root, rel))
    if resolved != root and not resolved.startswith(root + os.sep):
        raise _refuse(f"symlink {rel} points outside the package")


def _open_regular(path: str) -> BinaryIO:
    """Open a regular file without following a symlink or blocking on a fifo."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    fh = os.fdopen(fd, "rb", buffering=0)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise IsADirectoryError(errno.EINVAL, "not a regular file")
    return fh


def _hash_file(root: str, rel: str) -> tuple[int, str]:
    hasher, size = hashlib.sha256(), 0
    # The entry may have been swapped since the scan: never follow, never block.
    with _open_regular(os.path.join(root, rel)) as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return size, hasher.hexdigest()


def _walk(root: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative POSIX path, entry) for every entry of the package, parents first.

    Excluded names are skipped; symlinked directories are not descended into.
    """
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(root, rel_dir)) as listing:
            for entry in listing:
                if _excluded(entry.name, at_root=not rel_dir):
                    continue
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append(rel)
                yield rel, entry


def _record(root: str, rel: str, entry: os.DirEntry[str]) -> bytes:
    """One entry's line of the digest input: kind, path, size, content hash."""
    key = os.fsencode(rel)
    if entry.is_symlink():
        target = os.readlink(os.path.join(root, rel))
        _check_link(root, rel, target)
        raw = os.fsencode(target)
        kind, size, content = b"l", len(raw), hashlib.sha256(raw).hexdigest()
    elif entry.is_dir(follow_symlinks=False):
        kind, size, content = b"d", 0, ""
    elif entry.is_file(follow_symlinks=False):
        kind = b"f"
        size, content = _hash_file(root, rel)
    else:
        raise _refuse(f"{rel} is a special file (fifo, socket or device)")
    # Unambiguous: paths hold no NUL; sizes and hex digests no NUL or newline.
    return kind + key + b"\0%d\0" % size + content.encode("ascii") + b"\n"


def _hash_tree(root: str) -> str:
    records: list[tuple[bytes, bytes]] = []
    try:
        for rel, entry in _walk(root):
            records.append((os.fsencode(rel), _record(root, rel, entry)))
    except OSError as exc:
        raise _refuse(f"an entry cannot be read ({exc.strerror or exc})") from None
    records.sort()
    hasher = hashlib.sha256(_DIGEST_DOMAIN)
    for _, line in records:
        hasher.update(line)
    return hasher.hexdigest()


def _root_of(worker_dir: str | Path) -> str:
    try:
        return os.path.realpath(os.fspath(worker_dir), strict=True)
    except OSError as exc:
        raise _refuse(f"package directory is unreadable ({exc.strerror})") from None


def package_digest(worker_dir: str | Path) -> str:
    """SHA-256 (64 lowercase hex) over the package tree, manifest and caches excluded.

    Raises ``AttestationError(ATTEST_HASH_MISMATCH)`` when the tree cannot be
    hashed: a symlink resolving outside the package, a special file, an
    unreadable entry.
    """
    root = _root_of(worker_dir)
    if not os.path.isdir(root):
        raise _refuse("not a directory")
    return _hash_tree(root)


# -- statements and manifests --------------------------------------------------


def tool_definition_digest(tool: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` pinning a tool definition (rug-pull detection)."""
    if not isinstance(tool, Mapping):
        raise TypeError("tool definition must be a mapping")
    return canonical_digest({name: tool.get(name) for name in TOOL_FIELDS})


def worker_namespace(worker_id: str) -> str | None:
    """``org.<name>`` / ``x.<name>`` of a well-formed worker id, else None."""
    if not isinstance(worker_id, str) or len(worker_id) > 64 or not _WORKER_ID.match(worker_id):
        return None
    return ".".join(worker_id.split(".")[:2])


def _identity(record: Mapping[str, Any], source: str) -> dict[str, str]:
    """The fields a statement binds, read from an enrollment record."""
    found: dict[str, str] = {}
    for name in ("worker_id", "worker_species_id", "version"):
        value = record.get(name)
        if not isinstance(value, str) or not value:
            raise RegistryError(
                f"`{name}` must be a non-empty string",
                file=source,
                location=name,
                fix="quote it if YAML reads it as a number" if name == "version" else None,
            )
        found[name] = value
    tool = record.get("tool")
    if not isinstance(tool, Mapping):
        raise RegistryError("`tool` must be a mapping", file=source, location="tool")
    found["tool_digest"] = tool_definition_digest(tool)
    return found


def _utc_stamp(when: datetime | None) -> str:
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_statement(
    record: Mapping[str, Any],
    digest: str,
    *,
    build_source: str = "local",
    built_at: datetime | None = None,
) -> dict[str, Any]:
    """The in-toto Statement v1 attesting ``record``'s package with ``digest``."""
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("package digest must be 64 lowercase hex characters")
    identity = _identity(record, source="worker record")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": identity["worker_id"], "digest": {"sha256": digest}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            **identity,
            "built_at": _utc_stamp(built_at),
            "build_source": build_source,
        },
    }


def _load_record(worker_dir: Path) -> dict[str, Any]:
    path = worker_dir / RECORD_NAME
    if not path.is_file():
        raise RegistryError(
            f"no {RECORD_NAME}", file=str(worker_dir), fix="every worker package needs one"
        )
    doc = load_document(path)
    if not isinstance(doc, dict):
        raise RegistryError("expected a mapping", file=str(path))
    return doc


def package_identity(
    worker_dir: str | Path, record: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """worker_id, worker_species_id, version and tool_digest of a package's record.

    ``RegistryError`` names the file and field when the record cannot be signed.
    """
    worker_dir = Path(worker_dir)
    source = str(worker_dir / RECORD_NAME)
    identity = _identity(_load_record(worker_dir) if record is None else record, source)
    if worker_namespace(identity["worker_id"]) is None:
        raise RegistryError(
            "worker_id must live in an `org.<name>.` or `x.<name>.` namespace",
            file=source,
            location="worker_id",
            fix="e.g. org.example.my-worker",
        )
    return identity


def find_packages(workers_dir: str | Path) -> list[Path]:
    """The worker packages (directories holding a worker.yaml) under ``workers_dir``."""
    workers_dir = Path(workers_dir)
    if not workers_dir.is_dir():
        return []
    return sorted(d for d in workers_dir.iterdir() if (d / RECORD_NAME).is_file())


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sign_package(
    worker_dir: str | Path,
    key: SigningKey,
    *,
    build_source: str = "local",
    built_at: datetime | None = None,
) -> dict[str, Any]:
    """Sign the package at ``worker_dir``: write and return its DSSE manifest."""
    worker_dir = Path(worker_dir)
    record = _load_record(worker_dir)
    package_identity(worker_dir, record)
    statement = build_statement(
        record, package_digest(worker_dir), build_source=build_source, built_at=built_at
    )
    envelope = sign_envelope(key, PAYLOAD_TYPE, canonical_json(statement))
    text = json.dumps(envelope, indent=2, sort_keys=True) + "\n"
    _write_atomic(worker_dir / MANIFEST_NAME, text.encode("utf-8"))
    return envelope


#: Notes of keyring entries written by ``trust_attestation_key``; such entries are
#: replaced by the next one, so re-signing a hall never piles up stale keys.
SIGN_ALL_NOTE = "pyhall attest sign-all"


def trust_attestation_key(
    trusted_keys: str | Path, key: SigningKey, namespaces: Collection[str], *, note: str = ""
) -> list[str]:
    """Trust ``key`` for attestation in ``namespaces`` in the keyring file.

    Earlier entries written by this function are removed; every other entry
    is kept. Returns the removed key ids.
    """
    ring = Keyring.load(trusted_keys)
    removed = [
        k.key_id
        for k in ring
        if (k.note or "").startswith(SIGN_ALL_NOTE) and k.key_id != key.key_id
    ]
    entry = key.trusted(
        ["attestation"],
        namespaces=sorted(namespaces),
        note=f"{SIGN_ALL_NOTE}: {note}" if note else SIGN_ALL_NOTE,
    )
    kept = [k for k in ring if k.key_id not in removed and k.key_id != key.key_id]
    Keyring([*kept, entry]).save(trusted_keys)
    return removed


# -- verification --------------------------------------------------------------


@dataclass(frozen=True)
class AttestedPackage:
    """A package whose manifest verified; ``digest`` is its package digest."""

    worker_id: str
    digest: str
    key_id: str
    statement: dict[str, Any]
    path: Path | None = None
    #: Stat fingerprint taken *before* hashing, so a later edit always shows.
    fingerprint: Fingerprint | None = field(default=None, repr=False, compare=False)

    def monitor(self) -> PackageMonitor:
        if self.path is None:
            raise ValueError("package has no path")
        return PackageMonitor(self.path, self.digest, fingerprint=self.fingerprint)


def _scrub(message: str) -> str:
    return _HEX_RUN.sub("…", _KEY_ID_TEXT.sub("the signing key", message))


def _read_manifest(path: Path) -> Any:
    try:
        with _open_regular(str(path)) as fh:
            data = fh.read(_MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise AttestationError(
            ATTEST_MANIFEST_MISSING, "the package has no signed manifest"
        ) from None
    except OSError:
        raise AttestationError(
            ATTEST_MANIFEST_MISSING, "the manifest is not a readable regular file"
        ) from None
    if len(data) > _MAX_MANIFEST_BYTES:
        raise AttestationError(ATTEST_SIG_INVALID, "the manifest is oversize")
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise AttestationError(ATTEST_SIG_INVALID, "the manifest is not JSON") from None


def _statement_of(payload: bytes) -> dict[str, Any]:
    """Check the signed statement's shape; return it."""

    def bad(reason: str) -> AttestationError:
        return AttestationError(ATTEST_MANIFEST_ID_MISMATCH, f"malformed statement: {reason}")

    try:
        statement = json.loads(payload)
    except (ValueError, RecursionError):
        raise bad("not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise bad("not an in-toto Statement v1")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise bad("not a pyhall worker attestation")
    subject, predicate = statement.get("subject"), statement.get("predicate")
    if not isinstance(subject, list) or len(subject) != 1 or not isinstance(subject[0], dict):
        raise bad("expected exactly one subject")
    digest = (subject[0].get("digest") or {}).get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise bad("subject digest is not a sha256 hex digest")
    if not isinstance(predicate, dict):
        raise bad("no predicate")
    for name in ("worker_id", "worker_species_id", "version", "tool_digest"):
        if not isinstance(predicate.get(name), str):
            raise bad(f"predicate lacks {name}")
    if subject[0].get("name") != predicate["worker_id"]:
        raise bad("subject and predicate name different workers")
    return statement


def _check_record(predicate: Mapping[str, Any], record: Mapping[str, Any], source: str) -> None:
    try:
        identity = _identity(record, source)
    except (ConfigError, TypeError) as exc:
        reason = exc.message if isinstance(exc, ConfigError) else str(exc)
        raise AttestationError(
            ATTEST_MANIFEST_ID_MISMATCH, f"the enrollment record is invalid: {reason}"
        ) from None
    for name, value in identity.items():
        if predicate[name] != value:
            what = "tool definition" if name == "tool_digest" else name
            raise AttestationError(
                ATTEST_MANIFEST_ID_MISMATCH,
                f"the manifest was signed for another {what} than the enrollment record's",
            )


def verify_package(
    worker_dir: str | Path,
    *,
    keyring: Keyring,
    deny_list: Collection[str] = (),
    expected_worker_id: str | None = None,
    record: Mapping[str, Any] | None = None,
    when: datetime | None = None,
) -> AttestedPackage:
    """Verify ``worker_dir`` against its manifest; ``AttestationError`` says why not.

    ``record`` is the enrollment record the caller uses (default: the
    package's own ``worker.yaml``); ``when`` the time keys must be valid at.
    """
    worker_dir = Path(worker_dir)
    envelope = _read_manifest(worker_dir / MANIFEST_NAME)
    if not isinstance(envelope, dict):
        raise AttestationError(ATTEST_SIG_INVALID, "the manifest is not a DSSE envelope")
    if not envelope.get("signatures"):
        raise AttestationError(ATTEST_SIGNATURE_MISSING, "the manifest carries no signature")
    try:
        payload, key = verify_envelope(
            envelope, keyring, purpose="attestation", payload_type=PAYLOAD_TYPE, when=when
        )
    except SigningError as exc:
        raise AttestationError(
            ATTEST_SIG_INVALID, f"manifest signature rejected: {_scrub(exc.message)}"
        ) from None

    statement = _statement_of(payload)
    predicate = statement["predicate"]
    worker_id = predicate["worker_id"]
    if worker_namespace(worker_id) is None:
        raise AttestationError(
            ATTEST_NAMESPACE_INVALID,
            "the worker id is not in an `org.<name>.` or `x.<name>.` namespace",
        )
    if not key.may_sign_namespace(worker_id):
        # Another signature on the envelope may hold a key trusted for this namespace.
        try:
            _, key = verify_envelope(
                envelope,
                keyring,
                purpose="attestation",
                payload_type=PAYLOAD_TYPE,
                when=when,
                namespace_of=worker_id,
            )
        except SigningError:
            raise AttestationError(
                ATTEST_NAMESPACE_INVALID,
                f"the signing key is not trusted for the namespace {worker_namespace(worker_id)}",
            ) from None

    if expected_worker_id is not None and worker_id != expected_worker_id:
        raise AttestationError(
            ATTEST_MANIFEST_ID_MISMATCH, "the manifest was signed for another worker"
        )
    source = str(worker_dir / RECORD_NAME)
    if record is None:
        try:
            record = _load_record(worker_dir)
        except ConfigError as exc:
            raise AttestationError(
                ATTEST_MANIFEST_ID_MISMATCH, f"the enrollment record is unreadable: {exc.message}"
            ) from None
    _check_record(predicate, record, source)

    signed = statement["subject"][0]["digest"]["sha256"]
    if signed in deny_list:
        raise AttestationError(ATTEST_HASH_MISMATCH, "the package is on the hall's deny list")
    root = _root_of(worker_dir)
    try:
        fingerprint = _fingerprint(root)
    except OSError as exc:
        raise _refuse(f"an entry cannot be read ({exc.strerror or exc})") from None
    if _hash_tree(root) != signed:
        raise AttestationError(
            ATTEST_HASH_MISMATCH, "the package contents differ from the signed manifest"
        )
    return AttestedPackage(
        worker_id=worker_id,
        digest=signed,
        key_id=key.key_id,
        statement=statement,
        path=Path(root),
        fingerprint=fingerprint,
    )


def _normal_digest(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower().removeprefix("sha256:")
    return value if _HEX64.match(value) else None


def load_deny_list(path: str | Path) -> frozenset[str]:
    """Denied package digests from ``{denied_digests: [{digest, reason}]}``; no file, none.

    A link to a missing file (an unmounted shared list) or an empty file (one an editor
    truncated) is refused: either would quietly deny nothing.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return frozenset()
    doc = load_document(path)
    fix = "write {denied_digests: [{digest: <sha256>, reason: <why>}]} (or [] for none)"
    # A misspelt key would empty the list: refuse what is not understood.
    if isinstance(doc, dict) and (unknown := sorted(set(doc) - {"denied_digests"})):
        raise ConfigError(f"unknown field {unknown[0]!r}", file=str(path), fix=fix)
    entries = doc.get("denied_digests") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(
            "expected a mapping with a `denied_digests` list", file=str(path), fix=fix
        )
    denied: set[str] = set()
    for index, entry in enumerate(entries):
        digest = _normal_digest(entry.get("digest")) if isinstance(entry, dict) else None
        if isinstance(entry, dict) and (extra := sorted(set(entry) - {"digest", "reason"})):
            raise ConfigError(
                f"unknown field {extra[0]!r}",
                file=str(path),
                location=f"denied_digests[{index}]",
                fix=fix,
            )
        if digest is None:
            raise ConfigError(
                "each entry needs `digest`: 64 hex characters (optionally `sha256:`-prefixed)",
                file=str(path),
                location=f"denied_digests[{index}]",
                fix="copy the digest from `pyhall attest verify --json`",
            )
        denied.add(digest)
    return frozenset(denied)


# -- hot path: stat fingerprint ------------------------------------------------


def _stat_row(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _fingerprint(root: str) -> Fingerprint:
    """Stat-only picture of the tree: (entries, newest change time). No file reads.

    ctime is included because ``os.utime`` can put an mtime back but nothing
    short of changing the clock puts a ctime back. Directories are entries too
    (the root first): adding, removing or renaming an entry changes its
    directory's times, which lets ``PackageMonitor`` re-check a tree without
    listing it.
    """
    top = _stat_row(os.lstat(root))
    rows: list[tuple[Any, ...]] = [("", *top)]
    newest = max(top[3], top[4])
    for rel, entry in _walk(root):
        row = _stat_row(entry.stat(follow_symlinks=False))
        rows.append((rel, *row))
        newest = max(newest, row[3], row[4])
    rows.sort()
    return tuple(rows), newest


class PackageMonitor:
    """The current digest of a verified package, re-hashing only when it changed.

    On Linux the package's entries are watched with inotify (set before the hash
    they vouch for), and its ancestors for being moved or deleted (the path would
    then lead to another tree), so the check before a dispatch is one zero-timeout
    poll. Elsewhere it is one ``lstat`` per entry of the last
    fingerprint (files and directories; no listing, no reads): an edited, replaced
    or removed file changes its own stat data, an added or renamed one its
    directory's. Any change means a full fingerprint and re-hash.

    Without a watch, like git's "racily clean" entries, a fingerprint taken within
    ``racy_window_ns`` of the tree's newest change time is not trusted: a write in
    the same timestamp tick would leave stat data unchanged, so such a package is
    re-hashed on the next call until it settles. A watch has no such window.
    """

    def __init__(
        self,
        worker_dir: str | Path,
        digest: str,
        *,
        fingerprint: Fingerprint | None = None,
        racy_window_ns: int = 2_000_000_000,
        watch: bool = True,
    ) -> None:
        self.path = Path(worker_dir)
        self._where = os.fspath(worker_dir)
        self.racy_window_ns = racy_window_ns
        self._watching = watch
        self._ancestors = _ancestors(self._where)
        # One tuple, replaced whole: readers on other threads see a consistent state.
        # Without a fingerprint from before the verifying hash, the first call re-hashes.
        checks = self._checks(fingerprint, time.time_ns())
        watcher = self._watch(checks)
        if watcher is not None and not _unchanged(checks):
            watcher.close()  # changed before the watch was set: re-hash on first use
            checks = watcher = None
        self._state: _MonitorState = (checks, digest, watcher)

    def _checks(self, fingerprint: Fingerprint | None, taken_ns: int) -> _Checks | None:
        """(path, stat row) of every entry, root first; None when not trusted."""
        if fingerprint is None or fingerprint[1] >= taken_ns - self.racy_window_ns:
            return None
        return self._paths(fingerprint)

    def _paths(self, fingerprint: Fingerprint) -> _Checks:
        join = os.path.join
        return tuple(
            (join(self._where, row[0]) if row[0] else self._where, row[1:])
            for row in fingerprint[0]
        )

    def _watch(self, checks: _Checks | None) -> ChangeWatch | None:
        if checks is None or not self._watching:
            return None
        return ChangeWatch.open((path for path, _ in checks), moved=self._ancestors)

    def current_digest(self) -> str | None:
        """The package digest now, or None when the package cannot be read or hashed."""
        checks, digest, watcher = self._state
        try:
            if checks is not None:
                if watcher is None:
                    if _unchanged(checks):
                        return digest
                elif not watcher.changed():
                    return digest
            if watcher is not None:
                watcher.close()
            self._state = self._rehash()
        except (OSError, AttestationError):
            self._state = (None, digest, None)
            return None
        return self._state[1]

    def _rehash(self) -> _MonitorState:
        taken = time.time_ns()
        fingerprint = _fingerprint(self._where)
        paths = self._paths(fingerprint)
        # Watches first, then the hash: whatever changes after the hash read it raises
        # an event. An entry added or removed between the listing and its directory's
        # watch shows as a different listing afterwards.
        watcher = self._watch(paths)
        digest = package_digest(self.path)
        if watcher is None:
            return (self._checks(fingerprint, taken), digest, None)
        names = [row[0] for row in fingerprint[0]]
        if watcher.changed() or names != [row[0] for row in _fingerprint(self._where)[0]]:
            watcher.close()
            return (None, digest, None)
        return (paths, digest, watcher)


_Checks = tuple[tuple[str, tuple[Any, ...]], ...]
_MonitorState = tuple[_Checks | None, str, ChangeWatch | None]


def _ancestors(path: str) -> tuple[str, ...]:
    """Every directory above ``path``, nearest first."""
    found: list[str] = []
    parent = os.path.dirname(path)
    while parent and parent not in found:
        found.append(parent)
        parent = os.path.dirname(parent)
    return tuple(found)


def _unchanged(checks: _Checks | None) -> bool:
    return checks is not None and all(_stat_row(os.lstat(path)) == row for path, row in checks)


# -- execution snapshots -------------------------------------------------------


def _make_writable(path: str) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o755)


def _remove_tree(path: str) -> None:
    if os.path.lexists(path):
        _make_writable(path)
        shutil.rmtree(path)


def _intact(path: Path, digest: str) -> bool:
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        return _hash_tree(str(path)) == digest
    except AttestationError:
        return False


def _copy_package(src: str, dst: str) -> None:
    """Copy the package entries of ``src`` (no caches, no manifest) into ``dst``."""
    for rel, entry in _walk(src):
        source, target = os.path.join(src, rel), os.path.join(dst, rel)
        if entry.is_symlink():
            os.symlink(os.readlink(source), target)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(target, 0o755)
        else:
            with _open_regular(source) as fin, open(target, "xb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
                executable = os.fstat(fin.fileno()).st_mode & 0o111
            os.chmod(target, 0o555 if executable else 0o444)


def _seal(path: str) -> None:
    """Directories read-only, deepest first (files were sealed as copied)."""
    dirs = [dirpath for dirpath, _, _ in os.walk(path)]
    for dirpath in reversed(dirs):
        os.chmod(dirpath, 0o555)


def _install(staging: str, final: Path, digest: str) -> None:
    """Move the sealed copy into place; keep a concurrent intact one, replace a damaged one."""
    try:
        os.rename(staging, final)
        return
    except OSError:
        if _intact(final, digest):
            _remove_tree(staging)
            return
    # Damaged: move it aside first so the name is never half-removed. A sibling
    # name, because moving a read-only directory to another parent is refused.
    aside = final.with_name(f".damaged.{os.urandom(8).hex()}")
    os.rename(final, aside)
    os.rename(staging, final)
    _remove_tree(str(aside))


def snapshot_package(worker_dir: str | Path, digest: str, snapshots_root: str | Path) -> Path:
    """A read-only copy of the verified package at ``snapshots_root/<digest>/``.

    The copy is re-hashed and refused (``ATTEST_HASH_MISMATCH``) unless it
    equals ``digest``, so a package edited after verification never reaches
    the snapshot, and running from the snapshot leaves no window between the
    check and the execution. An existing snapshot is reused only if it still
    hashes to ``digest``; a damaged one is replaced. Files are 0o444 (0o555
    if executable), directories 0o555; caches and the manifest are not copied.
    """
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise ValueError("digest must be 64 lowercase hex characters")
    snapshots = Path(snapshots_root)
    snapshots.mkdir(parents=True, exist_ok=True)
    final = snapshots / digest
    if _intact(final, digest):
        return final
    src = _root_of(worker_dir)
    staging = tempfile.mkdtemp(dir=snapshots, prefix=".staging.")
    try:
        try:
            _copy_package(src, staging)
        except OSError as exc:
            raise _refuse(f"an entry cannot be copied ({exc.strerror or exc})") from None
        if _hash_tree(staging) != digest:
            raise AttestationError(
                ATTEST_HASH_MISMATCH, "the package changed after verification; snapshot refused"
            )
        _seal(staging)
        _install(staging, final, digest)
    except BaseException:
        _remove_tree(staging)
        raise
    return final
