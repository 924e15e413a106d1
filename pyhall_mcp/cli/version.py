"""``pyhall version``."""

from __future__ import annotations

import argparse
import platform

from ._common import add_json_arg, emit


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "version", help="print versions of pyhall-mcp, WCP and the MCP SDK"
    )
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__, __wcp_version__

    try:
        sdk = version("mcp")
    except PackageNotFoundError:  # pragma: no cover
        sdk = "not installed"
    data = {
        "pyhall_mcp": __version__,
        "wcp": __wcp_version__,
        "mcp_sdk": sdk,
        "python": platform.python_version(),
    }
    emit(
        args,
        data,
        f"pyhall-mcp {__version__} (WCP {__wcp_version__}, mcp {sdk}, Python {data['python']})",
    )
    return 0
