"""Driving a real ``pyhall-mcp`` subprocess through the MCP SDK client."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

#: Variables a gateway child may inherit: the operator's PYHALL_* settings and basics.
_PASS_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")


def gateway_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASS_THROUGH or k.startswith("PYHALL_")}
    env.update(extra or {})
    return env


def gateway_argv(hall: Path, args: Sequence[str] = ()) -> list[str]:
    return ["-m", "pyhall_mcp", "--hall", str(hall), *args]


@asynccontextmanager
async def gateway_client(
    hall: Path,
    args: Sequence[str] = (),
    *,
    env: dict[str, str] | None = None,
    era: str = "legacy",
    **client_kwargs: Any,
) -> AsyncIterator[Any]:
    """An SDK ``Client`` connected to ``python -m pyhall_mcp --hall HALL ARGS``."""
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=gateway_argv(hall, args), env=gateway_env(env)
    )
    mode = "legacy" if era == "legacy" else "auto"
    async with Client(params, mode=mode, **client_kwargs) as client:
        yield client


def result_payload(result: Any) -> dict[str, Any]:
    """A CallToolResult as plain JSON for --json output."""
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")
