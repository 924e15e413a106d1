"""The trivial worker both sides of benchmarks/gateway.py serve: one tool, ``greet``.

The bare SDK server (bare_server.py) imports it; the governed hall copies this
file into its worker directory and runs it as a Python-callable worker.
"""

from __future__ import annotations

from typing import Any

NAME = "greet"
DESCRIPTION = "Return a friendly greeting for a name."
INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100}},
    "required": ["name"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"greeting": {"type": "string"}},
    "required": ["greeting"],
}


async def run(arguments: dict[str, Any], context: Any) -> dict[str, str]:
    return {"greeting": f"Hello, {arguments['name']}!"}
