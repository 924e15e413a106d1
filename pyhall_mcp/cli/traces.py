"""``pyhall traces``: record MCP sessions through a stdio relay, replay them as tests.

``record`` has no --json: its stdout is the MCP protocol of the session it relays.
"""

from __future__ import annotations

import argparse
import sys

from ._common import (
    EXIT_NO,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    add_json_arg,
    emit,
    number_in,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "traces",
        help="record MCP sessions and replay them as regression tests",
        description="Golden traces of what MCP clients see on the wire (format: traces/README.md).",
    )
    sub = parser.add_subparsers(dest="traces_command", metavar="SUBCOMMAND")

    rec = sub.add_parser(
        "record",
        help="relay stdio to a server command and write the session to OUT",
        description="A transparent stdio relay: an MCP client launches this in place of the "
        "server (e.g. in a Claude Desktop entry). Every line passes through unchanged and is "
        "written to OUT as a frame; stderr passes through; the exit code is the server's.",
        epilog="example: pyhall traces record session.jsonl -- pyhall-mcp --env dev",
    )
    rec.add_argument("out", metavar="OUT.jsonl", help="the trace file to write")
    rec.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")
    rec.set_defaults(func=run_record)

    rep = sub.add_parser(
        "replay",
        help="replay traces against a fresh gateway and diff what it says",
        description="Start `python -m pyhall_mcp` with each trace's launch settings on a "
        "temporary copy of the hall and a temporary state directory, send the client frames, "
        "and compare the server frames after masking what varies between runs. "
        "Exit 1 on any difference.",
    )
    rep.add_argument("files", nargs="+", metavar="FILE", help="trace files or directories")
    rep.add_argument(
        "--hall", metavar="DIR", default=None, help="hall to copy (default: the trace's own)"
    )
    rep.add_argument("--update", action="store_true", help="re-record each file from the live run")
    rep.add_argument(
        "--timeout",
        type=number_in(0.1, kind=float),
        default=None,
        metavar="S",
        help="longest wait for one server frame (default: 20)",
    )
    add_json_arg(rep)
    rep.set_defaults(func=run_replay)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def run_record(args: argparse.Namespace) -> int:
    from ..traces import record

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CommandFailed("name the server command after --", exit_code=EXIT_USAGE)
    return record(args.out, command)


def run_replay(args: argparse.Namespace) -> int:
    from ..traces import DEFAULT_TIMEOUT_S, iter_trace_files, replay

    files = list(iter_trace_files(args.files))
    if not files:
        raise CommandFailed("no trace files found", exit_code=EXIT_USAGE)
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT_S
    results = []
    for path in files:
        result = replay(path, hall=args.hall, update=args.update, timeout_s=timeout)
        results.append(result)
        if not args.json:
            sys.stdout.write(result.report() + "\n")
            sys.stdout.flush()
    ok = all(r.ok or r.updated for r in results)
    if args.json:
        emit(args, {"ok": ok, "results": [r.as_dict() for r in results]})
    return EXIT_OK if ok else EXIT_NO
