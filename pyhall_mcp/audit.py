"""Evidence receipts: a signed, hash-chained, durable audit trail.

Every decision the hall makes and every execution it runs leaves a receipt.
Receipts are chained (each names the hash of the one before), signed with the
hall's Ed25519 key over the DSSE pre-authentication encoding, committed to
SQLite before the caller is answered, and summarised by signed Merkle
checkpoints kept in a separate file (:mod:`pyhall_mcp.checkpoints`). Anyone
holding the receipts and the public keys can verify the whole history offline
with :func:`verify_log` (``pyhall audit verify``); the private key is never
needed, printed, logged or put in a receipt.

Receipt body, as the hall passes it (values are JSON without floats: times
are integer microseconds, arguments and results appear only as digests):

- ``kind``: ``"decision"`` | ``"outcome"`` | ``"approval"`` | ``"key_rotation"``.
- decision receipts: ``correlation_id``, ``decision_id``, ``tenant_id``,
  ``tool``, ``worker_id``, ``worker_species_id``, ``capability_id``,
  ``decision`` (``"allowed"`` | ``"denied"`` | ``"held"`` | ``"dry_run"`` |
  ``"invalid_arguments"`` | ``"unknown_tool"`` | ``"internal_error"``),
  ``deny_code``, ``matched_rule_id``, ``policy_version``, ``blast_score``,
  ``arguments_digest``, ``dry_run``, ``artifact_hash``, ``controls_verified``,
  ``policy_decision``, ``dispatched_at``.
- outcome receipts: ``decision_receipt_id``, ``correlation_id``, ``status``
  (``"ok"`` | ``"error"`` | ``"timeout"`` | ``"cancelled"``),
  ``result_digest``, ``duration_us``.
- key rotation receipts (written by :meth:`ReceiptLog.open`): ``old_key_id``,
  ``new_key_id``; signed by the new key.

The log adds the chain fields: ``v`` (schema version), ``receipt_id``
(``rcpt_`` + 32 hex digits, time-ordered then random), ``seq`` (1-based, contiguous),
``recorded_at_us``, ``prev_receipt_hash`` (None for seq 1),
``signing_key_id``, then ``receipt_hash`` = SHA-256 hex of the RFC 8785
canonical JSON of the receipt without ``receipt_hash`` and ``signature``, and
``signature`` = base64 Ed25519 over ``pae(RECEIPT_PAYLOAD_TYPE,
canonical_json(receipt without signature))``. So the DSSE payload of a receipt
is its canonical form including its hash, and :func:`export_dsse` builds a
standard envelope from the stored signature without re-signing.

Writes are group commits under one write lock that guards the store and the
chain head: queued bodies are sealed in order, inserted in one transaction,
committed (WAL; fsynced unless the hall chose ``durability: os``), and only
then are their callers answered. A caller on an event loop (the gateway) commits on that loop, at
the end of the loop's current turn, with whatever else was queued by then:
no thread hand-off on the way in or out, which is most of a receipt's
latency when calls come one at a time. Receipts nobody waits on (outcomes)
ride along with the next commit, or one ``_LAZY_DELAY_S`` later. A writer
thread serves callers without a loop (``record_sync``), takes over while the
loop's commit cannot get the lock, signs checkpoints on their interval and
drains the queue at close; for its callers a batch is what queued up while
the previous one committed (at most ``max_batch``), and under steady
concurrency it waits for as many as last time, never longer than
``max_delay_ms``. A failed write fails its callers with :class:`AuditError`
and never advances the chain. A lock file keeps a second process from
writing the same state directory. Each row stores the signed payload and the
signature, so a stored receipt is exactly what was signed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from .canonical import canonical_json
from .checkpoints import (
    Checkpoint,
    MerkleFrontier,
    append_checkpoint,
    read_checkpoints,
    sign_checkpoint,
    time_of_us,
)
from .errors import AuditError, IntegrityError, SigningError
from .layout import HallLayout
from .signing import Keyring, SigningKey, b64decode, b64encode, pae

try:  # POSIX: one writer per state directory
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RECEIPT_PAYLOAD_TYPE",
    "RECEIPT_VERSION",
    "Durability",
    "Receipt",
    "ReceiptLog",
    "ReceiptStore",
    "SQLiteReceiptStore",
    "StoredRecord",
    "VerifyReport",
    "build_receipt",
    "export_dsse",
    "prepare_body",
    "verify_log",
    "verify_receipt",
]

#: DSSE payload type of a receipt: its canonical JSON, ``receipt_hash`` included.
RECEIPT_PAYLOAD_TYPE = "application/vnd.pyhall.receipt+json"
RECEIPT_VERSION = 1

#: Fields the log sets; a body that carries one is refused.
_CHAIN_FIELDS = frozenset(
    {
        "v",
        "receipt_id",
        "seq",
        "recorded_at_us",
        "prev_receipt_hash",
        "signing_key_id",
        "receipt_hash",
        "signature",
    }
)
_MAX_EXACT_INT = 2**53

logger = logging.getLogger(__name__)


def _now_us() -> int:
    return time.time_ns() // 1000


# -- building a receipt ---------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A sealed receipt.

    ``body`` is the full receipt, signature included; ``payload`` is the signed
    DSSE payload: the canonical JSON of the receipt without its signature.
    """

    receipt_id: str
    seq: int
    receipt_hash: str
    body: dict[str, Any] = field(repr=False, compare=False)
    payload: bytes = field(repr=False, compare=False)

    @classmethod
    def from_record(cls, record: StoredRecord) -> Receipt:
        try:
            body = json.loads(record.payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise IntegrityError(
                f"receipt seq {record.seq} is not a JSON object (torn or corrupted); "
                "run `pyhall audit verify`"
            )
        body["signature"] = record.signature
        return cls(
            record.receipt_id, record.seq, record.receipt_hash, body, record.payload.encode()
        )


class _NotPlain(ValueError):
    """Raised inside :func:`_plain`; the path to the bad value is added on the way out."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of exact JSON types (no floats, exact integers)."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        if not -_MAX_EXACT_INT < value < _MAX_EXACT_INT:
            raise _NotPlain("integer outside the exact JSON range (|n| < 2**53)")
        return value
    if isinstance(value, Mapping):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain(f"keys must be strings, not {type(key).__name__}")
            try:
                copy[str.__str__(key)] = _plain(item)
            except _NotPlain as exc:
                exc.path.append(f".{key}")
                raise
        return copy
    if isinstance(value, (list, tuple)):
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_plain(item))
            except _NotPlain as exc:
                exc.path.append(f"[{index}]")
                raise
        return items
    if isinstance(value, float):
        raise _NotPlain("floats are not allowed in receipts (use integers, e.g. microseconds)")
    if isinstance(value, str):  # str subclasses (StrEnum) become plain strings
        return str.__str__(value)
    if isinstance(value, int):  # int subclasses (IntEnum) become plain integers
        return _plain(int(value))
    raise _NotPlain(f"{type(value).__name__} is not a JSON value")


def prepare_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check a caller's receipt body and return a plain copy; ValueError says what is wrong."""
    if not isinstance(body, Mapping):
        raise ValueError("a receipt body must be a mapping")
    try:
        plain = _plain(body)
    except _NotPlain as exc:
        where = "body" + "".join(reversed(exc.path))
        raise ValueError(f"{where}: {exc.reason}") from None
    reserved = sorted(_CHAIN_FIELDS & plain.keys())
    if reserved:
        raise ValueError(f"body: {', '.join(reserved)} are set by the receipt log, not the caller")
    kind = plain.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError("body.kind: required, a non-empty string")
    return plain


#: How long a receipt nobody waits on may wait for company before it is committed alone.
_LAZY_DELAY_S = 0.010


def _new_receipt_id() -> str:
    """``rcpt_`` + 12 hex digits of Unix milliseconds + 20 random ones (80 bits).

    Time-ordered, as UUIDv7 is, so that the log's unique index grows at its end:
    a random id dirties a random index page in every commit (measured: a third
    more CPU and WAL per commit, growing with the log).
    """
    return f"rcpt_{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def _seal(
    body: dict[str, Any],
    *,
    seq: int,
    prev_receipt_hash: str | None,
    key: SigningKey,
    receipt_id: str | None = None,
    recorded_at_us: int | None = None,
) -> Receipt:
    """The one place a receipt is built: chain fields, hash, signature."""
    receipt = dict(body)
    receipt["v"] = RECEIPT_VERSION
    receipt["receipt_id"] = receipt_id or _new_receipt_id()
    receipt["seq"] = seq
    receipt["recorded_at_us"] = _now_us() if recorded_at_us is None else recorded_at_us
    receipt["prev_receipt_hash"] = prev_receipt_hash
    receipt["signing_key_id"] = key.key_id
    # The payload is the hashed form plus one member, and canonical JSON sorts
    # members by key (an ASCII key like "receipt_hash" orders the same under
    # RFC 8785's UTF-16 rule as under Python's): encode the members before and
    # after it once, then join them twice.
    before = canonical_json({k: v for k, v in receipt.items() if k < "receipt_hash"})[1:-1]
    after = canonical_json({k: v for k, v in receipt.items() if k > "receipt_hash"})[1:-1]
    receipt_hash = hashlib.sha256(_json_object(before, after)).hexdigest()
    member = b'"receipt_hash":"' + receipt_hash.encode("ascii") + b'"'
    payload = _json_object(before, member, after)
    receipt["receipt_hash"] = receipt_hash
    receipt["signature"] = b64encode(key.sign(pae(RECEIPT_PAYLOAD_TYPE, payload)))
    return Receipt(receipt["receipt_id"], seq, receipt_hash, receipt, payload)


def _json_object(*members: bytes) -> bytes:
    return b"{" + b",".join(member for member in members if member) + b"}"


def build_receipt(
    body: Mapping[str, Any],
    *,
    seq: int,
    prev_receipt_hash: str | None,
    key: SigningKey,
    receipt_id: str | None = None,
    recorded_at_us: int | None = None,
) -> Receipt:
    """Seal ``body`` as receipt ``seq`` chained to ``prev_receipt_hash``, signed by ``key``.

    :class:`ReceiptLog` is the normal way to write receipts; this is for tools
    and tests that need a receipt outside a log.
    """
    return _seal(
        prepare_body(body),
        seq=seq,
        prev_receipt_hash=prev_receipt_hash,
        key=key,
        receipt_id=receipt_id,
        recorded_at_us=recorded_at_us,
    )


def export_dsse(receipt_body: Mapping[str, Any]) -> dict[str, Any]:
    """The receipt as a standard DSSE envelope, reusing its signature."""
    try:
        signature = receipt_body["signature"]
        key_id = receipt_body["signing_key_id"]
    except KeyError as exc:
        raise ValueError(f"not a sealed receipt: no {exc.args[0]}") from None
    unsigned = {k: v for k, v in receipt_body.items() if k != "signature"}
    # The payload is the canonical receipt without its signature: exactly what was signed.
    return {
        "payloadType": RECEIPT_PAYLOAD_TYPE,
        "payload": b64encode(canonical_json(unsigned)),
        "signatures": [{"keyid": key_id, "sig": signature}],
    }


# -- storage ------------------------------------------------------------------------


class StoredRecord(NamedTuple):
    """One stored receipt: its signed payload (canonical JSON) and base64 signature."""

    seq: int
    receipt_id: str
    receipt_hash: str
    payload: str
    signature: str

    @classmethod
    def of(cls, receipt: Receipt) -> StoredRecord:
        return cls(
            receipt.seq,
            receipt.receipt_id,
            receipt.receipt_hash,
            receipt.payload.decode("utf-8"),
            receipt.body["signature"],
        )


@runtime_checkable
class ReceiptStore(Protocol):
    """Where receipts live. SQLite by default; a server database can stand in.

    ``append_batch`` is atomic and durable when it returns. Only the log's
    writer thread calls it; reads may come from any thread.
    """

    def append_batch(self, records: Sequence[StoredRecord]) -> None: ...

    def head(self) -> StoredRecord | None: ...

    def get(self, receipt_id: str) -> StoredRecord | None: ...

    def iter_range(self, start_seq: int, end_seq: int | None = None) -> Iterator[StoredRecord]: ...

    def iter_all(self) -> Iterator[StoredRecord]: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY CHECK (seq > 0),
    receipt_id TEXT NOT NULL UNIQUE,
    receipt_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    signature TEXT NOT NULL
)
"""
_COLUMNS = "seq, receipt_id, receipt_hash, payload, signature"
Durability = Literal["fsync", "os"]
_SYNCHRONOUS = {"fsync": "FULL", "os": "NORMAL"}
_SCHEMA_VERSION = 1
_PAGE = 2000


class SQLiteReceiptStore:
    """Receipts in one SQLite table (WAL), keyed by ``seq``.

    A transaction is all-or-nothing, so a crash never leaves a half-written
    row: the last row present is complete. One connection, guarded by a lock.
    ``durability="fsync"`` commits with ``synchronous=FULL`` (each commit is
    fsynced); ``"os"`` with ``synchronous=NORMAL`` (a commit reaches the
    operating system, the WAL is fsynced at checkpoints): it survives the
    process's crash, but a power loss may take the last commits.
    """

    def __init__(
        self, path: str | Path, *, readonly: bool = False, durability: Durability = "fsync"
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be one of {sorted(_SYNCHRONOUS)}")
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            if readonly:
                if not self.path.exists():
                    raise AuditError(f"no audit log at {self.path}")
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
                mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise AuditError(f"{self.path}: SQLite refused WAL mode ({mode})")
                self._conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
                with self._conn:
                    tables = self._conn.execute(
                        "SELECT count(*) FROM sqlite_master WHERE name = 'receipts'"
                    ).fetchone()[0]
                    if not tables:
                        self._conn.execute(_SCHEMA)
                        self._conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise AuditError(f"{self.path}: cannot open the audit log: {exc}") from None
        if version != _SCHEMA_VERSION:
            self._conn.close()
            raise AuditError(
                f"{self.path}: not a pyhall receipt log of schema {_SCHEMA_VERSION} "
                f"(found {version})"
            )

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[StoredRecord]:
        with self._lock:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"{self.path}: cannot read receipts: {exc}") from None
        return [StoredRecord(*row) for row in rows]

    def append_batch(self, records: Sequence[StoredRecord]) -> None:
        if not records:
            return
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    f"INSERT INTO receipts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)", records
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise

    def head(self) -> StoredRecord | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM receipts ORDER BY seq DESC LIMIT 1")
        return rows[0] if rows else None

    def get(self, receipt_id: str) -> StoredRecord | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM receipts WHERE receipt_id = ?", (receipt_id,))
        return rows[0] if rows else None

    def iter_range(self, start_seq: int, end_seq: int | None = None) -> Iterator[StoredRecord]:
        """Records with ``start_seq <= seq <= end_seq`` in order, read a page at a time."""
        last = end_seq if end_seq is not None else 2**63 - 1
        next_seq = start_seq
        while next_seq <= last:
            page = self._query(
                f"SELECT {_COLUMNS} FROM receipts WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?",
                (next_seq, last, _PAGE),
            )
            yield from page
            if len(page) < _PAGE:
                return
            next_seq = page[-1].seq + 1

    def iter_all(self) -> Iterator[StoredRecord]:
        return self.iter_range(1)

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM receipts").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# -- checking one receipt -------------------------------------------------------------

#: Chain fields every stored payload carries, with their JSON types.
_PAYLOAD_FIELDS: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "kind": str,
    "receipt_id": str,
    "seq": int,
    "recorded_at_us": int,
    "prev_receipt_hash": (str, type(None)),
    "signing_key_id": str,
    "receipt_hash": str,
}


class _Broken(Exception):
    """A record fails a check; the message is the problem."""


def _parse_payload(payload: str) -> dict[str, Any]:
    """Parse a signed payload and check its chain fields' shape."""
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        raise _Broken("record is not valid JSON (torn or corrupted)") from None
    if not isinstance(body, dict):
        raise _Broken("record is not a JSON object")
    for name, kind in _PAYLOAD_FIELDS.items():
        value = body.get(name, ...)
        if value is ... or not isinstance(value, kind) or isinstance(value, bool):
            raise _Broken(f"field {name!r} is missing or has the wrong type")
    if "signature" in body:
        raise _Broken("the signed payload must not hold a signature")
    if body["v"] != RECEIPT_VERSION:
        raise _Broken(f"unknown receipt version {body['v']}")
    return body


def _check_hash(body: dict[str, Any], stored_hash: str | None = None) -> None:
    """``receipt_hash`` must be the hash of the payload's other fields (and of its row)."""
    hashed = dict(body)
    del hashed["receipt_hash"]
    try:
        receipt_hash = hashlib.sha256(canonical_json(hashed)).hexdigest()
    except (ValueError, TypeError, RecursionError) as exc:
        raise _Broken(f"record cannot be canonicalised: {exc}") from None
    if receipt_hash != body["receipt_hash"]:
        raise _Broken("receipt_hash does not match the record's contents (record was altered)")
    if stored_hash is not None and stored_hash != receipt_hash:
        raise _Broken("the stored receipt_hash column does not match the record")


def _check_signature(
    keyring: Keyring, key_id: str, recorded_at_us: int, payload: bytes, signature: str
) -> None:
    """Ed25519 over the DSSE PAE of the payload, by a key trusted for receipts then."""
    try:
        raw = b64decode(signature)
    except ValueError:
        raise _Broken("signature is not base64") from None
    try:
        when = time_of_us(recorded_at_us)
    except OverflowError:
        raise _Broken("recorded_at_us is out of range") from None
    try:
        keyring.verify(
            key_id, pae(RECEIPT_PAYLOAD_TYPE, payload), raw, purpose="receipts", when=when
        )
    except SigningError as exc:
        raise _Broken(f"signature: {exc.message}") from None
    except ValueError as exc:  # e.g. an unparseable validity date in the keyring
        raise _Broken(f"signature: cannot check key {key_id}: {exc}") from None


def _check_record(record: StoredRecord, keyring: Keyring) -> dict[str, Any]:
    """One stored record on its own: shape, row, hash and signature."""
    body = _parse_payload(record.payload)
    if body["seq"] != record.seq:
        raise _Broken(f"the record stored at seq {record.seq} says it is seq {body['seq']}")
    if body["receipt_id"] != record.receipt_id:
        raise _Broken("the record's receipt_id differs from its row")
    _check_hash(body, record.receipt_hash)
    _check_signature(
        keyring,
        body["signing_key_id"],
        body["recorded_at_us"],
        record.payload.encode("utf-8"),
        record.signature,
    )
    return body


def verify_receipt(receipt_body: Mapping[str, Any], keyring: Keyring) -> None:
    """Check one receipt's hash and signature (not its place in the chain).

    Raises :class:`IntegrityError` naming the problem.
    """
    seq, receipt_id = receipt_body.get("seq"), receipt_body.get("receipt_id")
    try:
        unsigned = dict(receipt_body)
        signature = unsigned.pop("signature", None)
        if not isinstance(signature, str):
            raise _Broken("the receipt has no signature")
        payload = canonical_json(unsigned).decode("utf-8")
        record = StoredRecord(seq, receipt_id, unsigned.get("receipt_hash"), payload, signature)  # type: ignore[arg-type]
        _check_record(record, keyring)
    except (_Broken, TypeError, ValueError) as exc:
        raise IntegrityError(str(exc), seq=seq, receipt_id=receipt_id) from None


# -- the log --------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    body: dict[str, Any]
    enqueued: float
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Receipt] | concurrent.futures.Future[Receipt]
    #: Fixed when queued, so a caller that does not wait still knows it.
    receipt_id: str = field(default_factory=lambda: _new_receipt_id())
    #: Committed by the writer thread; otherwise by a commit on its event loop.
    by_writer: bool = True


def _resolve(items: list[tuple[asyncio.Future[Receipt], Receipt | None, Exception | None]]) -> None:
    for future, receipt, error in items:
        if future.done():  # the caller gave up (cancelled); the receipt stands
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(receipt)  # type: ignore[arg-type]


def _settle(results: list[tuple[_Pending, Receipt | None, Exception | None]]) -> None:
    """Answer waiting callers: one wake-up per event loop, not one per receipt."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for pending, receipt, error in results:
        if pending.loop is None:
            future = pending.future
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(receipt)  # type: ignore[arg-type]
        else:
            by_loop.setdefault(pending.loop, []).append((pending.future, receipt, error))
    running = _running_loop()
    for loop, items in by_loop.items():
        if loop is running:
            _resolve(items)
            continue
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve, items)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _lock_state(layout: HallLayout) -> int | None:
    """Hold an exclusive lock on the state directory: one chain head, one writer."""
    if fcntl is None:  # pragma: no cover
        return None
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.state_dir / "audit.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AuditError(
            f"another process is writing the audit log in {layout.state_dir}; "
            "one hall per state directory"
        ) from None
    return fd


def _trust_own_key(layout: HallLayout, key: SigningKey) -> Keyring:
    """Make sure the receipt keyring holds the hall key's public half."""
    path = layout.receipt_keyring
    ring = Keyring.load(path)
    entry = ring.get(key.key_id)
    if entry is None:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        ring.add(key.trusted(["receipts"], note=f"hall receipt key, first used {stamp}"))
        ring.save(path)
        _sync(path)  # receipts signed by this key must never outlive its public half
    elif "receipts" not in entry.purposes or not entry.valid_at(datetime.now(UTC)):
        raise SigningError(
            f"the hall's signing key {key.key_id} is revoked, expired or not trusted for receipts",
            file=str(path),
            fix=f"move {layout.signing_key} away to rotate to a new key",
        )
    return ring


class ReceiptLog:
    """The hall's receipt log: one writer thread, group commit, signed checkpoints."""

    def __init__(
        self,
        layout: HallLayout,
        store: ReceiptStore,
        key: SigningKey,
        keyring: Keyring,
        *,
        checkpoint_every: int,
        checkpoint_interval_s: float,
        max_batch: int,
        max_delay_ms: float,
        lock_fd: int | None,
    ) -> None:
        self._layout = layout
        self._store = store
        self._key = key
        self._keyring = keyring
        self._every = checkpoint_every
        self._interval = checkpoint_interval_s
        self._max_batch = max_batch
        self._max_delay = max_delay_ms / 1000
        self._lock_fd = lock_fd
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        # Held by whoever seals and stores: the writer thread or a loop's commit. Items
        # are taken from the queue under it, so the chain keeps the order of the queue.
        self._write_lock = threading.Lock()
        self._soon: set[asyncio.AbstractEventLoop] = set()  # loops with a commit scheduled
        self._timers: set[asyncio.AbstractEventLoop] = set()  # loops with a lazy commit timed
        self._writer_idle = False  # the writer sleeps with no deadline (nothing to checkpoint)
        self._closing = False
        self._closed = False
        self._broken: str | None = None
        self._last_batch = 1
        self._handover = False  # a loop's commit could not get the lock: the writer takes over
        # Guarded by _write_lock once the writer runs.
        self._head: tuple[int, str | None] = (0, None)
        self._head_key: str | None = None
        self._tree = MerkleFrontier()
        self._checkpointed = 0
        self._checkpoint_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="pyhall-receipts", daemon=True)

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        layout: HallLayout,
        *,
        store: ReceiptStore | None = None,
        durability: Durability = "fsync",
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 30.0,
        max_batch: int = 256,
        max_delay_ms: float = 2.0,
    ) -> ReceiptLog:
        """Open (or start) the hall's log: key, keyring, chain head, writer thread."""
        if checkpoint_every < 1 or max_batch < 1 or checkpoint_interval_s <= 0 or max_delay_ms < 0:
            raise ValueError("checkpoint_every, max_batch and the intervals must be positive")
        lock_fd = _lock_state(layout)
        try:
            key, created = SigningKey.load_or_create(layout.signing_key)
            if created:
                _sync(layout.signing_key)
            keyring = _trust_own_key(layout, key)
            log = cls(
                layout,
                store
                if store is not None
                else SQLiteReceiptStore(layout.audit_db, durability=durability),
                key,
                keyring,
                checkpoint_every=checkpoint_every,
                checkpoint_interval_s=checkpoint_interval_s,
                max_batch=max_batch,
                max_delay_ms=max_delay_ms,
                lock_fd=lock_fd,
            )
        except BaseException:
            _unlock(lock_fd)
            raise
        try:
            log._recover()
            # Receipts left unsigned by a crash get their checkpoint now, not 30 s from now.
            log._maybe_checkpoint(force=True)
            log._thread.start()
            if log._head_key is not None and log._head_key != key.key_id:
                logger.warning(
                    "the hall's signing key changed: receipts were signed by %s, now by %s "
                    "(a key_rotation receipt records it). If no operator rotated it, someone "
                    "wrote to %s: verify with a keyring kept elsewhere",
                    log._head_key,
                    key.key_id,
                    layout.state_dir,
                )
                log.record_sync(
                    {"kind": "key_rotation", "old_key_id": log._head_key, "new_key_id": key.key_id}
                )
        except BaseException:
            log.close()
            raise
        return log

    def _recover(self) -> None:
        """Load the chain head from the last record and the Merkle tree up to it."""
        record = self._store.head()
        if record is None:
            self._head, self._head_key = (0, None), None
            self._tree = self._resume_checkpoints(0)
            return
        try:
            body = _check_record(record, self._keyring)
        except _Broken as exc:
            raise IntegrityError(
                f"the last receipt (seq {record.seq}) does not verify: {exc}; "
                "run `pyhall audit verify` before writing more",
                seq=record.seq,
                receipt_id=record.receipt_id,
            ) from None
        self._head = (record.seq, record.receipt_hash)
        self._head_key = body["signing_key_id"]
        self._tree = self._resume_checkpoints(record.seq)

    def _resume_checkpoints(self, size: int) -> MerkleFrontier:
        """Rebuild the Merkle tree, starting from the latest checkpoint that holds.

        A signed checkpoint the log contradicts (a shorter log, another head hash)
        means the log was cut or rewritten: refuse to write on top of it.
        """
        _drop_torn_line(self._layout.checkpoints)
        try:
            checkpoints, _ = read_checkpoints(self._layout.checkpoints)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable checkpoints: %s", exc)
            checkpoints = []
        base: tuple[Checkpoint, MerkleFrontier] | None = None
        for checkpoint in reversed(checkpoints):
            try:
                checkpoint.verify(self._keyring)
                tree = checkpoint.frontier()
            except (SigningError, ValueError, OverflowError) as exc:
                logger.warning("skipping checkpoint line %d: %s", checkpoint.line, exc)
                continue
            if checkpoint.size > size:
                raise IntegrityError(
                    f"the audit log ends at seq {size} but checkpoint line {checkpoint.line} "
                    f"covers {checkpoint.size} receipts: its tail was truncated; "
                    "run `pyhall audit verify`",
                    seq=size + 1,
                )
            if self._hash_at(checkpoint.size) != checkpoint.head_hash:
                raise IntegrityError(
                    f"receipt seq {checkpoint.size} differs from the one checkpoint line "
                    f"{checkpoint.line} signed: the log was rewritten; run `pyhall audit verify`",
                    seq=checkpoint.size,
                )
            base = (checkpoint, tree)
            break
        if base is None:
            tree, start = MerkleFrontier(), 1
            self._checkpointed = 0
        else:
            tree, start = base[1], base[0].size + 1
            self._checkpointed = base[0].size
        for record in self._store.iter_range(start, size):
            tree.append(bytes.fromhex(record.receipt_hash))
        if tree.size != size:
            raise IntegrityError(f"the audit log has gaps before seq {size}", seq=size)
        self._checkpoint_at = time.monotonic()
        return tree

    def _hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return None
        for record in self._store.iter_range(seq, seq):
            return record.receipt_hash
        return None

    # -- writing --------------------------------------------------------------------

    async def record(self, body: Mapping[str, Any], *, on_loop: bool = True) -> Receipt:
        """Seal and store a receipt; returns once it is committed to disk.

        ``on_loop``: commit on this event loop at the end of its turn, the least
        latency for a lone caller; the loop waits out the disk write. False hands
        the commit to the writer thread, so that the loop serves other calls
        meanwhile (and their receipts share the next commit): for callers that
        know others are in flight.

        ValueError for a bad body (nothing written); AuditError when the store
        fails (the caller must then deny). A caller cancelled while waiting does
        not withdraw its receipt: once queued it is written.
        """
        pending = self._enqueue(body, by_writer=not on_loop)
        if not on_loop:
            return await pending.future  # type: ignore[misc]
        assert pending.loop is not None
        if pending.loop not in self._soon:
            # At the end of this turn of the loop, so that every caller that reached
            # this point in the same turn shares the commit.
            self._soon.add(pending.loop)
            pending.loop.call_soon(self._commit_on_loop, pending.loop)
        return await pending.future  # type: ignore[misc]

    def submit(self, body: Mapping[str, Any]) -> tuple[str, asyncio.Future[Receipt]]:
        """Queue a receipt without waiting: it joins the next commit somebody waits on.

        Returns its receipt id at once and a future that resolves once it is on
        disk, at most ``_LAZY_DELAY_S`` (plus one commit) later. For evidence
        nobody waits on (an outcome, after the answer is sent); ``close``
        flushes it.
        """
        pending = self._enqueue(body)
        loop = pending.loop
        assert loop is not None
        if loop not in self._timers:
            self._timers.add(loop)
            loop.call_later(_LAZY_DELAY_S, self._lazy_due, loop)
        return pending.receipt_id, pending.future  # type: ignore[return-value]

    def _enqueue(self, body: Mapping[str, Any], *, by_writer: bool = False) -> _Pending:
        """Queue a body from an event loop; unless ``by_writer``, a commit on that loop takes it."""
        plain = prepare_body(body)
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        pending = _Pending(plain, time.monotonic(), future.get_loop(), future, by_writer=by_writer)
        self._submit(pending)
        return pending

    def record_sync(self, body: Mapping[str, Any]) -> Receipt:
        """:meth:`record` for code without an event loop (blocks until committed)."""
        plain = prepare_body(body)
        future: concurrent.futures.Future[Receipt] = concurrent.futures.Future()
        self._submit(_Pending(plain, time.monotonic(), None, future))
        return future.result()

    def _submit(self, pending: _Pending) -> None:
        with self._cond:
            if self._broken is not None:
                raise AuditError(f"the audit log is unavailable: {self._broken}")
            if self._closing:
                raise AuditError("the audit log is closed")
            self._queue.append(pending)
            if pending.by_writer:
                self._cond.notify()

    # -- committing on the caller's event loop ---------------------------------------------

    def _lazy_due(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            first = self._queue[0].enqueued if self._queue else None
        wait = None if first is None else first + _LAZY_DELAY_S - time.monotonic()
        if wait is not None and wait > 0.0005:
            # The receipt that armed this timer left with a commit somebody waited on;
            # the oldest one still queued has time left: no commit of its own yet.
            loop.call_later(wait, self._lazy_due, loop)
            return
        self._timers.discard(loop)
        if first is not None:
            self._commit_on_loop(loop)

    def _commit_on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit everything queued, on this loop's thread; the writer's turn if it is busy."""
        self._soon.discard(loop)
        if not self._write_lock.acquire(blocking=False):
            with self._cond:
                self._handover = True
                self._cond.notify()  # it finishes its batch, then takes the queue
            return
        try:
            committed = False
            while not self._closed and (batch := self._take()):
                self._commit(batch)
                committed = True
        finally:
            self._write_lock.release()
        if committed and (self._writer_idle or self._checkpoint_wait() == 0):
            # Checkpoints are the writer's: signing one and its fsync stay off the loop.
            with self._cond:
                self._cond.notify()

    def _take(self) -> list[_Pending]:
        with self._cond:
            size = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(size)]
            if not self._queue:
                self._handover = False
            return batch

    @property
    def head(self) -> tuple[int, str | None]:
        """(seq, receipt_hash) of the last committed receipt; (0, None) when empty."""
        return self._head

    @property
    def count(self) -> int:
        return self._head[0]

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def get(self, receipt_id: str) -> Receipt | None:
        record = self._store.get(receipt_id)
        return Receipt.from_record(record) if record is not None else None

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._await_work():
                with self._write_lock:
                    batch = self._take()
                    self._last_batch = len(batch) or self._last_batch
                    if batch:
                        self._commit(batch)
                    self._maybe_checkpoint(force=False)
            with self._write_lock:
                if self._broken is None:
                    self._maybe_checkpoint(force=True)
        except BaseException as exc:  # a bug here must not leave callers hanging
            logger.exception("receipt writer failed")
            self._fail_queued(f"receipt writer failed: {exc!r}")

    def _await_work(self) -> bool:
        """Wait for a batch or a due checkpoint; False when closing with nothing left."""
        with self._cond:
            while not self._writer_due():
                if self._closing:
                    return False
                wait = self._checkpoint_wait()
                if wait is not None and wait <= 0:
                    return True
                self._writer_idle = wait is None
                self._cond.wait(wait)
                self._writer_idle = False
            # Under concurrent load the last batch's size predicts who is about to
            # arrive; wait for them, but never past max_delay after the first item.
            linger_for = min(self._max_batch, self._last_batch)
            deadline = self._queue[0].enqueued + self._max_delay
            while len(self._queue) < linger_for and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
        return True

    def _writer_due(self) -> bool:
        """Whether the queue holds work for the writer (called holding ``_cond``)."""
        if not self._queue:
            return False
        # Closing drains everything, whoever queued it.
        return self._closing or self._handover or any(p.by_writer for p in self._queue)

    def _checkpoint_wait(self) -> float | None:
        """Seconds until a checkpoint is due (0: now); None when there is nothing new."""
        unsigned = self._tree.size - self._checkpointed
        if unsigned == 0:
            return None
        if unsigned >= self._every:
            return 0
        return max(0.0, self._checkpoint_at + self._interval - time.monotonic())

    def _commit(self, batch: list[_Pending]) -> None:
        if self._broken is not None:
            error = AuditError(f"the audit log is unavailable: {self._broken}")
            _settle([(pending, None, error) for pending in batch])
            return
        seq, prev = self._head
        records: list[StoredRecord] = []
        results: list[tuple[_Pending, Receipt | None, Exception | None]] = []
        for pending in batch:
            try:
                receipt = _seal(
                    pending.body,
                    seq=seq + 1,
                    prev_receipt_hash=prev,
                    key=self._key,
                    receipt_id=pending.receipt_id,
                )
                records.append(StoredRecord.of(receipt))
            except Exception as exc:  # fail this item only; the chain has not moved
                results.append((pending, None, AuditError(f"could not seal a receipt: {exc}")))
                continue
            seq, prev = receipt.seq, receipt.receipt_hash
            results.append((pending, receipt, None))
        try:
            self._store.append_batch(records)
        except Exception as exc:
            logger.error("could not store %d receipts: %s", len(records), exc)
            error = AuditError(f"could not store the receipt: {exc}")
            _settle([(pending, None, error) for pending in batch])
            self._resync()
            return
        for record in records:
            self._tree.append(bytes.fromhex(record.receipt_hash))
        self._head = (seq, prev)
        self._head_key = self._key.key_id
        _settle(results)

    def _resync(self) -> None:
        """After a failed write, trust only what the store holds."""
        try:
            self._recover()
        except Exception as exc:
            logger.error("audit log unavailable: %s", exc)
            self._fail_queued(f"cannot recover the chain head: {exc}")

    def _fail_queued(self, reason: str) -> None:
        with self._cond:
            self._broken = reason
            waiting = list(self._queue)
            self._queue.clear()
        error = AuditError(f"the audit log is unavailable: {reason}")
        _settle([(pending, None, error) for pending in waiting])

    def _maybe_checkpoint(self, *, force: bool) -> None:
        size = self._tree.size
        if size == self._checkpointed:
            return
        due = size - self._checkpointed >= self._every or (
            time.monotonic() - self._checkpoint_at >= self._interval
        )
        if not (due or force):
            return
        checkpoint = sign_checkpoint(self._tree, self._head[1], self._key, _now_us())
        try:
            append_checkpoint(self._layout.checkpoints, checkpoint)
        except OSError as exc:
            # Receipts are safe in the log; retry at the next occasion.
            logger.error("could not write a checkpoint to %s: %s", self._layout.checkpoints, exc)
            self._checkpoint_at = time.monotonic()
            return
        self._checkpointed = size
        self._checkpoint_at = time.monotonic()

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is queued, write a final checkpoint, release the log."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()
        with self._write_lock, self._cond:  # a loop's commit may still hold the lock
            self._closed = True
        try:
            self._store.close()
        finally:
            _unlock(self._lock_fd)
            self._lock_fd = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> ReceiptLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ReceiptLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _sync(path: Path) -> None:
    """fsync a file and its directory entry."""
    for target in (path, path.parent):
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _drop_torn_line(path: Path) -> None:
    """Cut a checkpoint line left half-written by a crash, so the next one starts clean."""
    try:
        with path.open("rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())
    except FileNotFoundError:
        return
    logger.warning("%s: removed a checkpoint line cut short by a crash", path)


def _unlock(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


# -- verification ----------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What :func:`verify_log` found. ``first_error`` is ``{seq, receipt_id, problem}``."""

    ok: bool
    count: int
    checkpoint_size: int | None
    first_error: dict[str, Any] | None = None
    head_hash: str | None = None
    key_ids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "checkpoint_size": self.checkpoint_size,
            "first_error": self.first_error,
            "head_hash": self.head_hash,
            "key_ids": self.key_ids,
            "warnings": self.warnings,
        }


def _problem(seq: int | None, receipt_id: str | None, problem: str) -> dict[str, Any]:
    return {"seq": seq, "receipt_id": receipt_id, "problem": problem}


#: What the sequential walk needs of a record that passed its own checks:
#: (seq, receipt_id, prev_receipt_hash, receipt_hash, signing_key_id, kind, old_key_id, new_key_id)
_Summary = tuple[int, str, str | None, str, str, str, Any, Any]
_Inspected = tuple[list[_Summary], dict[str, Any] | None]
_CHUNK = 512


def _inspect_chunk(keyring: Keyring, records: list[StoredRecord]) -> _Inspected:
    """Check each record on its own (shape, hash, signature), in a worker thread.

    Ed25519 verification releases the GIL, so workers interleave their Python
    with each other's signature checks; returns the summaries of the records
    before the first bad one, and that one's problem.
    """
    summaries: list[_Summary] = []
    for record in records:
        try:
            body = _check_record(record, keyring)
        except _Broken as exc:
            return summaries, _problem(record.seq, record.receipt_id, str(exc))
        summaries.append(
            (
                record.seq,
                record.receipt_id,
                body["prev_receipt_hash"],
                body["receipt_hash"],
                body["signing_key_id"],
                body["kind"],
                body.get("old_key_id"),
                body.get("new_key_id"),
            )
        )
    return summaries, None


class _ChainWalk:
    """The sequential part of verification: order, links, key changes, checkpoints."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        self.expected = 1
        self.prev_hash: str | None = None
        self.key_id: str | None = None
        self.key_ids: list[str] = []
        self.tree = MerkleFrontier()
        self.by_size: dict[int, list[Checkpoint]] = {}
        for checkpoint in checkpoints:
            self.by_size.setdefault(checkpoint.size, []).append(checkpoint)

    def check_seq(self, seq: int) -> None:
        if seq != self.expected:
            raise _Broken(
                f"receipt seq {self.expected} is missing (the next stored record is seq {seq})"
            )

    def step(self, summary: _Summary) -> None:
        """Place one checked record in the chain; raise _Broken with the problem."""
        seq, _, prev_hash, receipt_hash, key_id, kind, old_key, new_key = summary
        self.check_seq(seq)
        if prev_hash != self.prev_hash:
            raise _Broken(
                f"prev_receipt_hash does not match the hash of seq {seq - 1}: the chain is broken"
                if seq > 1
                else "the first receipt must have prev_receipt_hash null"
            )
        if kind == "key_rotation":
            if new_key != key_id:
                raise _Broken("a key_rotation receipt must be signed by its new key")
            if self.key_id is not None and old_key != self.key_id:
                raise _Broken(
                    f"key_rotation names old key {old_key} but the chain used {self.key_id}"
                )
        elif self.key_id is not None and key_id != self.key_id:
            raise _Broken(
                f"signing key changed from {self.key_id} to {key_id} without a key_rotation receipt"
            )
        if key_id != self.key_id:
            self.key_ids.append(key_id)
            self.key_id = key_id
        self.tree.append(bytes.fromhex(receipt_hash))
        for checkpoint in self.by_size.get(seq, ()):
            self._check_checkpoint(checkpoint, receipt_hash)
        self.expected = seq + 1
        self.prev_hash = receipt_hash

    def _check_checkpoint(self, checkpoint: Checkpoint, head_hash: str) -> None:
        if checkpoint.root != self.tree.root().hex():
            raise _Broken(
                f"{checkpoint.source}: checkpoint line {checkpoint.line} (size {checkpoint.size}): "
                "the Merkle root of the first receipts differs from the signed one (history "
                "was rewritten)"
            )
        if checkpoint.head_hash != head_hash:
            raise _Broken(
                f"{checkpoint.source}: checkpoint line {checkpoint.line}: head_hash differs from "
                "this receipt's hash"
            )


def verify_log(
    layout: HallLayout,
    *,
    keyring: Keyring | None = None,
    store: ReceiptStore | None = None,
    anchors: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Verify the whole receipt log and its checkpoints; never needs the private key.

    ``keyring`` defaults to the hall's receipt keyring (``layout.receipt_keyring``);
    pass a copy kept elsewhere to avoid trusting the state directory. ``anchors`` is
    a file of checkpoint lines kept outside it (a copy of ``checkpoints.jsonl``, or
    some of its lines): with it, a log cut or rolled back together with its own
    checkpoints is still caught.
    """
    ring = keyring if keyring is not None else Keyring.load(layout.receipt_keyring)
    warnings: list[str] = []
    checkpoints: list[Checkpoint] = []
    problem: dict[str, Any] | None = None
    for path in (layout.checkpoints, anchors):
        if path is None:
            continue
        try:
            found, torn = read_checkpoints(path, kept=path == anchors)
        except (OSError, ValueError) as exc:
            problem = problem or _problem(None, None, str(exc))
            continue
        if path == anchors and not found:
            problem = problem or _problem(None, None, f"{path}: holds no checkpoint")
        warnings += torn
        valid, bad = _check_checkpoints(found, ring)
        checkpoints += valid
        problem = problem or bad
    latest = max(checkpoints, key=lambda c: c.size, default=None)

    walk = _ChainWalk(checkpoints)
    owned = store is None
    try:
        if store is None and layout.audit_db.exists():
            store = SQLiteReceiptStore(layout.audit_db, readonly=True)
        error = _walk(store, walk, ring, progress) if store is not None else None
    except (AuditError, sqlite3.Error, OSError) as exc:  # not a log this hall can read
        error = _problem(walk.expected, None, f"the audit log cannot be read: {exc}")
    finally:
        if owned and store is not None:
            store.close()

    count = walk.expected - 1
    if store is None:
        warnings.append(f"no audit log at {layout.audit_db}")
    if error is None and latest is not None and latest.size > count:
        error = _problem(
            count + 1,
            None,
            f"receipt seq {count + 1} is missing: checkpoint line {latest.line} of "
            f"{latest.source} covers {latest.size} receipts but the log ends at seq {count} "
            "(its tail was truncated, or the log rolled back)",
        )
    covered = latest.size if latest is not None else 0
    if error is None and count > covered:
        warnings.append(
            f"receipts {covered + 1} to {count} are covered by no checkpoint yet: cutting "
            "them would go unseen (the gateway signs one every checkpoint_every receipts "
            "or checkpoint_interval_s, and when it starts and stops)"
        )
    return VerifyReport(
        ok=problem is None and error is None,
        count=count,
        checkpoint_size=latest.size if latest else None,
        first_error=problem or error,
        head_hash=walk.prev_hash,
        key_ids=walk.key_ids,
        warnings=warnings,
    )


def _check_checkpoints(
    checkpoints: list[Checkpoint], keyring: Keyring
) -> tuple[list[Checkpoint], dict[str, Any] | None]:
    """The checkpoints before the first that is not signed by a trusted receipt key or
    whose size goes down, and that one's problem."""
    previous = 0
    for index, checkpoint in enumerate(checkpoints):
        where = f"{checkpoint.source}: checkpoint line {checkpoint.line}"
        try:
            checkpoint.verify(keyring)
        except SigningError as exc:
            return checkpoints[:index], _problem(None, None, f"{where}: {exc.message}")
        if checkpoint.size < previous:
            problem = f"{where}: size went down from {previous}"
            return checkpoints[:index], _problem(None, None, problem)
        previous = checkpoint.size
    return checkpoints, None


def _chunks(records: Iterator[StoredRecord]) -> Iterator[list[StoredRecord]]:
    chunk: list[StoredRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _walk(
    store: ReceiptStore,
    walk: _ChainWalk,
    keyring: Keyring,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any] | None:
    """Stream the log: workers check records, this thread places them in the chain."""
    total = store.count()
    workers = max(1, min(4, os.cpu_count() or 1))
    in_flight: deque[concurrent.futures.Future[_Inspected]] = deque()
    chunks = _chunks(store.iter_all())
    error: dict[str, Any] | None = None
    with concurrent.futures.ThreadPoolExecutor(workers, "pyhall-verify") as pool:
        while error is None:
            while len(in_flight) < 2 * workers:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                in_flight.append(pool.submit(_inspect_chunk, keyring, chunk))
            if not in_flight:
                break
            summaries, problem = in_flight.popleft().result()
            error = _place(walk, summaries, problem)
            if progress is not None:
                progress(walk.expected - 1, total)
        for future in in_flight:
            future.cancel()
    return error


def _place(
    walk: _ChainWalk, summaries: list[_Summary], problem: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Walk a checked chunk; the earliest problem (in the chain or in a record) wins."""
    for summary in summaries:
        try:
            walk.step(summary)
        except _Broken as exc:
            # A gap is named by the seq that is missing, which has no receipt id.
            receipt_id = summary[1] if summary[0] == walk.expected else None
            return _problem(walk.expected, receipt_id, str(exc))
    if problem is not None:
        try:
            walk.check_seq(problem["seq"])  # a gap before the bad record comes first
        except _Broken as exc:
            return _problem(walk.expected, None, str(exc))
    return problem
