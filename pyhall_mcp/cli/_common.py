"""Helpers shared by every command: --hall, --json, output and exit codes."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..layout import HallLayout

EXIT_OK = 0
EXIT_NO = 1  # the answer is no: denied, invalid, does not verify
EXIT_USAGE = 2
EXIT_CONFIG = 3  # the hall or a file it names is invalid or missing
EXIT_INTERNAL = 4

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_NO: "the answer is no: a denial, a failed check, a record that does not verify",
    EXIT_USAGE: "usage error: unknown command or bad arguments",
    EXIT_CONFIG: "configuration error: the hall or a file it names is invalid (file and fix named)",
    EXIT_INTERNAL: "internal error",
}


class CommandFailed(Exception):
    """Raise from a command to stop with a message and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_NO, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = details


def number_in(low: float, high: float | None = None, kind: type = int) -> Any:
    """An argparse type: a number of ``kind`` with ``low <= value (<= high)``."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {text}")
        return value

    return parse


def add_hall_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hall",
        metavar="DIR",
        default=None,
        help="hall directory (default: $PYHALL_HALL, else the bundled demo hall)",
    )


def add_state_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the hall's state directory (default: $PYHALL_STATE_DIR, else DIR/.pyhall)",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def hall_dir(args: argparse.Namespace) -> Path:
    """The hall directory --hall names (or the default); ``ConfigError`` if there is none."""
    from ..layout import hall_dir_from, require_hall_dir

    return require_hall_dir(hall_dir_from(getattr(args, "hall", None)).resolve())


def hall_layout(args: argparse.Namespace, *, writes: bool = False) -> HallLayout:
    """Where the hall --hall names keeps things (and ``--state-dir``, where a command
    has it); ``ConfigError`` unless both directories are usable (the state directory
    writable when the command ``writes``)."""
    from ..layout import HallLayout

    layout = HallLayout.for_hall(hall_dir(args), getattr(args, "state_dir", None))
    layout.check(writes=writes)
    return layout


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print ``data`` as JSON with --json, else ``text`` (or a readable rendering)."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write((text if text is not None else _render(data)) + "\n")
    sys.stdout.flush()


def emit_error(args: argparse.Namespace, message: str, *, code: int, details: Any = None) -> None:
    if getattr(args, "json", False):
        payload = {"ok": False, "exit_code": code, "error": message}
        if details is not None:
            payload["details"] = details
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    sys.stderr.write(f"pyhall: error: {message}\n")


def _render(data: Any, indent: int = 0) -> str:
    pad = "  " * indent
    if isinstance(data, dict):
        lines = []
        for key, value in data.items():
            if isinstance(value, (dict, list)) and value:
                lines.append(f"{pad}{key}:")
                lines.append(_render(value, indent + 1))
            else:
                lines.append(f"{pad}{key}: {value}")
        return "\n".join(lines)
    if isinstance(data, list):
        return "\n".join(
            f"{pad}- {item}" if not isinstance(item, (dict, list)) else _render(item, indent)
            for item in data
        )
    return f"{pad}{data}"


def load_hall(
    args: argparse.Namespace, overrides: dict[str, Any] | None = None, *, inspect_only: bool = False
) -> Any:
    """The hall named by --hall, with the operator's PYHALL_* settings applied."""
    from ..hall import Hall, overrides_from_environ

    merged = overrides_from_environ()
    for key, value in (overrides or {}).items():
        if key == "floors":
            merged["floors"] = {**merged.get("floors", {}), **value}
        else:
            merged[key] = value
    state_dir = getattr(args, "state_dir", None)
    root = hall_dir(args)
    return Hall.load(root, overrides=merged, state_dir=state_dir, inspect_only=inspect_only)
