"""Human approval: a held call waits for a person, bound to the exact call.

When a rule (``human_required_default`` or ``human_required_if``), the blast gate or
the policy gate says a person must decide, the router holds the decision with an
unguessable ``pending_approval_id``. This module makes that hold real:

- **Binding.** An approval is bound to :func:`binding_digest` of the exact
  call: tenant, env, data label, tool, worker, canonical arguments, the
  hall's policy version, its rules' digest, the matched rule and why it was
  held. A retry with other arguments, by another tenant or under changed
  policies or rules does not match.
- **Store.** :class:`ApprovalStore` keeps approvals durably in SQLite
  (``.pyhall/approvals.db``, WAL, ``synchronous=FULL``) beside the receipts.
  Every state change is one conditional ``UPDATE``, so the gateway and the
  ``pyhall approvals`` command can use the file at the same time, and an
  approval runs a call at most once (``approved`` -> ``executed``). While a
  call waits on a decision it holds its exact arguments (the file is private,
  0600, like the signing key) for ``pyhall approvals show ID --full``, erased
  once the approval ends; and a *summary* for people to read:
  clipping said in place, path arguments normalised and resolved, exact
  secret names redacted, and a flag when it shows less than the arguments.
  Receipts carry only the arguments' digest.
- **Lifecycle.** ``pending`` -> ``approved`` | ``denied`` | ``cancelled`` |
  ``expired``; ``approved`` -> ``executed`` | ``denied`` (revoked before it
  ran) | ``expired``. Decline, cancel and timeout are denials. A ``denied``
  approval refuses identical retries until it expires (no nagging the
  person); a cancelled or expired one does not.
- **Receipts.** Each step is an ``approval`` receipt in the hall's chain:
  ``proposed``, ``approved`` / ``denied`` / ``cancelled`` / ``expired``,
  ``executed``, ``returned`` (and ``refused`` for a stale or replayed
  approval). Only the process holding the receipt log's lock writes receipts:
  the ``pyhall approvals`` command records the operator's decision (who,
  when, note) in the store, and the gateway receipts it when it next touches
  approvals or on its periodic :meth:`ApprovalDesk.sweep`; when no gateway
  runs, the command takes the lock and receipts it itself (:func:`sweep`).
- **Who decides.** The operator (``pyhall approvals approve|deny``), or, where
  the hall allows it (``approvals.in_band``: by default only in ``dev``), the
  person at the MCP client through elicitation (:func:`ask_in_band`,
  :func:`resume_in_band`). In band, the answer comes through the client's own
  software, which the governed agent may control: outside dev only the
  operator decides unless the hall says otherwise. No tool served to the model
  resolves approvals, and what the model reads names no approving command.

In band, handshake era: the gateway asks with ``elicitation/create`` and waits
until the approval expires. In band, 2026-07-28 era: it answers with an
``InputRequiredResult`` whose ``request_state`` is the approval id, sealed by
the SDK's ``RequestStateBoundary`` (encrypted, bound to tool and arguments,
expiring); the store makes it single use, so a replayed state is refused.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import sqlite3
import sys
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .canonical import digest
from .errors import ApprovalError, ConfigError

if TYPE_CHECKING:
    from .hall import CallOutcome, Hall
    from .layout import HallLayout
    from .models import RouteDecision

__all__ = [
    "APPROVAL_DENIED_CODE",
    "APPROVAL_INVALID_CODE",
    "DECISIONS",
    "ELICIT_KEY",
    "SWEEP_INTERVAL_S",
    "Approval",
    "ApprovalDesk",
    "ApprovalStore",
    "ArgumentSummary",
    "Settled",
    "approval_message",
    "approval_receipt",
    "approval_schema",
    "ask_in_band",
    "binding_digest",
    "can_elicit",
    "is_secret_name",
    "iso",
    "resume_in_band",
    "store_errors_as_config",
    "summarize_arguments",
    "sweep",
    "sweep_forever",
    "sweep_once",
    "verdict_of",
]

#: pyhall-mcp deny codes: a person said no (or did not answer in time) / the approval is stale.
APPROVAL_DENIED_CODE = "DENY_APPROVAL_DENIED"
APPROVAL_INVALID_CODE = "DENY_APPROVAL_INVALID"

Status = Literal["pending", "approved", "denied", "cancelled", "expired", "executed"]
#: What a person (or the clock) can decide about a pending approval.
DECISIONS: tuple[Status, ...] = ("approved", "denied", "cancelled", "expired")
_DENIALS = frozenset({"denied", "cancelled", "expired"})

#: The key of the approval question in an ``InputRequiredResult``.
ELICIT_KEY = "approval"
#: How often a running gateway receipts out-of-band decisions and expires stale approvals.
SWEEP_INTERVAL_S = 5.0

_ID = re.compile(r"^apr_[A-Za-z0-9_-]{16,64}$")
#: Argument names redacted in the summary: exactly these, or ending in ``_<one of the
#: suffixes>`` (after camelCase and dashes become snake_case). Exact, so that ``author``,
#: ``session`` or ``max_tokens`` stay visible: a person cannot judge what is hidden.
_SECRET_NAMES = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "private_key",
        "cookie",
    }
)
_SECRET_SUFFIXES = ("_password", "_passphrase", "_secret", "_token", "_api_key", "_private_key")
_MAX_SUMMARY_KEYS = 50
_MAX_TEXT = 240
_MAX_NOTE = 500

ReceiptFn = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _now_us(clock: Callable[[], float]) -> int:
    return int(clock() * 1_000_000)


def iso(us: int | None) -> str | None:
    """Microseconds since the epoch as ISO-8601 UTC (seconds), as decisions show times."""
    if us is None:
        return None
    stamp = datetime.fromtimestamp(us / 1_000_000, UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso_us(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


# -- binding and summary (pure) ----------------------------------------------------------------


def binding_digest(
    *,
    tenant_id: str,
    env: str,
    data_label: str,
    tool: str,
    worker_id: str | None,
    arguments: Mapping[str, Any],
    policy_version: str | None,
    hold_code: str | None,
    rules_digest: str | None,
    matched_rule_id: str | None,
) -> str:
    """The digest an approval is bound to: exactly this call, under these rules and policies."""
    return digest(
        {
            "v": 2,
            "tenant_id": tenant_id,
            "env": env,
            "data_label": data_label,
            "tool": tool,
            "worker_id": worker_id,
            "arguments_digest": digest(dict(arguments)),
            "policy_version": policy_version,
            "hold_code": hold_code,
            "rules_digest": rules_digest,
            "matched_rule_id": matched_rule_id,
        }
    )


class ArgumentSummary(NamedTuple):
    """What a person sees of the arguments, and whether it is less than all of them."""

    shown: dict[str, str]
    #: Something is clipped, redacted or left out: ``pyhall approvals show ID --full`` shows all.
    lossy: bool


def _printable(text: str) -> str:
    """Printable text for a terminal or a dialog: control, format and bidi characters escaped."""
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def _clip(text: str, limit: int) -> tuple[str, bool]:
    """``text`` within about ``limit`` characters, the clipped middle *said*, never silent:
    a path's start and file name stay visible, and the reader knows something is between."""
    if len(text) <= limit:
        return text, False
    head = limit // 2
    tail = limit - head
    hidden = len(text) - head - tail
    return f"{text[:head]}…[{hidden} characters hidden]…{text[len(text) - tail :]}", True


def _clean(text: str, limit: int) -> str:
    return _clip(_printable(text), limit)[0]


def is_secret_name(name: str) -> bool:
    """Whether an argument (or nested key) called ``name`` is redacted (see ``_SECRET_NAMES``)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace("-", "_").lower()
    return snake in _SECRET_NAMES or snake.endswith(_SECRET_SUFFIXES)


def _redacted(value: Any) -> tuple[Any, bool]:
    """``value`` with every secret-named key inside it redacted; and whether one was."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        hid = False
        for key, item in value.items():
            if is_secret_name(str(key)):
                out[str(key)], hid = "[redacted]", True
            else:
                out[str(key)], inner = _redacted(item)
                hid = hid or inner
        return out, hid
    if isinstance(value, list):
        items = [_redacted(item) for item in value]
        return [item for item, _ in items], any(inner for _, inner in items)
    return value, False


def _as_path(value: str, resolved: str | None, declared: bool) -> str:
    """How a path argument ends up: lexically normalised, and resolved as the worker's
    envelope check resolves it (declared ``tool.path_arguments``). Empty if nothing to add."""
    notes = []
    if "://" not in value and ("/" in value or "\\" in value):
        normal = os.path.normpath(value)
        if normal not in (value, value.rstrip("/\\")):  # a trailing slash is no news
            notes.append(f"normalised: {normal}")
    if declared:
        notes.append(f"resolves to: {resolved}" if resolved else "cannot be resolved")
    return f" ({'; '.join(notes)})" if notes else ""


def summarize_arguments(
    arguments: Mapping[str, Any],
    schema: Mapping[str, Any] | None = None,
    paths: Mapping[str, str | None] | None = None,
) -> ArgumentSummary:
    """What a person sees of the arguments: whole values (nested ones as JSON), clipping
    marked, path arguments normalised and resolved, secrets redacted.

    Redacted: a name :func:`is_secret_name` matches, or a property the tool's input
    schema marks ``writeOnly`` or ``format: password``. ``paths``: the tool's declared
    path arguments, resolved (None: cannot be). The schema's own properties come first,
    so undeclared extras cannot push them out of view.
    """
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    props = props if isinstance(props, Mapping) else {}
    paths = paths or {}
    declared = [k for k in props if k in arguments]
    keys = declared + sorted(k for k in arguments if k not in props)
    out: dict[str, str] = {}
    lossy = len(keys) > _MAX_SUMMARY_KEYS
    for key in keys[:_MAX_SUMMARY_KEYS]:
        prop = props.get(key)
        secret = isinstance(prop, Mapping) and (
            prop.get("writeOnly") is True or prop.get("format") == "password"
        )
        name = _clean(str(key), 60)
        lossy = lossy or name != str(key)  # shortened or escaped: it may pass for another
        if name in out:  # one shown name never stands for two arguments
            name = next(f"{name} #{n}" for n in itertools.count(2) if f"{name} #{n}" not in out)
        if secret or is_secret_name(str(key)):
            out[name], lossy = "[redacted]", True
            continue
        value, hid = _redacted(arguments[key])
        text, clipped = _clip(_printable(json.dumps(value, ensure_ascii=False)), _MAX_TEXT)
        if isinstance(value, str):
            extra, more = _clip(
                _printable(_as_path(value, paths.get(key), key in paths)), _MAX_TEXT
            )
            text += extra
            clipped = clipped or more
        out[name] = text
        lossy = lossy or hid or clipped
    if len(keys) > _MAX_SUMMARY_KEYS:
        out["..."] = f"{len(keys) - _MAX_SUMMARY_KEYS} more arguments not shown"
    return ArgumentSummary(out, lossy)


# -- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """One approval: who asked for what, why, until when, and what became of it."""

    approval_id: str
    binding: str
    status: Status
    tenant_id: str
    tool: str
    worker_id: str | None
    arguments_digest: str | None
    arguments_summary: dict[str, str]
    reason_code: str | None
    reason: str | None
    policy_version: str | None
    supervisor_level: str | None
    correlation_id: str | None
    decision_id: str | None
    created_at_us: int
    expires_at_us: int
    decided_at_us: int | None = None
    decided_by: str | None = None
    note: str | None = None
    used_at_us: int | None = None
    receipted_status: str | None = None
    #: The exact arguments (the store is private, 0600): what ``show --full`` prints,
    #: kept while the call waits on a decision and erased once it ends (no hoard of secrets).
    arguments: dict[str, Any] | None = None
    #: The summary shows less than the arguments (clipped, redacted or keys left out).
    summary_lossy: bool = False
    #: Who approved it and when, once that approval was revoked (denied before it ran).
    approved_by: str | None = None
    approved_at_us: int | None = None
    #: Where the call would run and what data it carries (in the binding; shown to people).
    env: str | None = None
    data_label: str | None = None

    @property
    def expires_at(self) -> str:
        return iso(self.expires_at_us) or ""

    def effective_status(self, now_us: int) -> str:
        """The status a reader should act on: an unswept approval past its time is expired."""
        if self.status in ("pending", "approved") and now_us >= self.expires_at_us:
            return "expired"
        return self.status

    def as_dict(self, now_us: int | None = None, *, full: bool = False) -> dict[str, Any]:
        """Plain JSON for the CLI and the governance record (no binding internals hidden);
        ``full``: with the exact arguments, secrets included (the operator's eyes only)."""
        approved = self.status in ("approved", "executed")
        data = {
            "approval_id": self.approval_id,
            "status": self.status if now_us is None else self.effective_status(now_us),
            "tenant_id": self.tenant_id,
            "env": self.env,
            "data_label": self.data_label,
            "tool": self.tool,
            "worker_id": self.worker_id,
            "arguments_summary": dict(self.arguments_summary),  # display text, not values
            "summary_lossy": self.summary_lossy,
            "arguments_digest": self.arguments_digest,
            "reason_code": self.reason_code,
            "reason": self.reason,
            "policy_version": self.policy_version,
            "supervisor_level": self.supervisor_level,
            "correlation_id": self.correlation_id,
            "decision_id": self.decision_id,
            "created_at": iso(self.created_at_us),
            "expires_at": self.expires_at,
            "decided_at": iso(self.decided_at_us),
            "decided_by": self.decided_by,
            "note": self.note,
            "used_at": iso(self.used_at_us),
            # Who approved: kept apart once a revocation takes decided_by; else the decider.
            "approved_by": self.approved_by or (self.decided_by if approved else None),
            "approved_at": iso(self.approved_at_us or (self.decided_at_us if approved else None)),
            "binding": self.binding,
        }
        if full:  # only while a decision waits: an ended approval's are erased, or due to be
            waiting = data["status"] in ("pending", "approved")
            data["arguments"] = self.arguments if waiting else None
        if now_us is not None:
            data["expires_in_s"] = max(0, (self.expires_at_us - now_us) // 1_000_000)
        return data


_COLUMNS = tuple(f.name for f in Approval.__dataclass_fields__.values())

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    binding TEXT NOT NULL,
    status TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    worker_id TEXT,
    arguments_digest TEXT,
    arguments_summary TEXT NOT NULL,
    reason_code TEXT,
    reason TEXT,
    policy_version TEXT,
    supervisor_level TEXT,
    correlation_id TEXT,
    decision_id TEXT,
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    decided_at_us INTEGER,
    decided_by TEXT,
    note TEXT,
    used_at_us INTEGER,
    receipted_status TEXT
);
CREATE INDEX IF NOT EXISTS approvals_by_binding ON approvals (binding, status, expires_at_us);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals (status, expires_at_us);
"""


#: Columns added after the first release: a store written before them gains them on open
#: (NULL or the default in old rows), so an upgrade keeps the approvals waiting in it.
_ADDED_COLUMNS = {
    "arguments": "TEXT",
    "summary_lossy": "INTEGER NOT NULL DEFAULT 0",
    "approved_by": "TEXT",
    "approved_at_us": "INTEGER",
    "env": "TEXT",
    "data_label": "TEXT",
}


def _add_columns(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(approvals)")}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in have:
            db.execute(f"ALTER TABLE approvals ADD COLUMN {name} {kind}")


def _row(row: sqlite3.Row) -> Approval:
    values = dict(row)
    values["arguments_summary"] = json.loads(values["arguments_summary"])
    if values["arguments"] is not None:
        values["arguments"] = json.loads(values["arguments"])
    values["summary_lossy"] = bool(values["summary_lossy"])
    return Approval(**values)


# -- the store (sync, SQLite) ---------------------------------------------------------------------


class ApprovalStore:
    """Approvals in SQLite. Thread-safe; shareable between processes (WAL, busy timeout).

    ``clock`` (seconds since the epoch) decides expiry; tests move it.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, clock: Callable[[], float]):
        self.path = path
        self.clock = clock
        self._db = connection
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> ApprovalStore:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.executescript(_SCHEMA)
            _add_columns(db)
        except (OSError, sqlite3.Error) as exc:
            raise ApprovalError(f"cannot open the approvals store {path}: {exc}") from None
        return cls(path, db, clock)

    @staticmethod
    def check(path: str | Path) -> None:
        """Raise :class:`ApprovalError` if the store at ``path`` (when there is one) would
        not open or is damaged; reads only, so ``--check`` and ``validate`` can say so."""
        path = Path(path)
        if not path.exists():
            return  # created on first start
        try:
            uri = path.resolve().as_uri() + "?mode=ro"
            db = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None)
            try:
                found = db.execute("PRAGMA quick_check").fetchone()
                if found is None or found[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check: {found[0] if found else '?'}")
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
                if tables and "approvals" not in tables:
                    raise sqlite3.DatabaseError("it has no approvals table")
            finally:
                db.close()
        except (OSError, sqlite3.Error) as exc:
            raise ApprovalError(f"cannot open the approvals store {path}: {exc}") from None

    def now_us(self) -> int:
        return _now_us(self.clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading ---------------------------------------------------------------------------
    def _select(self, where: str, params: Iterable[Any] = (), tail: str = "") -> list[Approval]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM approvals WHERE {where} {tail}"
        with self._lock:
            return [_row(r) for r in self._db.execute(sql, tuple(params)).fetchall()]

    def get(self, approval_id: str) -> Approval | None:
        found = self._select("approval_id = ?", (approval_id,))
        return found[0] if found else None

    def list(self, statuses: Iterable[str] | None = None, *, limit: int = 100) -> list[Approval]:
        """Newest first; ``statuses`` filters on the stored status."""
        wanted = list(statuses or [])
        where = f"status IN ({', '.join('?' * len(wanted))})" if wanted else "1 = 1"
        return self._select(where, wanted, f"ORDER BY created_at_us DESC LIMIT {int(limit)}")

    def find(self, binding: str, status: Status) -> Approval | None:
        """An unexpired approval with this binding and status (denials: the latest)."""
        order = "DESC" if status == "denied" else "ASC"
        found = self._select(
            "binding = ? AND status = ? AND expires_at_us > ?",
            (binding, status, self.now_us()),
            f"ORDER BY COALESCE(decided_at_us, created_at_us) {order} LIMIT 1",
        )
        return found[0] if found else None

    def unreceipted(self) -> list[Approval]:
        """Decisions (approved, denied, cancelled, expired) no receipt records yet."""
        marks = ", ".join("?" * len(DECISIONS))
        return self._select(
            f"status IN ({marks}) AND (receipted_status IS NULL OR receipted_status != status)",
            DECISIONS,
            "ORDER BY COALESCE(decided_at_us, expires_at_us) ASC",
        )

    # -- writing ---------------------------------------------------------------------------
    def _write(self, sql: str, params: Iterable[Any]) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).rowcount
            except sqlite3.Error as exc:
                raise ApprovalError(f"the approvals store {self.path} failed: {exc}") from None

    def add(self, approval: Approval) -> None:
        values = [getattr(approval, c) for c in _COLUMNS]
        values[_COLUMNS.index("arguments_summary")] = json.dumps(
            approval.arguments_summary, sort_keys=True
        )
        if approval.arguments is not None:
            values[_COLUMNS.index("arguments")] = json.dumps(
                approval.arguments, sort_keys=True, ensure_ascii=False
            )
        marks = ", ".join("?" * len(values))
        self._write(f"INSERT INTO approvals ({', '.join(_COLUMNS)}) VALUES ({marks})", values)

    def decide(
        self, approval_id: str, status: Status, *, by: str, note: str | None = None
    ) -> Approval:
        """Record a decision about a pending approval; :class:`ApprovalError` if it cannot be.

        ``denied`` also revokes an approval that has not run yet (the approver is kept
        in ``approved_by``): a person who changes their mind must not have to wait for
        the expiry. A used approval stays used; the race with :meth:`consume` is one
        conditional ``UPDATE`` each, so exactly one of them wins.
        """
        if status not in DECISIONS:
            raise ApprovalError(f"{status!r} is not a decision ({', '.join(DECISIONS)})")
        now = self.now_us()
        note = _clean(note, _MAX_NOTE) if note else None
        if status == "expired":
            changed = self._write(
                "UPDATE approvals SET status = 'expired', arguments = NULL "
                "WHERE approval_id = ? AND status IN ('pending', 'approved')",
                (approval_id,),
            )
        elif status == "denied":
            changed = self._write(
                "UPDATE approvals SET status = 'denied', arguments = NULL, "
                "approved_by = CASE WHEN status = 'approved' THEN decided_by ELSE NULL END, "
                "approved_at_us = CASE WHEN status = 'approved' THEN decided_at_us ELSE NULL END, "
                "decided_at_us = ?, decided_by = ?, note = ? "
                "WHERE approval_id = ? AND status IN ('pending', 'approved') AND expires_at_us > ?",
                (now, _clean(by, 120), note, approval_id, now),
            )
        else:
            changed = self._write(
                "UPDATE approvals SET status = ?, decided_at_us = ?, decided_by = ?, note = ?, "
                "arguments = CASE WHEN ? = 'approved' THEN arguments END "
                "WHERE approval_id = ? AND status = 'pending' AND expires_at_us > ?",
                (status, now, _clean(by, 120), note, status, approval_id, now),
            )
        current = self.get(approval_id)
        if not changed:
            raise ApprovalError(_why_not(approval_id, current, now))
        assert current is not None
        return current

    def consume(self, approval_id: str, binding: str) -> bool:
        """Use an approved approval for one run of exactly its call; False if it cannot be."""
        now = self.now_us()
        return (
            self._write(
                "UPDATE approvals SET status = 'executed', used_at_us = ?, arguments = NULL "
                "WHERE approval_id = ? AND binding = ? AND status = 'approved' "
                "AND expires_at_us > ?",
                (now, approval_id, binding, now),
            )
            == 1
        )

    def mark_receipted(self, approval_id: str, status: str) -> None:
        self._write(
            "UPDATE approvals SET receipted_status = ? WHERE approval_id = ? AND status = ?",
            (status, approval_id, status),
        )

    def expire_due(self) -> int:
        """Expire pending and unused approvals past their time (their last step receipted)."""
        return self._write(
            "UPDATE approvals SET status = 'expired', arguments = NULL "
            "WHERE status IN ('pending', 'approved') AND expires_at_us <= ? "
            "AND receipted_status = status",
            (self.now_us(),),
        )


@contextlib.contextmanager
def store_errors_as_config(path: Path) -> Iterator[None]:
    """An approvals store that cannot be opened is a configuration error (exit 3) naming
    the file and the fix: the gateway must not serve without it, and it is not a bug."""
    try:
        yield
    except ApprovalError as exc:
        raise ConfigError(
            str(exc).replace(f" {path}:", ":", 1),  # the file is named once, as ``file``
            file=str(path),
            fix="move the damaged file aside (with its -wal and -shm files) and start again: "
            "calls held in it are asked anew; decisions already made stay in the receipts",
        ) from None


def _why_not(approval_id: str, current: Approval | None, now_us: int) -> str:
    if current is None:
        return f"no approval {approval_id!r} in this hall"
    status = current.effective_status(now_us)
    if status == "expired":
        return f"approval {approval_id} expired at {current.expires_at}"
    if status == "executed":
        return f"approval {approval_id} was already used at {iso(current.used_at_us)}"
    return f"approval {approval_id} is already {status}" + (
        f" (by {current.decided_by})" if current.decided_by else ""
    )


def check_id(approval_id: str) -> str:
    """An approval id as the router mints them (``apr_`` + URL-safe random)."""
    if not isinstance(approval_id, str) or not _ID.match(approval_id):
        raise ApprovalError(f"{approval_id!r} is not an approval id (apr_...)")
    return approval_id


# -- receipts -------------------------------------------------------------------------------------


def approval_receipt(approval: Approval, step: str, **extra: Any) -> dict[str, Any]:
    """The body of an ``approval`` receipt (arguments only as their digest)."""
    body: dict[str, Any] = {
        "kind": "approval",
        "step": step,
        "approval_id": approval.approval_id,
        "binding": approval.binding,
        "tenant_id": approval.tenant_id,
        "tool": approval.tool,
        "worker_id": approval.worker_id,
        "correlation_id": approval.correlation_id,
        "held_decision_id": approval.decision_id,
        "arguments_digest": approval.arguments_digest,
        "policy_version": approval.policy_version,
        "reason_code": approval.reason_code,
        "expires_at": approval.expires_at,
        "denial": step in _DENIALS,
    }
    if step in DECISIONS:
        body.update(decided_by=approval.decided_by, decided_at=iso(approval.decided_at_us))
        body["note"] = approval.note
    if step == "denied" and approval.approved_by is not None:  # an approval revoked unused
        body.update(
            revoked=True,
            approved_by=approval.approved_by,
            approved_at=iso(approval.approved_at_us),
        )
    body.update(extra)
    return body


def sweep(store: ApprovalStore, record: Callable[[dict[str, Any]], Any]) -> int:
    """Receipt decisions made elsewhere, expire what is due, receipt that. Returns receipts written.

    ``record`` writes one receipt body synchronously; only the process holding
    the receipt log calls this.
    """
    written = 0
    for round_ in range(2):
        for approval in store.unreceipted():
            record(approval_receipt(approval, approval.status))
            store.mark_receipted(approval.approval_id, approval.status)
            written += 1
        if round_ == 0 and not store.expire_due():
            break
    return written


# -- the desk: what the hall and the gateway use -----------------------------------------------


@dataclass
class Settled:
    """What became of a held decision once the store was consulted."""

    decision: RouteDecision
    approval: Approval | None
    #: The step to receipt after the decision: ``proposed`` (new hold), ``executed`` (runs now).
    step: Literal["proposed", "executed"] | None = None

    @property
    def receipt_fields(self) -> dict[str, Any]:
        """Extra fields of the decision receipt."""
        if self.approval is None:
            return {}
        fields: dict[str, Any] = {"approval_id": self.approval.approval_id}
        if self.step == "executed":
            fields["human_approved"] = True
            fields["approved_by"] = self.approval.decided_by
        return fields


class ApprovalDesk:
    """The store plus the hall's receipt writer; async, safe to share between calls."""

    def __init__(self, store: ApprovalStore, receipt: ReceiptFn) -> None:
        self.store = store
        self._receipt = receipt
        self._lock: Any = None  # an anyio.Lock, made in the event loop that first needs it

    @classmethod
    def open(cls, layout: HallLayout, receipt: ReceiptFn) -> ApprovalDesk:
        return cls(ApprovalStore.open(layout.approvals_db), receipt)

    def close(self) -> None:
        self.store.close()

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import anyio

        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    def _serial(self) -> Any:
        import anyio

        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def _step(self, approval: Approval, step: str, **extra: Any) -> dict[str, Any]:
        """Receipt one step, then remember that the approval's status is receipted."""
        receipt = await self._receipt(approval_receipt(approval, step, **extra))
        await self._db(self.store.mark_receipted, approval.approval_id, approval.status)
        return receipt

    async def sweep(self) -> int:
        """Receipt out-of-band decisions and expiries (see :func:`sweep`)."""
        import anyio

        def record(body: dict[str, Any]) -> Any:
            return anyio.from_thread.run(self._receipt, body)

        async with self._serial():
            return int(await self._db(sweep, self.store, record))

    async def get(self, approval_id: str) -> Approval | None:
        return await self._db(self.store.get, approval_id)

    # -- the hall's hook -----------------------------------------------------------------------
    async def settle(
        self,
        decision: RouteDecision,
        *,
        tool: str,
        worker_id: str | None,
        arguments: Mapping[str, Any],
        policy_version: str | None,
        schema: Mapping[str, Any] | None,
        decide_approved: Callable[[], RouteDecision],
        rules_digest: str,
        paths: Mapping[str, str | None] | None = None,
    ) -> Settled:
        """A held decision meets the store: run under an approval, refuse, or hold (again)."""
        binding = binding_digest(
            tenant_id=decision.tenant_id,
            env=decision.env,
            data_label=decision.data_label,
            tool=tool,
            worker_id=worker_id,
            arguments=arguments,
            policy_version=policy_version,
            hold_code=decision.deny_code,
            rules_digest=rules_digest,
            matched_rule_id=decision.matched_rule_id,
        )
        await self.sweep()  # an operator's decision is receipted before it is acted on
        approved = await self._db(self.store.find, binding, "approved")
        if approved is not None:
            again = decide_approved()
            if again.denied:  # a later stage still says no: the approval is not spent
                return Settled(again, None)
            if await self._db(self.store.consume, approved.approval_id, binding):
                return Settled(again, replace(approved, status="executed"), "executed")
        denied = await self._db(self.store.find, binding, "denied")
        if denied is not None:
            return Settled(_refused(decision, denied), denied)
        pending = await self._db(self.store.find, binding, "pending")
        if pending is not None:  # the same question is already with the operator
            decision.pending_approval_id = pending.approval_id
            decision.approval_expires_at = pending.expires_at
            return Settled(decision, pending)
        summary = summarize_arguments(arguments, schema, paths)
        approval = _proposal(decision, binding, tool, worker_id, arguments, summary, policy_version)
        await self._db(self.store.add, approval)
        return Settled(decision, approval, "proposed")

    async def record(self, settled: Settled, decision_receipt: Mapping[str, Any]) -> dict[str, Any]:
        """Receipt the step after the decision receipt; the governance record's ``approval``."""
        approval = settled.approval
        if approval is None:
            return {}
        info: dict[str, Any] = {
            "approval_id": approval.approval_id,
            "status": approval.status,
            "expires_at": approval.expires_at,
        }
        if approval.status == "pending":
            # The model reads this record: it names who decides, never the approving command.
            info["waiting_for"] = "a human operator"
        if settled.step is not None:
            async with self._serial():
                receipt = await self._step(
                    approval, settled.step, decision_receipt_id=decision_receipt.get("receipt_id")
                )
            info.update(step=settled.step, **{f"step_{k}": v for k, v in receipt.items()})
        if approval.decided_by:
            info["decided_by"] = approval.decided_by
        return info

    async def returned(self, settled: Settled, outcome: CallOutcome) -> None:
        """Receipt that the approved call's result went back to the caller."""
        if settled.approval is None or settled.step != "executed":
            return
        result = outcome.governance.get("outcome") or {}
        await self._receipt(
            approval_receipt(
                settled.approval,
                "returned",
                outcome_status=result.get("status"),
                outcome_receipt_id=result.get("outcome_receipt_id"),
                result_digest=digest(outcome.value) if outcome.value is not None else None,
            )
        )

    # -- in band ---------------------------------------------------------------------------------
    async def answer(
        self, approval_id: str, status: Status, *, by: str, note: str | None = None
    ) -> tuple[Approval, dict[str, Any]]:
        """A person's answer given through the gateway: record and receipt it at once."""
        async with self._serial():
            approval = await self._db(self.store.decide, approval_id, status, by=by, note=note)
            receipt = await self._step(approval, approval.status)
        return approval, receipt

    async def refuse(self, approval_id: str, reason: str, **context: Any) -> dict[str, Any]:
        """Receipt a refused approval answer (unknown, stale, used or replayed)."""
        return await self._receipt(
            {
                "kind": "approval",
                "step": "refused",
                "approval_id": approval_id,
                "reason": reason,
                "denial": True,
                **context,
            }
        )


def _hold_reason(decision: RouteDecision) -> str:
    reason = decision.deny_reason_if_denied or {}
    return str(reason.get("message") or reason.get("reason") or reason.get("code") or "")


def _proposal(
    decision: RouteDecision,
    binding: str,
    tool: str,
    worker_id: str | None,
    arguments: Mapping[str, Any],
    summary: ArgumentSummary,
    policy_version: str | None,
) -> Approval:
    assert decision.pending_approval_id and decision.approval_expires_at
    return Approval(
        approval_id=check_id(decision.pending_approval_id),
        binding=binding,
        status="pending",
        tenant_id=decision.tenant_id,
        tool=tool,
        worker_id=worker_id,
        arguments_digest=digest(dict(arguments)),
        arguments_summary=summary.shown,
        reason_code=decision.deny_code,
        reason=_hold_reason(decision),
        policy_version=decision.policy_version or policy_version,
        supervisor_level=decision.supervisor_level,
        correlation_id=decision.correlation_id,
        decision_id=decision.decision_id,
        created_at_us=_parse_iso_us(decision.timestamp),
        expires_at_us=_parse_iso_us(decision.approval_expires_at),
        arguments=dict(arguments),
        summary_lossy=summary.lossy,
        env=decision.env,
        data_label=decision.data_label,
    )


def _refused(decision: RouteDecision, denied: Approval) -> RouteDecision:
    """The held decision turned into a denial: a person already said no to this exact call."""
    note = f" Note: {denied.note}" if denied.note else ""
    reason = {
        "code": APPROVAL_DENIED_CODE,
        "message": f"A person denied this exact call (approval {denied.approval_id}, "
        f"by {denied.decided_by}).{note}",
        "approval_id": denied.approval_id,
        "approval_status": "denied",
        "held_code": decision.deny_code,
    }
    return decision.model_copy(
        update={
            "deny_reason_if_denied": reason,
            "supervisor_required": False,
            "pending_approval_id": None,
            "approval_expires_at": None,
        }
    )


async def sweep_forever(desk: Callable[[], ApprovalDesk | None], interval_s: float) -> None:
    """The gateway's background sweep; ``desk`` is read each round (reloads swap halls)."""
    import anyio

    while True:  # sweep first: decisions made while no gateway ran are receipted at start
        current = desk()
        if current is not None:
            await sweep_once(current)
        await anyio.sleep(interval_s)


async def sweep_once(desk: ApprovalDesk) -> None:
    """One sweep that never raises (the gateway's start, rounds and shutdown)."""
    try:
        await desk.sweep()
    except Exception as exc:  # the next round retries; a call also sweeps
        sys.stderr.write(f"pyhall: approvals sweep failed: {type(exc).__name__}: {exc}\n")


# -- in band: asking the person at the MCP client ------------------------------------------------


def approval_schema() -> dict[str, Any]:
    """The elicitation form: a yes/no and an optional note (flat, as elicitation requires)."""
    return {
        "type": "object",
        "properties": {
            "approve": {
                "type": "boolean",
                "title": "Approve this call",
                "description": "Run exactly this call, once.",
                "default": False,
            },
            "note": {"type": "string", "title": "Note (optional)", "maxLength": _MAX_NOTE},
        },
        "required": ["approve"],
    }


def approval_message(approval: Approval, now_us: int) -> str:
    """What the person reads: tool, arguments, why, and until when."""
    minutes = max(0, (approval.expires_at_us - now_us) // 60_000_000)
    lines = [
        f"Approve a governed tool call? Agent (tenant {approval.tenant_id}) wants to run "
        f"the tool '{approval.tool}' (env {approval.env}, data {approval.data_label}).",
        f"Why a person must decide: {approval.reason or approval.reason_code}",
        "Arguments:",
        *(f"  {k}: {v}" for k, v in approval.arguments_summary.items()),
        *(
            ["(Abridged: some arguments are clipped, redacted or left out above.)"]
            if approval.summary_lossy
            else []
        ),
        f"Approval {approval.approval_id} expires at {approval.expires_at} "
        f"(in about {minutes} min). Approving runs this exact call once; "
        "declining denies it.",
    ]
    return "\n".join(lines)


def verdict_of(answer: Any) -> tuple[Status, str | None]:
    """An elicitation answer as a decision: only an explicit accept with approve=true approves."""
    action = getattr(answer, "action", None)
    content = getattr(answer, "content", None) or {}
    note = content.get("note") if isinstance(content, Mapping) else None
    note = note if isinstance(note, str) and note.strip() else None
    if action == "accept":
        approved = isinstance(content, Mapping) and content.get("approve") is True
        return ("approved" if approved else "denied"), note
    if action == "decline":
        return "denied", note
    return "cancelled", note


def can_elicit(ctx: Any) -> bool:
    """Did this client declare form elicitation (handshake or per-request capabilities)?"""
    caps = getattr(ctx.session, "client_capabilities", None)
    elicitation = getattr(caps, "elicitation", None) if caps is not None else None
    if elicitation is None:
        return False
    # An empty `elicitation: {}` is the 2025-06-18 spelling of form support.
    return elicitation.form is not None or elicitation.url is None


def _is_modern(ctx: Any) -> bool:
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    return getattr(ctx.session, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS


_BY_ELICITATION = "person at the MCP client (elicitation)"


async def ask_in_band(
    hall: Hall, ctx: Any, params: Any, meta: Mapping[str, Any], held: CallOutcome, progress: Any
) -> Any:
    """A held call, asked of the person at the client when it can be; else stays held.

    Returns a ``CallOutcome`` (handshake era: after asking) or an
    ``InputRequiredResult`` (2026-07-28: the client asks and retries). Never
    raises: a failure leaves the call held for the operator.
    """
    import anyio

    try:
        return await _ask(hall, ctx, params, meta, held, progress)
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        sys.stderr.write(f"pyhall: asking for approval failed ({type(exc).__name__}); held\n")
        return held


async def _ask(
    hall: Hall, ctx: Any, params: Any, meta: Mapping[str, Any], held: CallOutcome, progress: Any
) -> Any:
    import anyio

    desk = hall.approvals
    approval_id = held.governance.get("pending_approval_id")
    if desk is None or not approval_id or not hall.settings.in_band_approval:
        return held  # the operator's CLI decides
    if not can_elicit(ctx):
        return held
    approval = await desk.get(approval_id)
    if approval is None or approval.status != "pending":
        return held
    now = desk.store.now_us()
    message = approval_message(approval, now)
    if _is_modern(ctx):
        import mcp.types as types

        question = types.ElicitRequest(
            params=types.ElicitRequestFormParams(
                message=message, requested_schema=approval_schema()
            )
        )
        # The boundary (gateway middleware) seals this id: encrypted, bound to tool and arguments.
        return types.InputRequiredResult(
            input_requests={ELICIT_KEY: question}, request_state=approval.approval_id
        )
    answer: Any = None
    try:
        with anyio.move_on_after(max(0.0, (approval.expires_at_us - now) / 1_000_000)):
            answer = await ctx.session.elicit_form(
                message, approval_schema(), related_request_id=ctx.request_id
            )
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:  # the client could not ask: the approval stays with the operator
        sys.stderr.write(f"pyhall: elicitation failed ({type(exc).__name__}); call stays held\n")
        return held
    status, note = ("expired", None) if answer is None else verdict_of(answer)
    return await _conclude(hall, params, meta, approval, status, note, progress)


async def resume_in_band(hall: Hall, params: Any, meta: Mapping[str, Any], progress: Any) -> Any:
    """The 2026-07-28 retry: the sealed state names the approval, the responses answer it.

    Never raises: a failure is a denial (nothing runs).
    """
    import anyio

    try:
        return await _resume(hall, params, meta, progress)
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        sys.stderr.write(f"pyhall: approval answer failed: {type(exc).__name__}\n")
        from .hall import CallOutcome

        said = "The hall could not record the approval answer; nothing was run."
        gov = _gov(hall, params.name, None, APPROVAL_INVALID_CODE, said, {})
        return CallOutcome("internal_error", params.name, said, gov)


async def _resume(hall: Hall, params: Any, meta: Mapping[str, Any], progress: Any) -> Any:
    desk = hall.approvals
    assert desk is not None
    approval_id = params.request_state
    if not hall.settings.in_band_approval:  # a state sealed before a reload turned it off
        return await _refusal(hall, params.name, approval_id, None, "in-band approval is off")
    answer = (params.input_responses or {}).get(ELICIT_KEY)
    status, note = verdict_of(answer)
    approval = await desk.get(approval_id) if isinstance(approval_id, str) else None
    if (
        approval is None
        or approval.tool != params.name
        or approval.tenant_id != hall.settings.tenant_id
    ):
        return await _refusal(hall, params.name, approval_id, None, "unknown approval")
    return await _conclude(hall, params, meta, approval, status, note, progress)


async def _conclude(
    hall: Hall,
    params: Any,
    meta: Mapping[str, Any],
    approval: Approval,
    status: Status,
    note: str | None,
    progress: Any,
) -> CallOutcome:
    from .hall import META_CORRELATION_ID

    desk = hall.approvals
    assert desk is not None
    try:
        decided, receipt = await desk.answer(
            approval.approval_id, status, by=_BY_ELICITATION, note=note
        )
    except ApprovalError as exc:
        # The operator decided while the person was asked. A "no" from either wins (a
        # decline revokes an operator's approval in answer()); report what stands.
        decided, receipt = await desk.get(approval.approval_id), {}
        if decided is not None and decided.status == "denied":
            return _denied_outcome(hall, params.name, decided, receipt)
        if decided is not None and decided.status == "approved" and status != "approved":
            then = (
                "The operator's approval stands: the identical call runs once if made again "
                f"before {decided.expires_at}."
            )
            return await _refusal(hall, params.name, approval.approval_id, approval, str(exc), then)
        if decided is None or decided.status != "approved":
            return await _refusal(hall, params.name, approval.approval_id, approval, str(exc))
    if decided.status != "approved":
        return _denied_outcome(hall, params.name, decided, receipt)
    # The one call path runs it: it finds this approval by the call's binding and spends it.
    again = {**meta, META_CORRELATION_ID: approval.correlation_id or ""}
    return await hall.call(params.name, params.arguments, meta=again, progress=progress)


def _denied_outcome(
    hall: Hall, tool: str, approval: Approval, receipt: Mapping[str, Any]
) -> CallOutcome:
    from .hall import CallOutcome

    said = {
        "denied": "The person declined this call."
        if approval.decided_by == _BY_ELICITATION
        else f"The operator ({approval.decided_by}) denied this call.",
        "cancelled": "The person dismissed the approval request without deciding.",
        "expired": "Nobody approved this call before the approval expired.",
    }[approval.status]
    message = f"Denied by the governance hall ({APPROVAL_DENIED_CODE}): {said} Nothing was run."
    return CallOutcome(
        "denied", tool, message, _gov(hall, tool, approval, APPROVAL_DENIED_CODE, said, receipt)
    )


async def _refusal(
    hall: Hall,
    tool: str,
    approval_id: Any,
    approval: Approval | None,
    why: str,
    then: str = "Call the tool again to ask anew.",
) -> CallOutcome:
    from .hall import CallOutcome

    desk = hall.approvals
    assert desk is not None
    shown = approval_id if isinstance(approval_id, str) and _ID.match(approval_id) else None
    receipt = await desk.refuse(
        shown or "invalid", why, tool=tool, tenant_id=hall.settings.tenant_id
    )
    said = f"This approval cannot be used: {why}. {then}"
    message = f"Denied by the governance hall ({APPROVAL_INVALID_CODE}): {said} Nothing was run."
    gov = _gov(hall, tool, approval, APPROVAL_INVALID_CODE, said, receipt)
    gov["deny_reason_if_denied"]["approval_id"] = shown
    return CallOutcome("denied", tool, message, gov)


def _gov(
    hall: Hall,
    tool: str,
    approval: Approval | None,
    code: str,
    message: str,
    receipt: Mapping[str, Any],
) -> dict[str, Any]:
    reason: dict[str, Any] = {"code": code, "message": message}
    gov: dict[str, Any] = {
        "tool": tool,
        "tenant_id": hall.settings.tenant_id,
        "denied": True,
        "deny_code": code,
        "deny_message": message,
        "deny_reason_if_denied": reason,
        "supervisor_required": False,
        **receipt,
    }
    if approval is not None:
        reason.update(approval_id=approval.approval_id, approval_status=approval.status)
        gov.update(
            worker_id=approval.worker_id,
            correlation_id=approval.correlation_id,
            decision_id=approval.decision_id,
            policy_version=approval.policy_version,
            approval={"approval_id": approval.approval_id, "status": approval.status},
        )
    return gov
