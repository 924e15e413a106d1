"""Traces without a gateway: the format, masking, matching, the relay around a fake server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyhall_mcp.errors import ConfigError
from pyhall_mcp.traces import (
    C2S,
    S2C,
    STEP,
    Frame,
    Trace,
    _Checker,
    _learn,
    _rewrite,
    apply_step,
    copy_hall,
    gateway_args,
    hall_label,
    mask,
    strip_options,
)

REPO = Path(__file__).resolve().parents[1]
CLI = "import sys; from pyhall_mcp.cli import main; sys.exit(main())"
UUID = "720c048c-24f4-415d-acef-d4c14aa47852"


def _trace(*frames: Frame, **header: object) -> Trace:
    return Trace({"pyhall_trace": 1, "era": "legacy", "hall": "demo", **header}, list(frames))


def _req(i: int, method: str = "tools/call", **params: object) -> Frame:
    msg = {"jsonrpc": "2.0", "id": i, "method": method}
    if params:
        msg["params"] = params
    return Frame(C2S, 0, msg=msg)


def _res(i: object, **result: object) -> Frame:
    return Frame(S2C, 0, msg={"jsonrpc": "2.0", "id": i, "result": result})


def _note(method: str, **params: object) -> Frame:
    return Frame(S2C, 0, msg={"jsonrpc": "2.0", "method": method, "params": params})


# -- format ----------------------------------------------------------------------------------


def test_trace_round_trips_through_a_file(tmp_path: Path) -> None:
    trace = _trace(
        _req(1, "initialize"),
        _res(1, ok=True),
        Frame(S2C, 5, raw="not json"),
        Frame(STEP, 6, step={"remove": ["workers/x"]}),
    )
    path = tmp_path / "t.jsonl"
    trace.dump(path)
    again = Trace.load(path)
    assert again.header == trace.header
    assert [f.to_json() for f in again.frames] == [f.to_json() for f in trace.frames]
    assert (
        path.read_text().splitlines()[2]
        == '{"dir": "s2c", "t_ms": 0, "msg": {"jsonrpc": "2.0", "id": 1, "result": {"ok": true}}}'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"dir": "c2s"}\n', "not a pyhall trace"),
        ('{"pyhall_trace": 2}\n', "not supported"),
        ('{"pyhall_trace": 1}\n{"dir": "sideways", "t_ms": 0, "msg": {}}\n', "unknown direction"),
        ('{"pyhall_trace": 1}\n{"dir": "c2s", "t_ms": 0}\n', "exactly one of"),
        ('{"pyhall_trace": 1}\n{"dir": "step", "t_ms": 0, "msg": {}}\n', "exactly one of"),
        ('{"pyhall_trace": 1}\n{"dir": "c2s", "t_ms": "1", "msg": {}}\n', "t_ms"),
        ('{"pyhall_trace": 1}\nnot json\n', "not JSON"),
        ("", "empty trace"),
    ],
)
def test_invalid_traces_name_the_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Trace.load(path)
    assert expected in caught.value.message
    assert caught.value.file == str(path)


# -- masking -----------------------------------------------------------------------------------


def test_mask_replaces_what_varies_and_keeps_what_matters() -> None:
    value = {
        "decision_id": UUID,
        "receipt_seq": 3,
        "pending_approval_id": None,
        "outcome": {"outcome_receipt_hash": "ab" * 32, "status": "ok", "duration_us": 766},
        "approval": {"step_receipt_id": "rcpt_0d965e1b46ea42068ffa6d1f596e9134"},
        "text": f"Approval apr_8kLXPTLWhbO7yFqMsvPwh1_k expires 2026-11-22T09:17:47Z ({UUID})",
        "deny_code": "DENY_POLICY_GATE",
        "correlation_id": "client-chosen-1",
        "serverInfo": {"name": "pyhall-mcp", "version": "0.1.0"},
    }
    assert mask(value) == {
        "decision_id": "<decision_id>",
        "receipt_seq": "<receipt_seq>",
        "pending_approval_id": None,
        "outcome": {
            "outcome_receipt_hash": "<outcome_receipt_hash>",
            "status": "ok",
            "duration_us": "<duration_us>",
        },
        "approval": {"step_receipt_id": "<step_receipt_id>"},
        "text": "Approval <approval-id> expires <timestamp> (<uuid>)",
        "deny_code": "DENY_POLICY_GATE",
        "correlation_id": "client-chosen-1",
        "serverInfo": {"name": "pyhall-mcp", "version": "<version>"},
    }


def test_learned_values_are_rewritten_into_client_frames() -> None:
    learned: dict[str, str] = {}
    _learn(
        {"requestState": "sealed-old", "text": "Approve apr_oldoldold1 now"},
        {"requestState": "sealed-new", "text": "Approve apr_newnewnew2 now"},
        learned,
    )
    assert learned == {"sealed-old": "sealed-new", "apr_oldoldold1": "apr_newnewnew2"}
    client = {"params": {"requestState": "sealed-old", "note": "ok apr_oldoldold1", "n": 1}}
    assert _rewrite(client, learned) == {
        "params": {"requestState": "sealed-new", "note": "ok apr_newnewnew2", "n": 1}
    }


# -- matching -----------------------------------------------------------------------------------


def test_responses_match_by_id_whatever_order_they_arrive_in() -> None:
    checker = _Checker(_trace(_req(1), _req(2), _res(1, a=1), _res(2, b=2)))
    checker.incoming(_res(2, b=2))
    checker.incoming(_res(1, a=1))
    assert checker.mismatches == []
    assert checker.pending == set()


def test_a_changed_response_is_a_diff_naming_the_frame() -> None:
    checker = _trace(_req(1, name="greet"), _res(1, text="Hello, Ada!"))
    result = _Checker(checker)
    result.incoming(_res(1, text="Hi, Ada!"))
    [mismatch] = result.mismatches
    assert mismatch.index == 1 and mismatch.line == 3
    assert "response to id 1 (tools/call greet) differs" in mismatch.summary
    assert '-  "text": "Hello, Ada!"' in mismatch.diff.replace("    ", "  ")
    assert '+  "text": "Hi, Ada!"' in mismatch.diff.replace("    ", "  ")


def test_progress_after_its_response_is_a_difference() -> None:
    call = _req(7, name="summarize_document", _meta={"progressToken": 7})
    progress = _note("notifications/progress", progressToken=7, progress=1)
    checker = _Checker(_trace(call, progress, _res(7, done=True)))
    checker.incoming(_res(7, done=True))
    checker.incoming(progress)
    summaries = [m.summary for m in checker.mismatches]
    assert summaries == [
        "notification notifications/progress did not arrive before the response it belongs to",
        "unexpected notification notifications/progress",
    ]


def test_notifications_of_one_method_match_in_order() -> None:
    first, second = _note("notifications/message", n=1), _note("notifications/message", n=2)
    checker = _Checker(_trace(first, second))
    checker.incoming(second)
    checker.incoming(first)
    assert [m.index for m in checker.mismatches] == [0, 1]


def test_server_request_ids_are_learned_and_the_answer_is_rewritten() -> None:
    ask = Frame(S2C, 0, msg={"jsonrpc": "2.0", "id": 1, "method": "elicitation/create"})
    answer = Frame(C2S, 0, msg={"jsonrpc": "2.0", "id": 1, "result": {"action": "accept"}})
    checker = _Checker(_trace(_req(5), ask, answer, _res(5)))
    checker.incoming(Frame(S2C, 0, msg={**ask.msg, "id": 42}))
    assert checker.mismatches == []  # the id of a server request is masked
    assert checker.waiting_before(2) == []
    assert checker.outgoing(2, 0).msg["id"] == 42


def test_a_frame_given_up_on_is_reported_once_even_if_it_comes_late() -> None:
    checker = _Checker(_trace(_req(1), _res(1)))
    checker.give_up(checker.waiting_before(2), 1.0, exited=False)
    checker.incoming(_res(1))
    [mismatch] = checker.mismatches
    assert mismatch.summary == "response to id 1 (tools/call) did not arrive (not within 1 s)"


def test_a_frame_nobody_expects_is_a_difference() -> None:
    checker = _Checker(_trace(_req(1), _res(1)))
    checker.incoming(_note("notifications/tools/list_changed"))
    [mismatch] = checker.mismatches
    assert mismatch.index is None
    assert mismatch.summary == "unexpected notification notifications/tools/list_changed"


# -- recording helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["pyhall-mcp", "--env", "prod"], ["--env", "prod"]),
        (["/usr/bin/python3", "-m", "pyhall_mcp", "--tenant", "x"], ["--tenant", "x"]),
        (["python", "-u", "-X", "dev", "-m", "pyhall_mcp.gateway"], []),
        (["npx", "some-server"], None),
        (["python", "server.py"], None),
    ],
)
def test_the_gateway_is_recognised_in_a_command(
    command: list[str], expected: list[str] | None
) -> None:
    assert gateway_args(command) == expected


def test_path_options_are_stripped_in_both_spellings() -> None:
    kept, removed = strip_options(
        ["--hall", "/h", "--env", "dev", "--state-dir=/s", "--record", "o.jsonl"],
        ["--hall", "--state-dir", "--record"],
    )
    assert kept == ["--env", "dev"]
    assert removed == {"--hall": "/h", "--state-dir": "/s", "--record": "o.jsonl"}


def test_hall_label_is_demo_or_relative_to_the_trace(tmp_path: Path) -> None:
    assert hall_label(None, tmp_path) == "demo"
    assert hall_label(REPO, tmp_path) == "demo"
    (tmp_path / "halls" / "mine").mkdir(parents=True)
    assert hall_label(tmp_path / "halls" / "mine", tmp_path / "traces") == "../halls/mine"


# -- hall copies and steps ----------------------------------------------------------------------


def test_copy_hall_copies_configuration_only(tmp_path: Path) -> None:
    copy = copy_hall(REPO, tmp_path / "copy")
    assert (copy / "hall.yaml").is_file() and (copy / "workers" / "greeter").is_dir()
    assert not (copy / "tests").exists() and not (copy / "pyhall_mcp").exists()
    assert not (copy / ".pyhall").exists() and not list(copy.rglob("__pycache__"))


def test_copy_hall_refuses_rules_outside_the_hall(tmp_path: Path) -> None:
    hall = tmp_path / "hall"
    hall.mkdir()
    (hall / "hall.yaml").write_text("rules: [../elsewhere]\n")
    with pytest.raises(ConfigError, match="outside the hall"):
        copy_hall(hall, tmp_path / "copy")


def test_steps_write_and_remove_inside_the_hall_only(tmp_path: Path) -> None:
    apply_step(tmp_path, {"write": {"workers/x/worker.yaml": "a: 1\n"}})
    assert (tmp_path / "workers" / "x" / "worker.yaml").read_text() == "a: 1\n"
    apply_step(tmp_path, {"remove": ["workers/x"]})
    assert not (tmp_path / "workers" / "x").exists()
    for escape in ("../out.txt", "/tmp/out.txt"):
        with pytest.raises(ConfigError, match="leaves the hall"):
            apply_step(tmp_path, {"write": {escape: "x"}})


# -- the relay around a fake server -------------------------------------------------------------

FAKE_SERVER = textwrap.dedent(
    """
    import json, sys
    sys.stderr.write("fake server starting\\n")
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" in msg:
            sys.stdout.write(json.dumps({"id": msg["id"], "jsonrpc": "2.0", "result": {}}) + "\\n")
        sys.stdout.write("debug: not json\\n")
        sys.stdout.flush()
    sys.exit(7)
    """
)


def test_the_relay_is_transparent_and_records_every_line(tmp_path: Path) -> None:
    server = tmp_path / "server.py"
    server.write_text(FAKE_SERVER)
    out = tmp_path / "session.jsonl"
    requests = (
        '{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
        '{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "traces",
            "record",
            str(out),
            "--",
            sys.executable,
            str(server),
        ],
        input=requests.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7  # the server's exit code
    assert b"fake server starting" in done.stderr  # stderr passes through
    assert done.stdout == (
        b'debug: not json\n{"id": 1, "jsonrpc": "2.0", "result": {}}\ndebug: not json\n'
    )
    trace = Trace.load(out)
    assert trace.era == "modern"  # the first request was not initialize
    assert trace.header["launch"] == {"command": [sys.executable, str(server)]}
    assert trace.header["hall"] is None

    def seen(direction: str) -> list[object]:
        return [
            f.raw or f.msg.get("method") or f.msg.get("id")
            for f in trace.frames
            if f.dir == direction
        ]

    assert seen(C2S) == ["notifications/initialized", "server/discover"]
    assert seen(S2C) == ["debug: not json", 1, "debug: not json"]
    times = [f.t_ms for f in trace.frames]
    assert times == sorted(times)
    json.dumps(trace.header)  # the header is plain JSON


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["traces", "record", "out.jsonl"], 2, "name the server command after --"),
        (["traces", "replay", "missing.jsonl"], 3, "cannot read the trace"),
        (["traces", "record", "no/such/dir/out.jsonl", "--", "true"], 3, "cannot write the trace"),
    ],
)
def test_cli_errors_are_messages_with_exit_codes(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == code
    assert message in done.stderr
    assert "Traceback" not in done.stderr
