"""``pyhall audit``: verify, read and export the hall's signed receipt log.

Every command here reads the receipts and public keys only; none needs (or
touches) the hall's private signing key, so a third party can run them on a
copy of the state directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from ..audit import (
    Receipt,
    SQLiteReceiptStore,
    export_dsse,
    verify_log,
    verify_receipt,
)
from ..checkpoints import append_checkpoint, read_checkpoints, time_of_us
from ..errors import IntegrityError, SigningError
from ..layout import HallLayout
from ..signing import Keyring
from ._common import (
    EXIT_NO,
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

#: Logs at least this long show progress on stderr while they verify.
_PROGRESS_FROM = 20_000
_FOLLOW_POLL_S = 0.5


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "audit",
        help="verify, read and export the signed receipt log",
        description="Verify, read and export the hall's signed, hash-chained receipt log. "
        "Needs only the receipts and the public keys.",
    )
    sub = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")

    def usage(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=usage)

    verify = sub.add_parser(
        "verify",
        help="check the chain, hashes, signatures and latest checkpoint",
        description="Exit 0 when every receipt's order, chain link, hash and signature hold "
        "and the latest checkpoint matches; exit 1 naming the first broken record otherwise.",
    )
    _common_args(verify)
    verify.add_argument(
        "--keyring",
        metavar="FILE",
        help="trusted receipt public keys (default: the state directory's keys/receipt-keys.yaml;"
        " pass a copy kept elsewhere to trust nothing in the state directory)",
    )
    verify.add_argument(
        "--checkpoints",
        metavar="FILE",
        help="signed checkpoint lines kept outside the state directory (a copy of its "
        "checkpoints.jsonl, or its last line): the log must still hold what they signed, so "
        "a log cut or rolled back together with its own checkpoints is caught",
    )
    verify.set_defaults(func=run_verify)

    tail = sub.add_parser(
        "tail",
        help="show the latest receipts",
        description="Show the latest receipts; "
        "with --json, one full receipt per line (JSON Lines).",
    )
    _common_args(tail)
    tail.add_argument(
        "-n", type=number_in(0), default=10, metavar="N", help="how many (default 10)"
    )
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new receipts")
    tail.set_defaults(func=run_tail)

    show = sub.add_parser("show", help="show one receipt and check its hash and signature")
    _common_args(show)
    show.add_argument("receipt_id", metavar="RECEIPT_ID", help="a receipt id (or a seq number)")
    show.set_defaults(func=run_show)

    export = sub.add_parser(
        "export",
        help="export receipts as DSSE envelopes (JSON Lines)",
        description="Write every receipt as a standard DSSE envelope, one per line, "
        "reusing its signature.",
    )
    _common_args(export)
    export.add_argument(
        "--dsse", action="store_true", required=True, help="DSSE envelopes (the only format)"
    )
    export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    export.set_defaults(func=run_export)

    anchor = sub.add_parser(
        "anchor",
        help="copy the latest signed checkpoint to a file kept outside the state directory",
        description="Append the hall's latest signed checkpoint to FILE (somewhere whoever can "
        "write the state directory cannot: another disk, host or account), when it is newer "
        "than the last one there. Run it from cron; `pyhall audit verify --checkpoints FILE` "
        "then catches a log cut or rolled back together with its own checkpoints. Exit 1 "
        "when the hall's checkpoints are older than FILE's (they were cut or rolled back).",
    )
    _common_args(anchor)
    anchor.add_argument("--to", metavar="FILE", required=True, help="the outside file")
    anchor.set_defaults(func=run_anchor)


def _common_args(parser: argparse.ArgumentParser) -> None:
    add_state_dir_arg(parser)
    add_hall_arg(parser)
    add_json_arg(parser)


def _open_store(layout: HallLayout) -> SQLiteReceiptStore | None:
    if not layout.audit_db.exists():
        return None
    return SQLiteReceiptStore(layout.audit_db, readonly=True)


def _no_log(layout: HallLayout, doing: str, details: dict[str, Any] | None = None) -> CommandFailed:
    # Success about nothing would hide a wrong --hall or --state-dir, or a deleted log.
    what = "holds no receipts" if layout.audit_db.exists() else "does not exist"
    return CommandFailed(
        f"the audit log {layout.audit_db} {what}: nothing to {doing} (check --hall and "
        "--state-dir or PYHALL_STATE_DIR; a hall that never served a call has none yet)",
        EXIT_NO,
        details=details,
    )


# -- verify ---------------------------------------------------------------------------


def _progress_printer() -> Callable[[int, int], None]:
    interactive = sys.stderr.isatty()
    shown = {"tenth": -1}

    def progress(done: int, total: int) -> None:
        if total < _PROGRESS_FROM:
            return
        if interactive:
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\rverifying receipts: {done:,}/{total:,}{end}")
        else:
            tenth = done * 10 // total
            if tenth == shown["tenth"]:
                return
            shown["tenth"] = tenth
            sys.stderr.write(f"verifying receipts: {done:,}/{total:,}\n")
        sys.stderr.flush()

    return progress


def run_verify(args: argparse.Namespace) -> int:
    layout = hall_layout(args)
    keyring = Keyring.load(args.keyring, missing_ok=False) if args.keyring else None
    anchors = Path(args.checkpoints) if args.checkpoints else None
    if anchors is not None and not anchors.is_file():
        raise CommandFailed(f"--checkpoints {anchors}: no such file", EXIT_USAGE)
    report = verify_log(layout, keyring=keyring, anchors=anchors, progress=_progress_printer())
    data = report.as_dict() | {
        "keyring": str(args.keyring or layout.receipt_keyring),
        "checkpoints": [str(layout.checkpoints), *([str(anchors)] if anchors else [])],
    }
    if report.ok and report.count == 0:  # no log, or one emptied: never "OK" about nothing
        raise _no_log(layout, "verify", data | {"ok": False})
    if not report.ok:
        error = report.first_error or {}
        where = f"receipt seq {error.get('seq')}" if error.get("seq") is not None else "log"
        if error.get("receipt_id"):
            where += f" ({error['receipt_id']})"
        raise CommandFailed(
            f"the audit log does NOT verify: first broken record: {where}: {error.get('problem')}",
            EXIT_NO,
            details=data,
        )
    lines = [
        f"audit log OK: {report.count:,} receipts; order, chain links, hashes and "
        "signatures verify",
        (
            f"latest checkpoint covers {report.checkpoint_size:,} receipts and matches"
            if report.checkpoint_size is not None
            else "no checkpoint yet"
        ),
    ]
    if report.head_hash:
        lines.append(f"head hash: {report.head_hash}")
    if len(report.key_ids) > 1:
        lines.append(
            f"signing key rotated: {' -> '.join(report.key_ids)} (check each rotation was yours)"
        )
    lines.extend(f"warning: {warning}" for warning in report.warnings)
    lines.append(f"trusted keys: {data['keyring']}; checkpoints: {', '.join(data['checkpoints'])}")
    if not args.keyring or not anchors:
        # What this verdict rests on: an attacker who can write the state directory can
        # change its keyring and cut the log together with its checkpoints.
        lines.append(
            "note: trusted "
            + " and ".join(
                part
                for part, own in (
                    ("the state directory's own keyring", not args.keyring),
                    ("its own checkpoints", not anchors),
                )
                if own
            )
            + "; pass --keyring and --checkpoints copies kept elsewhere to trust nothing in it"
        )
    emit(args, data, "\n".join(lines))
    return 0


# -- tail / show ------------------------------------------------------------------------


def _when(body: dict[str, Any]) -> str:
    try:
        return time_of_us(body["recorded_at_us"]).astimezone(UTC).isoformat(timespec="milliseconds")
    except (KeyError, TypeError, OverflowError):
        return "?"


def _summary(body: dict[str, Any]) -> str:
    kind = body.get("kind")
    if kind == "decision":
        text = f"{body.get('decision')} {body.get('tool')} tenant={body.get('tenant_id')}"
        return text + (f" {body['deny_code']}" if body.get("deny_code") else "")
    if kind == "outcome":
        return (
            f"{body.get('status')} {body.get('duration_us')}us of {body.get('decision_receipt_id')}"
        )
    if kind == "key_rotation":
        return f"{body.get('old_key_id')} -> {body.get('new_key_id')}"
    return ""


def _print_receipts(args: argparse.Namespace, receipts: Iterator[Receipt]) -> int:
    last = 0
    for receipt in receipts:
        body = receipt.body
        if args.json:
            line = json.dumps(body, sort_keys=True, separators=(",", ":"))
        else:
            line = (
                f"{receipt.seq:>8}  {_when(body)}  {body.get('kind')!s:<12} "
                f"{_summary(body)}  {receipt.receipt_id}"
            )
        sys.stdout.write(line + "\n")
        last = receipt.seq
    sys.stdout.flush()
    return last


def run_tail(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise CommandFailed("-n must be zero or more", EXIT_USAGE)
    layout = hall_layout(args)
    store = _open_store(layout)
    last = 0
    try:
        if store is not None:
            head = store.head()
            if head is not None and args.n:
                start = max(1, head.seq - args.n + 1)
                records = store.iter_range(start)
                last = _print_receipts(args, (Receipt.from_record(r) for r in records))
            last = head.seq if head is not None else 0
        elif not args.follow and not args.json:
            sys.stderr.write(f"no receipts yet ({layout.audit_db} does not exist)\n")
        while args.follow:
            time.sleep(_FOLLOW_POLL_S)
            if store is None:
                store = _open_store(layout)
                continue
            records = store.iter_range(last + 1)
            last = _print_receipts(args, (Receipt.from_record(r) for r in records)) or last
    finally:
        if store is not None:
            store.close()
    return 0


def run_show(args: argparse.Namespace) -> int:
    layout = hall_layout(args)
    store = _open_store(layout)
    record = None
    if store is not None:
        try:
            if args.receipt_id.isdigit():
                record = next(
                    iter(store.iter_range(int(args.receipt_id), int(args.receipt_id))), None
                )
            else:
                record = store.get(args.receipt_id)
        finally:
            store.close()
    if record is None:
        raise CommandFailed(f"no receipt {args.receipt_id} in {layout.audit_db}", EXIT_NO)
    receipt = Receipt.from_record(record)
    try:
        verify_receipt(receipt.body, Keyring.load(layout.receipt_keyring))
        check: dict[str, Any] = {"ok": True, "problem": None}
    except IntegrityError as exc:
        check = {"ok": False, "problem": str(exc)}
    verdict = "hash and signature: OK" if check["ok"] else f"does NOT verify: {check['problem']}"
    text = json.dumps(receipt.body, indent=2, sort_keys=True) + "\n" + verdict
    emit(args, {"receipt": receipt.body, "check": check}, text)
    return 0 if check["ok"] else EXIT_NO


# -- export -----------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    layout = hall_layout(args)
    store = _open_store(layout)
    if store is None:
        raise _no_log(layout, "export")
    out = Path(args.out) if args.out else None
    count = 0
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    try:
        for record in store.iter_all():
            envelope = export_dsse(Receipt.from_record(record).body)
            sink.write(json.dumps(envelope, separators=(",", ":")) + "\n")
            count += 1
    finally:
        store.close()
        if out:
            sink.close()
        else:
            sink.flush()
    if out:
        emit(
            args,
            {"exported": count, "out": str(out)},
            f"exported {count:,} receipts as DSSE envelopes to {out}",
        )
    return 0


# -- anchor -----------------------------------------------------------------------------


def run_anchor(args: argparse.Namespace) -> int:
    layout = hall_layout(args)
    target = Path(args.to)
    try:
        ours, _ = read_checkpoints(layout.checkpoints)
        kept, _ = read_checkpoints(target, kept=True)
    except (OSError, ValueError) as exc:
        raise CommandFailed(f"cannot read checkpoints: {exc}", EXIT_NO) from None
    if not ours:
        raise CommandFailed(
            f"no checkpoint in {layout.checkpoints} yet: the gateway signs one every "
            "checkpoint_every receipts or checkpoint_interval_s, and when it starts and stops",
            EXIT_NO,
        )
    latest = max(ours, key=lambda c: c.size)
    try:
        latest.verify(Keyring.load(layout.receipt_keyring))
    except SigningError as exc:
        raise CommandFailed(
            f"{layout.checkpoints}: checkpoint line {latest.line} does not verify: {exc.message}",
            EXIT_NO,
        ) from None
    anchored = max((c.size for c in kept), default=-1)
    data = {"ok": True, "to": str(target), "size": latest.size, "appended": False}
    rewritten = any(c.size == latest.size and c.root != latest.root for c in kept)
    if anchored > latest.size or rewritten:
        raise CommandFailed(
            f"{target} already holds a checkpoint of {anchored} receipts that the hall's latest "
            f"(of {latest.size}) contradicts: its log was cut, rolled back or rewritten (run "
            f"`pyhall audit verify --checkpoints {target}`)",
            EXIT_NO,
            details=data | {"ok": False, "anchored": anchored},
        )
    if anchored < latest.size:
        append_checkpoint(target, latest.body)
        data["appended"] = True
    said = "appended" if data["appended"] else "already there"
    emit(args, data, f"checkpoint of {latest.size:,} receipts {said}: {target}")
    return 0
