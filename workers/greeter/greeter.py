"""Greeter: the smallest worker. ``{name}`` -> ``{"greeting": "Hello, <name>!"}``."""

from __future__ import annotations

from typing import Any

from pyhall_mcp.errors import WorkerError


async def run(arguments: dict[str, Any], context: Any) -> dict[str, str]:
    name = arguments.get("name")
    if not isinstance(name, str) or not name.strip():
        raise WorkerError("name must be a non-empty string")
    return {"greeting": f"Hello, {name}!"}
