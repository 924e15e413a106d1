"""``pyhall init``: a new hall from the demo, with its own fresh keys."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ._common import EXIT_NO, CommandFailed, add_json_arg, emit


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "init",
        help="create a new hall from the demo, with fresh keys",
        description="Copy the demo hall (hall.yaml, rules, policies, workers, workspace) into "
        "DIR, create the hall's receipt-signing key and a new attestation key, and re-sign "
        "the copied workers with it. Refuses to overwrite anything.",
    )
    parser.add_argument("directory", metavar="DIR")
    parser.add_argument(
        "--from",
        dest="source",
        metavar="HALL",
        help="hall to copy (default: the bundled demo hall)",
    )
    add_json_arg(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..layout import bundled_demo_hall

    target = Path(args.directory).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise ConfigError("exists and is not a directory", file=str(target), fix="pick a new path")
    if target.exists() and any(target.iterdir()):
        raise CommandFailed(f"{target} exists and is not empty; pick a new directory", EXIT_NO)
    source = Path(args.source).expanduser().resolve() if args.source else bundled_demo_hall()
    _check_source(source)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        return _init(args, source, target)
    except BaseException:
        # leave nothing behind, so that fixing the cause and running it again works
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        raise


def _check_source(source: Path) -> None:
    """The hall to copy must be one that loads (checked with a throwaway state directory,
    so the source is not written to)."""
    from ..hall import Hall

    if not (source / "hall.yaml").is_file():
        raise ConfigError(
            "not a hall (no hall.yaml)", file=str(source), fix="--from must name a hall directory"
        )
    with tempfile.TemporaryDirectory(prefix="pyhall-init-") as state:
        Hall.load(source, state_dir=state)


def _init(args: argparse.Namespace, source: Path, target: Path) -> int:
    from ..attestation import find_packages, sign_package, trust_attestation_key, worker_namespace
    from ..audit import ReceiptLog
    from ..layout import HallLayout
    from ..registry import Registry
    from ..signing import SigningKey
    from .demo import copy_hall

    copy_hall(source, target)
    layout = HallLayout.for_hall(target)

    # A hall trusts its own attestation key, not the demo's.
    trusted = layout.trusted_keys
    if trusted.exists():
        trusted.unlink()
    key = SigningKey.generate()
    key_path = layout.attestation_key
    key.save(key_path)
    registry = Registry.load(layout.workers_dir)
    namespaces = sorted({ns for r in registry.records if (ns := worker_namespace(r.worker_id))})
    trust_attestation_key(
        trusted, key, namespaces, note=f"created by pyhall init; private key in {key_path}"
    )
    packages = find_packages(layout.workers_dir)
    for package in packages:
        sign_package(package, key, build_source="pyhall init")

    log = ReceiptLog.open(layout)  # creates the receipt-signing key and its keyring
    receipt_key = log.key_id
    log.close()
    (target / ".gitignore").write_text(".pyhall/\n")
    data = {
        "hall": str(target),
        "attestation_key_id": key.key_id,
        "attestation_key_file": str(key_path),
        "receipt_key_id": receipt_key,
        "signed_workers": [p.name for p in packages],
        "namespaces": namespaces,
    }
    emit(
        args,
        data,
        "\n".join(
            [
                f"created hall {target}",
                f"  attestation key {key.key_id} (private key {key_path}, 0600; trusted in "
                f"{trusted.relative_to(target)} for {', '.join(namespaces)})",
                f"  re-signed {len(packages)} workers; receipt-signing key in {layout.signing_key}",
                f"next: pyhall validate --hall {target} && pyhall demo --hall {target}",
            ]
        ),
    )
    return 0
