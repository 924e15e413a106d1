"""``pyhall approvals list|show|approve|deny``: the operator decides on held calls.

A call held for a person (``DENY_REQUIRES_HUMAN_APPROVAL``, or
``DENY_REQUIRES_HUMAN`` from the blast gate) waits in the hall's approvals
store. ``approve`` lets the agent's *identical* retry run once before the
approval expires; ``deny`` refuses identical retries until then, and also
revokes an approval that has not run yet.

Receipts: while a gateway serves the hall it holds the receipt log, so this
command records the decision (who, when, note) in the store and waits, up to
one sweep interval, for the gateway to receipt it. When no process holds the
log (or it is freed meanwhile), this command takes it and receipts the
decision itself. Otherwise it says the decision is not receipted yet, and what
will receipt it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
from typing import Any

from ._common import (
    EXIT_NO,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    add_hall_arg,
    add_json_arg,
    add_state_dir_arg,
    emit,
    hall_layout,
    number_in,
)

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "approvals",
        help="list held calls and approve or deny them",
        description="Held calls wait here for a person. Approving lets the agent's identical "
        "retry run exactly once before the approval expires.",
    )
    sub = parser.add_subparsers(dest="approvals_command", metavar="SUBCOMMAND", required=True)

    listing = sub.add_parser("list", help="held calls waiting for a decision (--all: every one)")
    listing.add_argument("--all", action="store_true", help="include decided, used and expired")
    listing.add_argument(
        "--limit", type=number_in(1), default=100, help="at most this many (newest first)"
    )
    _common(listing)
    listing.set_defaults(func=run_list)

    show = sub.add_parser("show", help="everything recorded about one approval")
    show.add_argument("approval_id", metavar="ID")
    show.add_argument(
        "--full",
        action="store_true",
        help="also the exact arguments, unclipped and unredacted (secrets included)",
    )
    _common(show)
    show.set_defaults(func=run_show)

    for name, verb, what in (
        ("approve", "approved", "approve a held call"),
        ("deny", "denied", "deny a held call, or revoke an approval not used yet"),
    ):
        decide = sub.add_parser(
            name, help=f"{what} (exit 1 if unknown, expired, already decided or used)"
        )
        decide.add_argument("approval_id", metavar="ID")
        decide.add_argument("--note", help="why (recorded with the decision and receipted)")
        decide.add_argument("--by", help="who decides (default: operator:<login name>)")
        _common(decide)
        decide.set_defaults(func=run_decide, decision=verb)


def _common(parser: argparse.ArgumentParser) -> None:
    add_state_dir_arg(parser)
    add_hall_arg(parser)
    add_json_arg(parser)


def _store(args: argparse.Namespace, *, create: bool, writes: bool = False) -> Any:
    """The hall's approvals store; None when it does not exist and ``create`` is false."""
    from ..approvals import ApprovalStore, store_errors_as_config

    layout = hall_layout(args, writes=writes or create)
    if not create and not layout.approvals_db.exists():
        return None
    with store_errors_as_config(layout.approvals_db):
        return ApprovalStore.open(layout.approvals_db)


def _not_found(args: argparse.Namespace, approval_id: str) -> CommandFailed:
    # Name the store searched: a wrong --hall or --state-dir is the usual cause.
    where = hall_layout(args).approvals_db
    return CommandFailed(
        f"no approval {approval_id!r} in {where} (check --hall and --state-dir)", EXIT_NO
    )


def _check_id(approval_id: str) -> str:
    from ..approvals import check_id
    from ..errors import ApprovalError

    try:
        return check_id(approval_id)
    except ApprovalError as exc:
        raise CommandFailed(str(exc), EXIT_USAGE) from None


def _minutes(seconds: int) -> str:
    if seconds <= 0:
        return "expired"
    return f"in {seconds // 60}m{seconds % 60:02d}s" if seconds < 3600 else f"in {seconds // 3600}h"


def _render(item: dict[str, Any]) -> str:
    summary = item["arguments_summary"]
    args = [f"    {k} = {v}" for k, v in summary.items()] or ["    (no arguments)"]
    head = f"{item['approval_id']}  {item['status']}  expires {item['expires_at']}"
    if item["status"] in ("pending", "approved"):
        head += f" ({_minutes(item['expires_in_s'])})"
    lines = [
        head,
        f"  who:  tenant {item['tenant_id']}, env {item['env'] or '?'}, "
        f"data label {item['data_label'] or '?'}",
        f"  what: {item['tool']}",
        *args,
    ]
    if "arguments" in item and item["arguments"] is None:
        lines.append(
            "  exact arguments: erased when the approval ended (only a call that waits keeps them)"
            if item["status"] not in ("pending", "approved")
            else "  exact arguments: not stored (held before this version kept them)"
        )
    elif "arguments" in item:  # show --full: exactly what the call carries
        exact = json.dumps(item["arguments"], indent=2, sort_keys=True, ensure_ascii=True)
        lines.append("  exact arguments (--full):")
        lines.extend(f"    {line}" for line in exact.splitlines())
    elif item.get("summary_lossy"):
        lines.append(
            "  note: this summary is abridged (clipped, redacted or arguments left out); "
            f"`pyhall approvals show {item['approval_id']} --full` shows them exactly"
        )
    lines.append(f"  why:  {item['reason'] or item['reason_code']}")
    if item.get("supervisor_level"):
        lines.append(f"  who decides: supervisor level {item['supervisor_level']}")
    if item.get("approved_by"):
        lines.append(f"  approved by {item['approved_by']} at {item['approved_at']}, then revoked")
    if item.get("decided_by"):
        verb = item["status"] if item["status"] in ("denied", "cancelled") else "approved"
        note = f" ({item['note']})" if item.get("note") else ""
        lines.append(f"  {verb} by {item['decided_by']} at {item['decided_at']}{note}")
    if item.get("used_at"):
        lines.append(f"  ran at {item['used_at']}")
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    store = _store(args, create=False)
    items: list[dict[str, Any]] = []
    if store is not None:
        try:
            now = store.now_us()
            statuses = None if args.all else ("pending", "approved")
            found = store.list(statuses, limit=max(1, args.limit))
            items = [a.as_dict(now) for a in found]
            if not args.all:  # an unswept approval past its time is not actionable
                items = [i for i in items if i["status"] in ("pending", "approved")]
        finally:
            store.close()
    where = hall_layout(args).approvals_db
    text = "\n\n".join(_render(i) for i in items) if items else f"No held calls waiting ({where})."
    emit(args, {"ok": True, "count": len(items), "approvals": items}, text)
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    approval_id = _check_id(args.approval_id)
    store = _store(args, create=False)
    approval = None
    if store is not None:
        try:
            approval = store.get(approval_id)
            now = store.now_us()
        finally:
            store.close()
    if approval is None:
        raise _not_found(args, approval_id)
    item = approval.as_dict(now, full=args.full)
    emit(args, {"ok": True, "approval": item}, _render(item))
    return EXIT_OK


def _operator(by: str | None) -> str:
    if by and by.strip():
        return by.strip()
    try:
        return f"operator:{getpass.getuser()}"
    except Exception:  # no login name (containers): still say who in kind
        return "operator"


def run_decide(args: argparse.Namespace) -> int:
    from ..errors import ApprovalError

    approval_id = _check_id(args.approval_id)
    store = _store(args, create=False, writes=True)
    if store is None:
        raise _not_found(args, approval_id)
    try:
        try:
            approval = store.decide(
                approval_id, args.decision, by=_operator(args.by), note=args.note
            )
        except ApprovalError as exc:
            raise CommandFailed(str(exc), EXIT_NO) from None
        receipted = _receipt_now(hall_layout(args, writes=True), store, approval_id)
    finally:
        store.close()
    item = approval.as_dict(store.now_us())
    if args.decision == "approved":
        then = f"the agent's identical retry runs once before {item['expires_at']}"
    else:
        then = f"identical retries are refused until {item['expires_at']}"
        if approval.approved_by:  # it was approved and had not run: revoked
            then = f"the approval by {approval.approved_by} is revoked; {then}"
    text = (
        f"{args.decision} {approval_id}: {item['tool']} for tenant {item['tenant_id']}; "
        f"{then}.\n{receipted['message']}"
    )
    emit(args, {"ok": True, "approval": item, "receipts": receipted}, text)
    return EXIT_OK


def _receipt_now(layout: Any, store: Any, approval_id: str) -> dict[str, Any]:
    """Receipt the decision before returning, when that can be done in a few seconds.

    Only the process holding the receipt log writes receipts. A serving gateway
    holds it and receipts the decision at its next sweep; a short-lived process
    (``pyhall call``, another approver) holds it briefly. So wait, up to one sweep
    interval and a second, until either the log is free (receipt it here) or the
    holder has receipted it; otherwise say plainly that it is not receipted yet.
    """
    from ..approvals import SWEEP_INTERVAL_S, sweep
    from ..audit import ReceiptLog
    from ..errors import AuditError, IntegrityError, PyhallError

    if not layout.audit_db.exists():
        return {"written": 0, "message": "This hall keeps no receipt log; nothing to receipt."}
    deadline = time.monotonic() + SWEEP_INTERVAL_S + 1.0
    while True:
        try:
            log = ReceiptLog.open(layout)
            break
        except AuditError as exc:
            if isinstance(exc, IntegrityError) or "another process" not in str(exc):
                return {"written": 0, "message": f"Decision recorded, NOT receipted: {exc}"}
        except PyhallError as exc:  # a key or keyring problem: the decision stands, say so
            return {"written": 0, "message": f"Decision recorded, NOT receipted: {exc}"}
        current = store.get(approval_id)
        if current is not None and current.receipted_status == current.status:
            return {
                "written": 0,
                "by_gateway": True,
                "message": "Receipted by the running gateway, which holds the receipt log.",
            }
        if time.monotonic() >= deadline:
            return {
                "written": 0,
                "by_gateway": False,
                "message": "Decision recorded, NOT receipted yet: another process holds the "
                "receipt log. A gateway serving this hall receipts it at its next sweep "
                f"(every {SWEEP_INTERVAL_S:g} s while it runs, and when it starts or stops), "
                "or the next `pyhall approvals approve|deny` that gets the log does.",
            }
        time.sleep(0.2)
    try:
        written = sweep(store, log.record_sync)
    finally:
        log.close()
    return {"written": written, "message": f"Receipted ({written} receipt(s) written)."}
