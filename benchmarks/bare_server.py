"""The baseline of benchmarks/gateway.py: greet_worker on a bare MCP SDK low-level server.

    python benchmarks/bare_server.py                  # an MCP stdio server, both protocol eras
    python benchmarks/bare_server.py --pyhall-stdio   # the same on pyhall-mcp's stdio transport

Nothing but what the SDK needs: no argument validation, no governance, no receipts.
``--pyhall-stdio`` swaps the SDK's ``stdio_server`` for the transport pyhall-mcp serves
pipes with (``pyhall_mcp._stdio``), to tell the transport's share from governance's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
from mcp import MCPError
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

sys.path.insert(0, str(Path(__file__).resolve().parent))

import greet_worker

_TOOL = types.Tool(
    name=greet_worker.NAME,
    description=greet_worker.DESCRIPTION,
    input_schema=greet_worker.INPUT_SCHEMA,
    output_schema=greet_worker.OUTPUT_SCHEMA,
)


async def _list_tools(
    ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[_TOOL])


async def _call_tool(
    ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    if params.name != _TOOL.name:
        raise MCPError(-32602, f"Unknown tool: {params.name}")
    value = await greet_worker.run(dict(params.arguments or {}), None)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(value))],
        structured_content=value,
    )


async def _main() -> None:
    server = Server("bare", on_list_tools=_list_tools, on_call_tool=_call_tool)
    transport = stdio_server
    if "--pyhall-stdio" in sys.argv[1:]:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from pyhall_mcp._stdio import stdio_streams as transport
    async with transport() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(_main)
