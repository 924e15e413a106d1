"""``pyhall config``: print a ready ``mcpServers`` entry for an MCP client."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from ._common import add_hall_arg, add_json_arg, emit, hall_dir


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "config",
        help="print an mcpServers entry for Claude Desktop or Cursor",
        description="Print the JSON to paste into Claude Desktop's claude_desktop_config.json "
        "or Cursor's .cursor/mcp.json.",
    )
    parser.add_argument("client", choices=["claude-desktop", "cursor"])
    parser.add_argument("--name", default="pyhall", help="server name in the client")
    parser.add_argument("--env", dest="hall_env", choices=["dev", "stage", "prod", "edge"])
    parser.add_argument("--tenant", metavar="ID")
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    command = shutil.which("pyhall-mcp")
    entry: dict[str, object]
    if command:
        entry = {"command": command, "args": ["--hall", str(hall_dir(args))]}
    else:  # not on PATH: run the module with this interpreter
        entry = {
            "command": sys.executable,
            "args": ["-m", "pyhall_mcp", "--hall", str(hall_dir(args))],
        }
    env = {}
    if args.hall_env:
        env["PYHALL_ENV"] = args.hall_env
    if args.tenant:
        env["PYHALL_TENANT"] = args.tenant
    if env:
        entry["env"] = env
    config = {"mcpServers": {args.name: entry}}
    where = (
        "Claude Desktop: Settings > Developer > Edit Config (claude_desktop_config.json)"
        if args.client == "claude-desktop"
        else "Cursor: .cursor/mcp.json in your project or ~/.cursor/mcp.json"
    )
    sys.stderr.write(f"# paste into {where}\n")
    emit(args, config, json.dumps(config, indent=2))
    return 0
