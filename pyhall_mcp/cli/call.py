"""``pyhall call``: call one tool through a real gateway, as an MCP client would."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..hall import META_GOVERNANCE
from ._common import EXIT_NO, CommandFailed, add_hall_arg, add_json_arg, emit, hall_dir

_LAUNCH = ("env", "tenant", "tenant_risk", "qos", "data_label", "deny_mode")


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """Operator settings passed through to the gateway."""
    parser.add_argument("--env", choices=["dev", "stage", "prod", "edge"])
    parser.add_argument("--tenant", metavar="ID")
    parser.add_argument("--tenant-risk", choices=["low", "medium", "high"])
    parser.add_argument("--qos", choices=["P0", "P1", "P2", "P3"])
    parser.add_argument("--data-label", choices=["PUBLIC", "INTERNAL", "RESTRICTED"])
    parser.add_argument("--deny-mode", choices=["result", "jsonrpc"])
    parser.add_argument(
        "--floor",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a hall floor for this run",
    )
    parser.add_argument(
        "--era",
        choices=["legacy", "modern"],
        default="legacy",
        help="MCP protocol era to speak (default: legacy handshake)",
    )


def launch_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name in _LAUNCH:
        value = getattr(args, name, None)
        if value is not None:
            out += [f"--{name.replace('_', '-')}", value]
    for floor in getattr(args, "floor", []):
        out += ["--floor", floor]
    return out


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "call",
        help="call one tool through a real pyhall-mcp gateway",
        description="Start the gateway as a subprocess, call TOOL through the MCP client, "
        "print the result or the denial. Exit 0 when the worker ran (or a dry run would "
        "run it), 1 otherwise.",
    )
    parser.add_argument("tool")
    parser.add_argument("--args", default="{}", metavar="JSON", help="tool arguments as JSON")
    parser.add_argument("--dry-run", action="store_true", help="decide fully, execute nothing")
    parser.add_argument("--correlation-id", metavar="ID")
    add_launch_args(parser)
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise CommandFailed(f"--args is not JSON: {exc.msg}", exit_code=2) from None
    if not isinstance(arguments, dict):
        raise CommandFailed("--args must be a JSON object", exit_code=2)
    meta: dict[str, Any] = {}
    if args.dry_run:
        meta["dev.pyhall/dry_run"] = True
    if args.correlation_id:
        meta["dev.pyhall/correlation_id"] = args.correlation_id
    return anyio.run(_call, args, arguments, meta)


async def _call(args: argparse.Namespace, arguments: dict[str, Any], meta: dict[str, Any]) -> int:
    from mcp import MCPError

    from ._session import check_launch, gateway_client, result_payload

    hall, launch = hall_dir(args), launch_args(args)
    check_launch(hall, launch)
    async with gateway_client(hall, launch, era=args.era) as client:
        try:
            result = await client.call_tool(args.tool, arguments, meta=meta or None)
        except MCPError as exc:
            data = {
                "ok": False,
                "jsonrpc_error": {
                    "code": exc.error.code,
                    "message": exc.error.message,
                    "data": exc.error.data,
                },
            }
            emit(args, data, f"error {exc.error.code}: {exc.error.message}")
            return EXIT_NO
    payload = result_payload(result)
    if result.is_error:
        summary = result.structured_content or {}
        text = result.content[0].text if result.content else "error"
        if summary.get("dry_run") and summary.get("denied") is False:
            emit(args, payload, f"DRY RUN: {text}")  # the answer is yes; nothing ran
            return 0
        code = summary.get("deny_code")
        # A held call (a dry run's would be): the gateway told the operator how to decide it.
        governance = (result.meta or {}).get(META_GOVERNANCE) or {}
        held = (governance.get("deny_reason_if_denied") or {}).get("supervisor_required")
        verdict = "HELD" if held else "DENIED"
        emit(args, payload, f"{verdict + ' ' + code if code else 'ERROR'}: {text}")
        return EXIT_NO
    emit(args, payload, json.dumps(result.structured_content, indent=2))
    return 0
