"""Driving a real ``pyhall-mcp`` subprocess through the MCP SDK client."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigError

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
    """An SDK ``Client`` connected to ``python -m pyhall_mcp --hall HALL ARGS``.

    A gateway that stops before answering is a ``ConfigError`` pointing at its own
    message on stderr (commands check the launch first with :func:`check_launch`, so
    this is the rare case of a hall that changed in between, or an audit log that
    cannot open).
    """
    from mcp import Client, MCPError, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable, args=gateway_argv(hall, args), env=gateway_env(env)
    )
    mode = "legacy" if era == "legacy" else "auto"
    connected = False
    try:
        async with Client(params, mode=mode, **client_kwargs) as client:
            connected = True
            yield client
    except (MCPError, ExceptionGroup) as exc:
        if connected:
            raise  # the caller's own error, from a gateway that did answer
        if isinstance(exc, ExceptionGroup) and not exc.subgroup((MCPError, OSError)):
            raise
        raise ConfigError(
            "the gateway stopped before it answered (its reason is on stderr above)",
            fix="run `pyhall validate` and `pyhall-mcp --check` on the same hall",
        ) from None


def check_launch(hall: Path, args: Sequence[str] = ()) -> None:
    """Raise what would stop ``pyhall-mcp --hall HALL ARGS`` from starting (this
    process's PYHALL_* settings are the ones the child inherits)."""
    from ..gateway import check_launch as gateway_check

    gateway_check(["--hall", str(hall), *args])


def result_payload(result: Any) -> dict[str, Any]:
    """A CallToolResult as plain JSON for --json output."""
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")
