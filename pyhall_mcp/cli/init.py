"""``pyhall init``: a new hall from the demo, with its own fresh keys."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    from ..attestation import find_packages, sign_package, trust_attestation_key, worker_namespace
    from ..audit import ReceiptLog
    from ..layout import HallLayout, bundled_demo_hall
    from ..registry import Registry
    from ..signing import SigningKey
    from .demo import copy_hall

    target = Path(args.directory).expanduser().resolve()
    if target.exists() and any(target.iterdir()):
        raise CommandFailed(f"{target} exists and is not empty; pick a new directory", EXIT_NO)
    source = Path(args.source).expanduser().resolve() if args.source else bundled_demo_hall()
    target.mkdir(parents=True, exist_ok=True)
    copy_hall(source, target)
    layout = HallLayout.for_hall(target)

    # A hall trusts its own attestation key, not the demo's.
    trusted = layout.trusted_keys
    if trusted.exists():
        trusted.unlink()
    key = SigningKey.generate()
    key_path = layout.state_dir / "keys" / "attestation.key"
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
