"""``pyhall``: the operator's command line.

Each command group is a module of this package with a ``register(commands)``
function that adds its parsers; a command is a function ``(args) -> int``.
Errors never show a traceback: configuration errors name the file, the place
and the fix.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..errors import ConfigError, IntegrityError, PyhallError
from ._common import (
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_NO,
    EXIT_USAGE,
    CommandFailed,
    emit_error,
)

__all__ = ["main"]

#: Command modules, in the order ``pyhall --help`` lists them.
_COMMAND_MODULES = (
    "init",
    "route",
    "call",
    "demo",
    "validate",
    "status",
    "enroll",
    "scaffold",
    "policy",
    "tenant",
    "attest",
    "audit",
    "approvals",
    "traces",
    "conformance",
    "catalog",
    "config",
    "completion",
    "version",
)


def _epilog() -> str:
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    return (
        f"exit codes:\n{rows}\n\nEvery command that acts on a hall takes --hall DIR "
        "(default: $PYHALL_HALL, else the bundled demo hall)."
    )


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Usage errors are raised, not exited on, so that --json can report them too."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pyhall",
        description="Manage and probe a pyhall-mcp hall: governed workers served over MCP.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pyhall {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue  # command group not built yet
        module.register(commands)
    _name_usage_parsers(parser)
    return parser


def _name_usage_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command's parser records itself, so that a usage error is reported
    with the usage of the command that was given, not the top level's."""
    parser.set_defaults(usage_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _name_usage_parsers(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # reported by the command's own parser, with its usage line
            args.usage_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exc:  # argparse: --help or --version
        return int(exc.code or 0)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        message = f"{exc.parser.prog}: error: {exc.message}"
        if "--json" in argv:
            payload = {"ok": False, "exit_code": EXIT_USAGE, "error": message}
            sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        sys.stderr.write(message + "\n")
        return EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except CommandFailed as exc:
        emit_error(args, exc.message, code=exc.exit_code, details=exc.details)
        return exc.exit_code
    except ConfigError as exc:
        emit_error(args, exc.describe(), code=EXIT_CONFIG, details=exc.as_dict())
        return EXIT_CONFIG
    except IntegrityError as exc:  # evidence that does not verify: the answer is no
        emit_error(args, str(exc), code=EXIT_NO)
        return EXIT_NO
    except PyhallError as exc:
        emit_error(args, str(exc), code=EXIT_INTERNAL)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the machine said no: a full disk, a missing directory, rights
        where = f"{exc.filename}: " if exc.filename else ""
        _last_words(args, f"{where}{exc.strerror or exc}", EXIT_CONFIG)
        return EXIT_CONFIG
    except Exception as exc:  # the last line of defence: say what, not how
        _last_words(args, f"internal error ({type(exc).__name__}: {exc})", EXIT_INTERNAL)
        return EXIT_INTERNAL


def _last_words(args: argparse.Namespace, message: str, code: int) -> None:
    """Report an error the command did not expect, even when stdout is gone."""
    try:
        emit_error(args, message, code=code)
    except (OSError, ValueError, AttributeError):  # stdout closed or full: stderr alone
        if sys.stderr is not None:
            sys.stderr.write(f"pyhall: error: {message}\n")


def entrypoint() -> None:  # pragma: no cover - console script shim
    sys.exit(main())
