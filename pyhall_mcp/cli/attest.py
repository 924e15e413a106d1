"""``pyhall attest``: attestation keys, signing and verification of worker packages."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ._common import (
    EXIT_CONFIG,
    EXIT_NO,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    add_hall_arg,
    add_json_arg,
    emit,
    hall_dir,
)

__all__ = ["register"]

_NAMESPACE = re.compile(r"^(?:org|x)\.[a-z0-9-]+$")


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser(
        "attest", help="create attestation keys, sign and verify worker packages"
    )
    group.set_defaults(func=lambda args: _usage(group))
    actions = group.add_subparsers(dest="attest_command", metavar="ACTION")

    keygen = actions.add_parser("keygen", help="create an Ed25519 attestation key")
    keygen.add_argument("out", metavar="OUT", help="where to write the private key (PEM, 0600)")
    keygen.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="worker-id namespace the key may sign for (org.<name> or x.<name>); repeatable",
    )
    add_json_arg(keygen)
    keygen.set_defaults(func=_keygen)

    sign = actions.add_parser("sign", help="sign one worker package")
    sign.add_argument("worker_dir", metavar="WORKER_DIR")
    sign.add_argument("--key", required=True, metavar="KEYFILE", help="private key (PEM)")
    _add_build_source(sign)
    add_json_arg(sign)
    sign.set_defaults(func=_sign)

    verify = actions.add_parser(
        "verify", help="verify one worker package against the hall's keyring and deny list"
    )
    verify.add_argument("worker_dir", metavar="WORKER_DIR")
    add_hall_arg(verify)
    add_json_arg(verify)
    verify.set_defaults(func=_verify)

    sign_all = actions.add_parser("sign-all", help="re-sign every worker package of a hall")
    add_hall_arg(sign_all)
    which = sign_all.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", metavar="KEYFILE", help="sign with this private key (PEM)")
    which.add_argument(
        "--new-key",
        action="store_true",
        help="sign with a fresh key, trust it in keys/trusted.yaml, then discard it",
    )
    sign_all.add_argument(
        "--save-key", metavar="PATH", help="with --new-key: keep the private key here (0600)"
    )
    _add_build_source(sign_all)
    add_json_arg(sign_all)
    sign_all.set_defaults(func=_sign_all)


def _add_build_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--build-source",
        default="local",
        metavar="TEXT",
        help="where the package was built, recorded in the statement (default: local)",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def _package_dir(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_dir():
        raise CommandFailed(f"{text}: no such directory", EXIT_USAGE)
    return path


def _keygen(args: argparse.Namespace) -> int:
    import yaml

    from ..signing import SigningKey

    bad = [ns for ns in args.namespace if not _NAMESPACE.match(ns)]
    if bad:
        raise CommandFailed(
            f"not a namespace: {', '.join(bad)} (expected org.<name> or x.<name>)", EXIT_USAGE
        )
    key = SigningKey.generate()
    key.save(args.out)
    entry = key.trusted(["attestation"], namespaces=sorted(set(args.namespace)))
    entry_data = entry.model_dump(exclude_none=True, exclude_defaults=True)
    text = [
        f"wrote private key {args.out} (0600); keep it out of version control",
        "add this entry under `keys:` in keys/trusted.yaml:",
        yaml.safe_dump([entry_data], sort_keys=False).rstrip(),
    ]
    if not args.namespace:
        text.append("note: the key can sign no worker until the entry lists namespaces")
    emit(
        args,
        {"ok": True, "key_file": str(args.out), "key_id": key.key_id, "trusted_key": entry_data},
        "\n".join(text),
    )
    return EXIT_OK


def _signed(worker_dir: Path, key: Any, build_source: str) -> str:
    """Sign one package; return its package digest. A refusal is a configuration error."""
    import json

    from ..attestation import sign_package
    from ..errors import AttestationError
    from ..signing import b64decode

    try:
        envelope = sign_package(worker_dir, key, build_source=build_source)
    except AttestationError as exc:
        raise CommandFailed(
            f"{worker_dir}: {exc.code}: {exc.message}", EXIT_CONFIG, details={"code": exc.code}
        ) from None
    statement = json.loads(b64decode(envelope["payload"]))
    return statement["subject"][0]["digest"]["sha256"]


def _verified(worker_dir: Path, keyring: Any, deny_list: frozenset[str]) -> dict[str, Any]:
    """One package's verification result as a JSON-ready row."""
    from ..attestation import verify_package
    from ..errors import AttestationError

    try:
        package = verify_package(worker_dir, keyring=keyring, deny_list=deny_list)
    except AttestationError as exc:
        return {
            "worker_dir": str(worker_dir),
            "valid": False,
            "code": exc.code,
            "message": exc.message,
        }
    predicate = package.statement["predicate"]
    return {
        "worker_dir": str(worker_dir),
        "valid": True,
        "worker_id": package.worker_id,
        "version": predicate["version"],
        "key_id": package.key_id,
        "digest": package.digest,
        "built_at": predicate.get("built_at"),
        "build_source": predicate.get("build_source"),
    }


def _hall_trust(args: argparse.Namespace) -> tuple[Any, Any, frozenset[str]]:
    """(layout, keyring, deny list) of the hall named by --hall."""
    from ..attestation import load_deny_list
    from ..layout import HallLayout
    from ..signing import Keyring

    layout = HallLayout.for_hall(hall_dir(args))
    return (
        layout,
        Keyring.load(layout.trusted_keys),
        load_deny_list(layout.attestation_deny_list),
    )


def _sign(args: argparse.Namespace) -> int:
    from ..attestation import package_identity
    from ..signing import SigningKey

    worker_dir = _package_dir(args.worker_dir)
    key = SigningKey.load(args.key)
    worker_id = package_identity(worker_dir)["worker_id"]
    digest = _signed(worker_dir, key, args.build_source)
    data = {
        "ok": True,
        "worker_dir": str(worker_dir),
        "worker_id": worker_id,
        "key_id": key.key_id,
        "digest": digest,
    }
    emit(args, data, f"signed {worker_dir} ({worker_id}) with {key.key_id}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    worker_dir = _package_dir(args.worker_dir)
    layout, keyring, deny_list = _hall_trust(args)
    row = _verified(worker_dir, keyring, deny_list)
    data = {"ok": row["valid"], "hall": str(layout.root), **row}
    if row["valid"]:
        text = (
            f"valid: {row['worker_id']} {row['version']}, signed by {row['key_id']} "
            f"(built {row['built_at']}, {row['build_source']})"
        )
    else:
        text = f"{row['code']}: {row['message']}"
    emit(args, data, text)
    return EXIT_OK if row["valid"] else EXIT_NO


def _sign_all(args: argparse.Namespace) -> int:
    from ..attestation import (
        find_packages,
        package_identity,
        trust_attestation_key,
        worker_namespace,
    )
    from ..signing import SigningKey

    if args.save_key and not args.new_key:
        raise CommandFailed("--save-key only goes with --new-key", EXIT_USAGE)
    layout, _, _ = _hall_trust(args)
    packages = find_packages(layout.workers_dir)
    if not packages:
        raise CommandFailed(f"{layout.workers_dir}: no worker packages (worker.yaml)", EXIT_CONFIG)
    # Every record must be signable before anything is written.
    ids = {package: package_identity(package)["worker_id"] for package in packages}
    namespaces = sorted({ns for ns in map(worker_namespace, ids.values()) if ns})
    lines: list[str] = []
    data: dict[str, Any] = {"hall": str(layout.root), "namespaces": namespaces}
    if args.new_key:
        key = SigningKey.generate()
        if args.save_key:
            key.save(args.save_key)
        kept = f"private key saved to {args.save_key}" if args.save_key else "private key discarded"
        removed = trust_attestation_key(layout.trusted_keys, key, namespaces, note=kept)
        lines.append(f"generated {key.key_id}; {kept}")
        lines.append(
            f"{layout.trusted_keys}: trusted {key.key_id} for attestation in "
            f"{', '.join(namespaces)}"
            + (f"; removed {len(removed)} earlier sign-all key(s)" if removed else "")
        )
        data.update(
            new_key=True,
            private_key_kept=bool(args.save_key),
            key_file=args.save_key,
            trusted_keys=str(layout.trusted_keys),
            removed_key_ids=removed,
        )
    else:
        key = SigningKey.load(args.key)
        data.update(new_key=False, key_file=args.key)
    data["key_id"] = key.key_id

    for package in packages:
        _signed(package, key, args.build_source)
    _, keyring, deny_list = _hall_trust(args)
    rows = [_verified(package, keyring, deny_list) for package in packages]
    for package, row in zip(packages, rows, strict=True):
        state = "verifies" if row["valid"] else f"does NOT verify: {row['code']}: {row['message']}"
        lines.append(f"signed {package.name} ({ids[package]}): {state}")
    failed = [row for row in rows if not row["valid"]]
    if failed and not args.new_key:
        lines.append(
            f"{len(failed)} package(s) do not verify against {layout.trusted_keys}: "
            "trust the key there for their namespaces (see `pyhall attest keygen`)"
        )
    data.update(ok=not failed, workers=rows)
    emit(args, data, "\n".join(lines))
    return EXIT_NO if failed else EXIT_OK
