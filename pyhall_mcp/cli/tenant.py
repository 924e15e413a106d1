"""``pyhall tenant keygen|issue|verify``: signatory tenant credentials (spec section 5).

An issuer key signs a credential binding a tenant id until an expiry; the
hall trusts issuers listed in ``keys/trusted.yaml`` with purpose
``credentials``. The operator passes the credential at launch; the model never
sees it.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from ._common import (
    EXIT_NO,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    add_hall_arg,
    add_json_arg,
    emit,
    hall_dir,
)

__all__ = ["parse_ttl", "register"]

_TTL = re.compile(r"^\s*(\d{1,9})\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_TTL = 5 * 366 * 86400  # a credential for more than five years is a mistake


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tenant", help="issue and verify signatory tenant credentials")
    sub = parser.add_subparsers(dest="tenant_command", metavar="SUBCOMMAND", required=True)

    keygen = sub.add_parser(
        "keygen",
        help="create a credential issuer key (0600) and print its keys/trusted.yaml entry",
    )
    keygen.add_argument("out", metavar="OUT", help="where to write the private key (PEM)")
    add_json_arg(keygen)
    keygen.set_defaults(func=run_keygen)

    issue = sub.add_parser("issue", help="issue a credential for TENANT_ID and print it")
    issue.add_argument("tenant_id", metavar="TENANT_ID")
    issue.add_argument("--key", required=True, metavar="KEYFILE", help="issuer key (Ed25519 PEM)")
    issue.add_argument(
        "--ttl", default="30d", help="validity: N followed by s, m, h, d or w (default: 30d)"
    )
    add_json_arg(issue)
    issue.set_defaults(func=run_issue)

    verify = sub.add_parser(
        "verify", help="check a credential against the hall's trusted issuers; exit 1 if invalid"
    )
    verify.add_argument("token", metavar="TOKEN", help="the credential, or - to read it from stdin")
    verify.add_argument("--tenant", required=True, metavar="TENANT_ID")
    add_hall_arg(verify)
    add_json_arg(verify)
    verify.set_defaults(func=run_verify)


def parse_ttl(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` or plain seconds, as seconds."""
    match = _TTL.match(text)
    if not match:
        raise CommandFailed(
            f"invalid --ttl {text!r}: use a number followed by s, m, h, d or w (e.g. 30d)",
            EXIT_USAGE,
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not 0 < seconds <= _MAX_TTL:
        raise CommandFailed("--ttl must be positive and at most five years", EXIT_USAGE)
    return seconds


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def run_keygen(args: argparse.Namespace) -> int:
    import yaml

    from ..signing import SigningKey

    key = SigningKey.generate()
    key.save(Path(args.out))
    entry = key.trusted(["credentials"], note="tenant credential issuer").model_dump(
        exclude_none=True, exclude_defaults=True
    )
    snippet = yaml.safe_dump({"keys": [entry]}, sort_keys=False)
    text = (
        f"wrote issuer key {key.key_id} to {args.out} (mode 0600; keep it private)\n"
        "add this entry to the hall's keys/trusted.yaml:\n\n" + snippet.rstrip()
    )
    emit(args, {"key_file": str(args.out), "key_id": key.key_id, "trusted_key": entry}, text)
    return EXIT_OK


def run_issue(args: argparse.Namespace) -> int:
    from ..credentials import CredentialError, issue_credential, verify_credential
    from ..errors import ConfigError
    from ..signing import SigningKey

    ttl = parse_ttl(args.ttl)
    try:
        key = SigningKey.load(Path(args.key))
    except ConfigError as exc:  # the general hint names the wrong kind of key
        fix = "create an issuer key with `pyhall tenant keygen`"
        raise ConfigError(exc.message, file=exc.file, location=exc.location, fix=fix) from None
    try:
        token = issue_credential(key, args.tenant_id, ttl_seconds=ttl)
    except CredentialError as exc:
        raise CommandFailed(str(exc), EXIT_USAGE) from None
    credential = verify_credential(
        token, tenant_id=args.tenant_id, issuers={key.key_id: key.public_key_b64}
    )
    data = {
        "token": token,
        "tenant_id": credential.tenant_id,
        "key_id": credential.key_id,
        "issued_at": _iso(credential.issued_at),
        "expires_at": _iso(credential.expires_at),
    }
    emit(args, data, token)
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    from ..credentials import CredentialError, verify_credential
    from ..layout import HallLayout
    from ..signing import Keyring

    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    hall = hall_dir(args)
    now = datetime.now(UTC)
    ring = Keyring.load(HallLayout.for_hall(hall).trusted_keys)
    issuers = {
        k.key_id: k.public_key for k in ring if "credentials" in k.purposes and k.valid_at(now)
    }
    try:
        credential = verify_credential(token, tenant_id=args.tenant, issuers=issuers)
    except CredentialError as exc:
        raise CommandFailed(
            f"credential does not verify: {exc}",
            EXIT_NO,
            details={"valid": False, "tenant_id": args.tenant, "reason": str(exc)},
        ) from None
    data = {
        "valid": True,
        "tenant_id": credential.tenant_id,
        "key_id": credential.key_id,
        "issued_at": _iso(credential.issued_at),
        "expires_at": _iso(credential.expires_at),
    }
    emit(
        args,
        data,
        f"valid: tenant {credential.tenant_id}, issued by {credential.key_id}, "
        f"expires {data['expires_at']}",
    )
    return EXIT_OK
