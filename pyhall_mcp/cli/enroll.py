"""``pyhall enroll``: validate a worker, then add it to a hall."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ._common import EXIT_CONFIG, EXIT_NO, CommandFailed, add_hall_arg, add_json_arg, emit, hall_dir

_RECORD_FILES = ("worker.yaml", "worker.yml", "registry_record.json")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "enroll", help="validate a worker record or package and add it to the hall"
    )
    parser.add_argument("source", metavar="RECORD_OR_DIR")
    parser.add_argument("--replace", action="store_true", help="replace an existing worker")
    add_hall_arg(parser)
    add_json_arg(parser)
    parser.set_defaults(func=run)


def _refuse_escapes(source: Path) -> None:
    """No symlink and no special file may come along: nothing may point out of the hall."""
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise CommandFailed(
                    f"{path}: symlinks are not enrolled (they could point outside the hall)",
                    EXIT_NO,
                )
            if not (path.is_dir() or path.is_file()):
                raise CommandFailed(f"{path}: not a regular file", EXIT_NO)


def run(args: argparse.Namespace) -> int:
    from .._yaml import load_document
    from ..registry import Registry

    source = Path(args.source).resolve()
    hall = hall_dir(args)
    workers = hall / "workers"
    if not workers.is_dir():
        raise CommandFailed(f"{workers}: not a hall's workers directory", EXIT_CONFIG)
    if source.is_dir():
        record_file = _record_file(source)
        if record_file is None:
            raise CommandFailed(f"{source}: no worker.yaml or registry_record.json", EXIT_NO)
        _refuse_escapes(source)
        name = source.name
    elif source.is_file():
        record_file, name = source, None
    else:
        raise CommandFailed(f"{source}: no such file or directory", EXIT_NO)
    record = Registry().enroll(
        load_document(record_file), source=str(record_file), base_dir=record_file.parent
    )
    name = name or record.worker_id.split(".")[-1]
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise CommandFailed(f"{name!r} is not a safe directory name", EXIT_NO)
    target = workers / name
    if target.resolve().parent != workers.resolve():
        raise CommandFailed(f"{target}: would land outside {workers}", EXIT_NO)
    if target.exists() and not args.replace:
        raise CommandFailed(f"{target} exists: pass --replace to replace that worker", EXIT_NO)
    staging = Path(tempfile.mkdtemp(prefix=".enroll-", dir=workers))
    try:
        staged = staging / name
        if source.is_dir():
            shutil.copytree(
                source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git")
            )
        else:
            staged.mkdir()
            shutil.copy2(
                source,
                staged / ("registry_record.json" if source.suffix == ".json" else "worker.yaml"),
            )
        try:
            _check_fits(workers, staged, name)
        except ConfigError as exc:  # name the user's file, not the staging copy
            copy = str(staged if source.is_dir() else _record_file(staged))
            original = str(source)
            file = exc.file.replace(copy, original, 1) if exc.file else exc.file
            raise type(exc)(exc.message, file=file, location=exc.location, fix=exc.fix) from None
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    emit(
        args,
        {
            "enrolled": record.worker_id,
            "directory": str(target),
            "tool": record.tool.name if record.tool else None,
        },
        f"enrolled {record.worker_id} into {target}\nnext: sign it (pyhall attest sign "
        f"{target} --key KEY) if the hall requires attestation, then `pyhall validate`.",
    )
    return 0


def _record_file(directory: Path) -> Path | None:
    return next((directory / n for n in _RECORD_FILES if (directory / n).is_file()), None)


def _check_fits(workers: Path, staged: Path, name: str) -> None:
    """The hall's registry must still load cleanly with the new worker in place."""
    from .._yaml import load_document
    from ..registry import Registry
    from ..runners import build_runner

    registry = Registry()
    for child in sorted(workers.iterdir()):
        if child.is_dir() and not child.name.startswith(".") and child.name != name:
            existing = _record_file(child)
            if existing is not None:
                with contextlib.suppress(ConfigError):  # already broken: validate says so
                    registry.enroll(load_document(existing), source=str(existing))
    record_file = _record_file(staged)
    assert record_file is not None
    record = registry.enroll(load_document(record_file), source=str(record_file), base_dir=staged)
    if record.runner is not None:
        build_runner(record.runner, staged, source=str(record_file))
