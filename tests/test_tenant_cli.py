"""``pyhall tenant keygen|issue|verify``: credential expiry, forgery, wrong tenant."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pyhall_mcp.cli import main
from pyhall_mcp.cli.tenant import parse_ttl
from pyhall_mcp.credentials import issue_credential
from pyhall_mcp.signing import Keyring, SigningKey

CLI = [sys.executable, "-c", "import sys; from pyhall_mcp.cli import main; sys.exit(main())"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def issuer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A hall trusting a fresh issuer key created with `pyhall tenant keygen`."""
    hall, key = tmp_path / "hall", tmp_path / "issuer.key"
    code, out, _ = run(capsys, "tenant", "keygen", str(key), "--json")
    assert code == 0
    entry = json.loads(out)["trusted_key"]
    (hall / "keys").mkdir(parents=True)
    (hall / "keys" / "trusted.yaml").write_text(yaml.safe_dump({"keys": [entry]}))
    return hall, key


def test_keygen_writes_a_private_key_and_a_trusted_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.pem"
    code, out, _ = run(capsys, "tenant", "keygen", str(key))
    assert code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    loaded = SigningKey.load(key)
    snippet = out[out.index("keys:") :]
    (tmp_path / "trusted.yaml").write_text(snippet)
    ring = Keyring.load(tmp_path / "trusted.yaml")
    trusted = ring.get(loaded.key_id)
    assert trusted is not None and trusted.purposes == ["credentials"]
    assert "PRIVATE" not in out
    # Never overwrites a key.
    code, _, err = run(capsys, "tenant", "keygen", str(key))
    assert code == 3 and "already exists" in err


def test_issue_and_verify_in_a_subprocess(issuer: tuple[Path, Path]) -> None:
    hall, key = issuer
    issued = subprocess.run(
        [*CLI, "tenant", "issue", "acme", "--key", str(key), "--ttl", "2h", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert issued.returncode == 0, issued.stderr
    data = json.loads(issued.stdout)
    assert data["tenant_id"] == "acme" and data["key_id"] == SigningKey.load(key).key_id
    token = data["token"]

    ok = subprocess.run(
        [*CLI, "tenant", "verify", token, "--tenant", "acme", "--hall", str(hall)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0 and "valid: tenant acme" in ok.stdout

    # The token can come on stdin, out of the process list and shell history.
    piped = subprocess.run(
        [*CLI, "tenant", "verify", "-", "--tenant", "acme", "--hall", str(hall), "--json"],
        input=token + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0 and json.loads(piped.stdout)["valid"] is True

    wrong = subprocess.run(
        [*CLI, "tenant", "verify", token, "--tenant", "globex", "--hall", str(hall)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode == 1
    assert "issued to another tenant" in wrong.stderr and "Traceback" not in wrong.stderr


def test_plain_output_is_just_the_token(
    issuer: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    hall, key = issuer
    code, out, _ = run(capsys, "tenant", "issue", "acme", "--key", str(key))
    token = out.strip()
    assert code == 0 and token.count(".") == 1 and "\n" not in token
    assert run(capsys, "tenant", "verify", token, "--tenant", "acme", "--hall", str(hall))[0] == 0


def verify(
    capsys: pytest.CaptureFixture[str], hall: Path, token: str, tenant: str = "acme"
) -> dict:
    code, out, _ = run(
        capsys, "tenant", "verify", token, "--tenant", tenant, "--hall", str(hall), "--json"
    )
    data = json.loads(out)
    assert code == (0 if data.get("valid") else 1)
    return data


def test_expired_credential(issuer: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    hall, key = issuer
    old = issue_credential(
        SigningKey.load(key), "acme", ttl_seconds=60, now=int(time.time()) - 3600
    )
    data = verify(capsys, hall, old)
    assert data["ok"] is False and "expired" in data["error"]


def test_forged_credentials(issuer: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    hall, key = issuer
    token = issue_credential(SigningKey.load(key), "acme", ttl_seconds=3600)
    body, signature = token.split(".")

    # Rewrite the tenant in the payload, keep the signature.
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["tenant_id"] = "globex"
    forged_body = (
        base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
    )
    data = verify(capsys, hall, f"{forged_body}.{signature}", tenant="globex")
    assert "signature does not verify" in data["error"]

    # Flip one byte of the signature.
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert "signature does not verify" in verify(capsys, hall, f"{body}.{flipped}")["error"]

    # Signed by a key the hall does not trust.
    stranger = issue_credential(SigningKey.generate(), "acme", ttl_seconds=3600)
    assert "untrusted" in verify(capsys, hall, stranger)["error"]

    # Garbage.
    assert "malformed" in verify(capsys, hall, "not-a-token")["error"]


@pytest.mark.parametrize(
    "change",
    [
        {"purposes": ["attestation"]},
        {"revoked": True},
        {"not_after": "2001-01-01T00:00:00Z"},
    ],
)
def test_issuer_must_be_trusted_for_credentials_now(
    issuer: tuple[Path, Path], capsys: pytest.CaptureFixture[str], change: dict
) -> None:
    hall, key = issuer
    token = issue_credential(SigningKey.load(key), "acme", ttl_seconds=3600)
    assert verify(capsys, hall, token)["valid"] is True
    trusted = hall / "keys" / "trusted.yaml"
    doc = yaml.safe_load(trusted.read_text())
    doc["keys"][0].update(change)
    trusted.write_text(yaml.safe_dump(doc))
    assert "untrusted" in verify(capsys, hall, token)["error"]


def test_hall_without_trusted_keys_accepts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = issue_credential(SigningKey.generate(), "acme", ttl_seconds=3600)
    assert "untrusted" in verify(capsys, tmp_path, token)["error"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86400),
        ("12h", 43200),
        ("90m", 5400),
        ("45s", 45),
        ("2w", 1209600),
        ("600", 600),
    ],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("ttl", ["0", "-1d", "1y", "d", "99999w", "1.5h"])
def test_bad_ttl_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ttl: str
) -> None:
    key = tmp_path / "k.pem"
    SigningKey.generate().save(key)
    code, _, err = run(capsys, "tenant", "issue", "acme", "--key", str(key), f"--ttl={ttl}")
    assert code == 2 and "ttl" in err


def test_issue_refuses_bad_keys_and_blank_tenants(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.pem"
    SigningKey.generate().save(key)
    assert run(capsys, "tenant", "issue", "  ", "--key", str(key))[0] == 2
    os.chmod(key, 0o644)
    code, _, err = run(capsys, "tenant", "issue", "acme", "--key", str(key))
    assert code == 3 and "readable by other users" in err
    missing = run(capsys, "tenant", "issue", "acme", "--key", str(tmp_path / "none.pem"))
    assert missing[0] == 3
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    os.chmod(junk, 0o600)
    assert run(capsys, "tenant", "issue", "acme", "--key", str(junk))[0] == 3
