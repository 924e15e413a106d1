"""``pyhall audit``: verify, tail, show, export — as an operator or a third party runs them."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_audit import decision, dsse_verify, write_log

from pyhall_mcp.audit import Receipt, ReceiptLog
from pyhall_mcp.cli import main
from pyhall_mcp.layout import HallLayout

PYHALL = [sys.executable, "-c", "import sys; from pyhall_mcp.cli import main; sys.exit(main())"]


def pyhall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYHALL, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def hall(tmp_path: Path) -> tuple[HallLayout, list[Receipt]]:
    layout = HallLayout.for_hall(tmp_path / "hall")
    return layout, write_log(layout, 30, checkpoint_every=10)


def test_verify_passes_then_names_the_first_broken_record(hall) -> None:
    layout, _ = hall
    ok = pyhall("audit", "verify", "--hall", str(layout.root))
    assert ok.returncode == 0, ok.stderr
    assert "audit log OK: 30 receipts" in ok.stdout
    assert "latest checkpoint covers 30 receipts" in ok.stdout

    conn = sqlite3.connect(layout.audit_db, isolation_level=None)
    conn.execute("DELETE FROM receipts WHERE seq > 21")  # cut the tail
    conn.close()
    cut = pyhall("audit", "verify", "--hall", str(layout.root))
    assert cut.returncode == 1
    assert "first broken record: receipt seq 22" in cut.stderr
    assert "truncated" in cut.stderr

    as_json = pyhall("audit", "verify", "--hall", str(layout.root), "--json")
    assert as_json.returncode == 1
    details = json.loads(as_json.stdout)["details"]
    assert details["ok"] is False and details["first_error"]["seq"] == 22


def test_verify_edited_record_exit_code_and_seq(hall) -> None:
    layout, receipts = hall
    conn = sqlite3.connect(layout.audit_db, isolation_level=None)
    conn.execute(
        "UPDATE receipts SET payload = replace(payload, 'allowed', 'denied') WHERE seq = 4"
    )
    conn.close()
    assert main(["audit", "verify", "--hall", str(layout.root)]) == 1
    result = pyhall("audit", "verify", "--hall", str(layout.root))
    assert result.returncode == 1
    assert f"receipt seq 4 ({receipts[3].receipt_id})" in result.stderr


def test_a_third_party_verifies_without_the_private_key(hall, tmp_path: Path) -> None:
    layout, _ = hall
    copy = HallLayout.for_hall(tmp_path / "copy")
    copy.receipt_keyring.parent.mkdir(parents=True)
    shutil.copy(layout.audit_db, copy.audit_db)
    shutil.copy(layout.checkpoints, copy.checkpoints)
    keyring = tmp_path / "published-keys.yaml"
    shutil.copy(layout.receipt_keyring, keyring)
    result = pyhall("audit", "verify", "--hall", str(copy.root), "--keyring", str(keyring))
    assert result.returncode == 0, result.stderr
    assert not copy.signing_key.exists()
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_tail_and_show(hall, capsys: pytest.CaptureFixture[str]) -> None:
    layout, receipts = hall
    assert main(["audit", "tail", "--hall", str(layout.root), "-n", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in lines] == [28, 29, 30]
    assert receipts[-1].receipt_id in lines[-1] and "allowed summarize_document" in lines[-1]

    assert main(["audit", "tail", "--hall", str(layout.root), "-n", "2", "--json"]) == 0
    bodies = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert bodies == [receipts[28].body, receipts[29].body]

    assert main(["audit", "show", receipts[4].receipt_id, "--hall", str(layout.root)]) == 0
    out = capsys.readouterr().out
    assert receipts[4].receipt_hash in out and "hash and signature: OK" in out

    assert main(["audit", "show", "5", "--hall", str(layout.root), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["receipt"] == receipts[4].body and shown["check"]["ok"] is True

    assert main(["audit", "show", "rcpt_nope", "--hall", str(layout.root)]) == 1
    assert "no receipt rcpt_nope" in capsys.readouterr().err


def test_tail_follow_prints_new_receipts(tmp_path: Path) -> None:
    layout = HallLayout.for_hall(tmp_path / "hall")
    write_log(layout, 2)
    follower = subprocess.Popen(
        [*PYHALL, "audit", "tail", "--hall", str(layout.root), "-n", "1", "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["seq"] == 2
        time.sleep(0.3)
        with ReceiptLog.open(layout) as log:
            for n in range(3):
                log.record_sync(decision(n))
        seqs = [json.loads(follower.stdout.readline())["seq"] for _ in range(3)]
        assert seqs == [3, 4, 5]
    finally:
        follower.kill()
        follower.wait()


def test_export_writes_verifiable_dsse_envelopes(hall, tmp_path: Path) -> None:
    layout, receipts = hall
    out = tmp_path / "receipts.dsse.jsonl"
    result = pyhall("audit", "export", "--dsse", "--hall", str(layout.root), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "exported 30 receipts" in result.stdout
    envelopes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(envelopes) == 30
    for envelope, receipt in zip(envelopes, receipts, strict=True):
        payload = dsse_verify(envelope, layout)
        assert payload["receipt_id"] == receipt.receipt_id

    to_stdout = pyhall("audit", "export", "--dsse", "--hall", str(layout.root))
    assert [json.loads(line) for line in to_stdout.stdout.splitlines()] == envelopes


def test_commands_on_a_missing_hall_fail_cleanly(tmp_path: Path) -> None:
    result = pyhall("audit", "verify", "--hall", str(tmp_path / "nowhere"))
    assert result.returncode == 3
    assert "hall directory not found" in result.stderr and "Traceback" not in result.stderr
    assert pyhall("audit", "export", "--hall", str(tmp_path)).returncode == 2  # --dsse required


def test_verify_finds_the_log_a_state_dir_names_and_refuses_to_verify_nothing(
    hall, tmp_path: Path
) -> None:
    layout, _ = hall
    moved = tmp_path / "elsewhere"
    shutil.move(layout.state_dir, moved)
    missing = pyhall("audit", "verify", "--hall", str(layout.root), "--json")
    assert missing.returncode == 1
    assert f"the audit log {layout.audit_db} does not exist" in missing.stderr
    assert json.loads(missing.stdout)["ok"] is False
    found = pyhall("audit", "verify", "--hall", str(layout.root), "--state-dir", str(moved))
    assert found.returncode == 0, found.stderr
    assert "audit log OK: 30 receipts" in found.stdout
    export = pyhall("audit", "export", "--dsse", "--hall", str(layout.root), "--json")
    assert export.returncode == 1 and f"{layout.audit_db} does not exist" in export.stderr


def test_verify_says_what_it_trusted_and_checks_copies_kept_elsewhere(hall, tmp_path: Path) -> None:
    layout, _ = hall
    trusting = pyhall("audit", "verify", "--hall", str(layout.root))
    assert "note: trusted the state directory's own keyring and its own checkpoints" in (
        trusting.stdout
    )
    keyring, kept = tmp_path / "keys.yaml", tmp_path / "checkpoints.jsonl"
    shutil.copy(layout.receipt_keyring, keyring)
    shutil.copy(layout.checkpoints, kept)
    outside = ["--keyring", str(keyring), "--checkpoints", str(kept)]
    clean = pyhall("audit", "verify", "--hall", str(layout.root), *outside)
    assert clean.returncode == 0, clean.stderr
    assert "note:" not in clean.stdout
    assert f"trusted keys: {keyring}; checkpoints: {layout.checkpoints}, {kept}" in clean.stdout

    conn = sqlite3.connect(layout.audit_db, isolation_level=None)
    conn.execute("DELETE FROM receipts WHERE seq > 15")
    conn.close()
    layout.checkpoints.write_text(layout.checkpoints.read_text().splitlines(keepends=True)[0])
    assert pyhall("audit", "verify", "--hall", str(layout.root)).returncode == 0
    caught = pyhall("audit", "verify", "--hall", str(layout.root), *outside, "--json")
    assert caught.returncode == 1
    details = json.loads(caught.stdout)["details"]
    assert details["first_error"]["seq"] == 16 and details["checkpoints"][-1] == str(kept)
    missing = pyhall("audit", "verify", "--hall", str(layout.root), "--checkpoints", "nope")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_verify_never_says_ok_about_an_empty_log(hall) -> None:
    layout, _ = hall
    conn = sqlite3.connect(layout.audit_db, isolation_level=None)
    conn.execute("DELETE FROM receipts")
    conn.close()
    layout.checkpoints.unlink()
    result = pyhall("audit", "verify", "--hall", str(layout.root))
    assert result.returncode == 1 and "holds no receipts" in result.stderr


def test_verify_lists_key_rotations(hall) -> None:
    layout, _ = hall
    layout.signing_key.unlink()
    with ReceiptLog.open(layout) as log:
        log.record_sync(decision(31))
    result = pyhall("audit", "verify", "--hall", str(layout.root))
    assert result.returncode == 0, result.stderr
    assert "signing key rotated: " in result.stdout and " -> " in result.stdout


def test_a_corrupt_record_is_named_by_every_reader_not_a_traceback(hall) -> None:
    layout, _ = hall
    conn = sqlite3.connect(layout.audit_db, isolation_level=None)
    conn.execute("UPDATE receipts SET payload = 'not json' WHERE seq = 6")
    conn.close()
    root = str(layout.root)
    for command in (["tail", "-n", "30"], ["show", "6"], ["export", "--dsse"], ["verify"]):
        result = pyhall("audit", *command, "--hall", root)
        assert result.returncode == 1, (command, result.stderr)
        assert "seq 6" in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_read_only_state_directory_can_be_audited_but_not_written(
    hall, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An auditor's read-only copy of the evidence: reading commands work, writing ones
    refuse, naming the directory. (Faked: the tests may run as root, who can write.)"""
    import pyhall_mcp.layout as layout_module

    layout, _ = hall
    real_access = layout_module.os.access

    def no_writing(path: object, mode: int) -> bool:
        return not mode & layout_module.os.W_OK and real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(layout_module.os, "access", no_writing)
    assert main(["audit", "verify", "--hall", str(layout.root)]) == 0
    refused = main(["approvals", "approve", "apr_" + "x" * 24, "--hall", str(layout.root)])
    assert refused == 3 and "is not writable" in capsys.readouterr().err


def test_anchor_ships_the_latest_checkpoint_and_notices_a_rollback(hall, tmp_path: Path) -> None:
    layout, _ = hall
    kept = tmp_path / "elsewhere" / "anchor.jsonl"
    first = pyhall("audit", "anchor", "--hall", str(layout.root), "--to", str(kept), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {"to": None} == {
        "ok": True,
        "to": None,
        "size": 30,
        "appended": True,
    }
    again = pyhall("audit", "anchor", "--hall", str(layout.root), "--to", str(kept))
    assert again.returncode == 0 and "already there" in again.stdout
    assert len(kept.read_text().splitlines()) == 1

    # Cut the log and its own checkpoints: the anchor refuses, and verify against it fails.
    conn = sqlite3.connect(layout.audit_db, isolation_level=None)
    conn.execute("DELETE FROM receipts WHERE seq > 10")
    conn.close()
    layout.checkpoints.write_text(layout.checkpoints.read_text().splitlines(keepends=True)[0])
    cut = pyhall("audit", "anchor", "--hall", str(layout.root), "--to", str(kept))
    assert cut.returncode == 1 and "cut, rolled back or rewritten" in cut.stderr
    caught = pyhall("audit", "verify", "--hall", str(layout.root), "--checkpoints", str(kept))
    assert caught.returncode == 1 and "receipt seq 11" in caught.stderr
