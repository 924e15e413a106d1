"""Hasher, a subprocess worker: ``{text, algorithm}`` -> ``{"algorithm", "digest"}``.

Protocol: one JSON document ``{"arguments": ..., "context": ...}`` on stdin, one
line ``{"result": {...}}`` or ``{"error": "..."}`` on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

ALGORITHMS = ("sha256", "sha512")


def digest(arguments: dict[str, Any]) -> dict[str, str]:
    text = arguments.get("text")
    algorithm = arguments.get("algorithm", "sha256")
    if not isinstance(text, str):
        raise ValueError("text must be a string")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    return {"algorithm": algorithm, "digest": hashlib.new(algorithm, text.encode()).hexdigest()}


def main() -> None:
    request = json.load(sys.stdin)
    try:
        reply: dict[str, Any] = {"result": digest(request["arguments"])}
    except ValueError as exc:
        reply = {"error": str(exc)}
    sys.stdout.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
