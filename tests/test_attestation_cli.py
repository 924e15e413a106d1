"""``pyhall attest``: keygen, sign, verify as subprocesses; sign-all in process."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pyhall_mcp.attestation import MANIFEST_NAME, package_digest
from pyhall_mcp.cli import main
from pyhall_mcp.signing import Keyring, SigningKey

RECORD = {
    "worker_id": "org.demo.echo",
    "worker_species_id": "wrk.demo.echo",
    "version": "1.0.0",
    "capabilities": ["cap.demo.echo"],
    "tool": {
        "name": "echo",
        "title": "Echo",
        "description": "Echo the text back.",
        "input_schema": {"type": "object"},
        "output_schema": {"type": "object"},
        "annotations": {},
    },
    "runner": {"kind": "python", "entry": "worker:run"},
}


def pyhall(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "import sys; from pyhall_mcp.cli import main; sys.exit(main())",
    ]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def make_hall(root: Path, *worker_ids: str) -> Path:
    for worker_id in worker_ids:
        folder = root / "workers" / worker_id.rsplit(".", 1)[-1]
        folder.mkdir(parents=True)
        record = {**RECORD, "worker_id": worker_id}
        (folder / "worker.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
        (folder / "worker.py").write_text("def run(args):\n    return args\n")
    (root / "hall.yaml").write_text("env: dev\n")
    return root


def test_keygen_sign_verify_round_trip(tmp_path: Path) -> None:
    hall = make_hall(tmp_path / "hall", "org.demo.echo")
    worker = hall / "workers" / "echo"
    key_file = tmp_path / "attest.pem"

    made = pyhall("attest", "keygen", key_file, "--namespace", "org.demo", "--json")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    entry = out["trusted_key"]
    assert entry["purposes"] == ["attestation"] and entry["namespaces"] == ["org.demo"]
    assert entry["key_id"] == SigningKey.load(key_file).key_id
    assert "PRIVATE" not in made.stdout

    # Not trusted yet: the verify answer is no, with the code.
    signed = pyhall("attest", "sign", worker, "--key", key_file, "--json")
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["digest"] == package_digest(worker)
    refused = pyhall("attest", "verify", worker, "--hall", hall, "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["code"] == "ATTEST_SIG_INVALID"

    # Trusted: the entry keygen printed goes into keys/trusted.yaml as is.
    (hall / "keys").mkdir()
    (hall / "keys" / "trusted.yaml").write_text(yaml.safe_dump({"keys": [entry]}))
    valid = pyhall("attest", "verify", worker, "--hall", hall, "--json")
    assert valid.returncode == 0, valid.stdout + valid.stderr
    result = json.loads(valid.stdout)
    assert result["valid"] is True and result["worker_id"] == "org.demo.echo"
    assert result["key_id"] == entry["key_id"]

    # One byte changed: exit 1 and the code, in text mode too.
    (worker / "worker.py").write_text("def run(args):\n    return arg\n")
    tampered = pyhall("attest", "verify", worker, "--hall", hall)
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("ATTEST_HASH_MISMATCH")


def test_verify_missing_manifest_and_bad_arguments(tmp_path: Path) -> None:
    hall = make_hall(tmp_path / "hall", "org.demo.echo")
    missing = pyhall("attest", "verify", hall / "workers" / "echo", "--hall", hall, "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["code"] == "ATTEST_MANIFEST_MISSING"
    assert pyhall("attest", "verify", tmp_path / "nope", "--hall", hall).returncode == 2
    bad_ns = pyhall("attest", "keygen", tmp_path / "k.pem", "--namespace", "wrk.demo")
    assert bad_ns.returncode == 2
    assert not (tmp_path / "k.pem").exists()


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, Any]:
    code = main([*map(str, args), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_sign_all_with_a_new_key_keeps_no_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hall = make_hall(tmp_path / "hall", "org.demo.echo", "x.alice.shout")
    code, out = run_cli(capsys, "attest", "sign-all", "--hall", hall, "--new-key")
    assert code == 0, out
    assert out["namespaces"] == ["org.demo", "x.alice"]
    assert out["private_key_kept"] is False
    assert [row["valid"] for row in out["workers"]] == [True, True]
    for folder in ("echo", "shout"):
        assert (hall / "workers" / folder / MANIFEST_NAME).is_file()
    ring = Keyring.load(hall / "keys" / "trusted.yaml")
    entry = ring.get(out["key_id"])
    assert entry is not None and entry.namespaces == ["org.demo", "x.alice"]
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert leftovers == []

    # Again: the earlier sign-all key is replaced, not kept alongside.
    code, again = run_cli(capsys, "attest", "sign-all", "--hall", hall, "--new-key")
    assert code == 0
    assert again["removed_key_ids"] == [out["key_id"]]
    assert [k.key_id for k in Keyring.load(hall / "keys" / "trusted.yaml")] == [again["key_id"]]


def test_sign_all_with_given_or_saved_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hall = make_hall(tmp_path / "hall", "org.demo.echo")
    saved = tmp_path / "kept.pem"
    code, out = run_cli(
        capsys, "attest", "sign-all", "--hall", hall, "--new-key", "--save-key", saved
    )
    assert code == 0 and out["private_key_kept"] is True
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert SigningKey.load(saved).key_id == out["key_id"]

    # A trusted key file re-signs; an untrusted one signs but the answer is no.
    code, out = run_cli(capsys, "attest", "sign-all", "--hall", hall, "--key", saved)
    assert code == 0 and out["workers"][0]["valid"] is True
    stranger = tmp_path / "stranger.pem"
    SigningKey.generate().save(stranger)
    code, out = run_cli(capsys, "attest", "sign-all", "--hall", hall, "--key", stranger)
    assert code == 1
    assert out["workers"][0]["code"] == "ATTEST_SIG_INVALID"


def test_sign_all_refuses_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hall = make_hall(tmp_path / "hall", "org.demo.echo", "wrk.demo.bad")
    code = main(["attest", "sign-all", "--hall", str(hall), "--new-key", "--json"])
    assert code == 3  # configuration error naming worker.yaml
    assert "worker_id" in capsys.readouterr().out
    assert not (hall / "keys" / "trusted.yaml").exists()
    assert not (hall / "workers" / "echo" / MANIFEST_NAME).exists()
    code = main(["attest", "sign-all", "--hall", str(hall), "--key", "k", "--save-key", "x"])
    assert code == 2
