"""``pyhall-mcp`` as a host sees it: raw stdio lines, exit codes, stderr."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from pyhall_mcp.gateway import main

pytestmark = pytest.mark.timeout(60)

_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
_INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def _gateway(hall: Path, *args: str | Path) -> list[str | Path]:
    """The command line of a gateway subprocess."""
    return [sys.executable, "-m", "pyhall_mcp", "--hall", hall, *args]


def _env(events: str = "off") -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "PYHALL_EVENTS": events}


def _session(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    """The handshake, then ``messages``."""
    return [_INITIALIZE, _INITIALIZED, *messages]


def _lines(messages: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(m).encode() + b"\n" for m in messages)


def _piped(hall: Path, state: Path) -> subprocess.Popen[bytes]:
    """A gateway on pipes, its stderr discarded: for tests that handle the pipes themselves."""
    return subprocess.Popen(
        _gateway(hall, "--state-dir", state),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )


def _echo(request_id: Any, text: str) -> dict[str, Any]:
    params = {"name": "echo", "arguments": {"text": text}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


class RawGateway:
    """A gateway subprocess driven line by line; every stdout line is kept."""

    def __init__(self, hall: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            _gateway(hall, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        self.lines: list[bytes] = []
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            with contextlib.suppress(ValueError):  # kept in self.lines; the test fails on it
                self._messages.put(json.loads(line))

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.process.stdin is not None
        line = message if isinstance(message, str) else json.dumps(message)
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def handshake(self) -> None:
        assert "result" in self.request(_INITIALIZE)
        self.send(_INITIALIZED)

    def next_message(self, timeout_s: float = 15) -> dict[str, Any]:
        return self._messages.get(timeout=timeout_s)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its response (notifications in between are skipped)."""
        self.send(message)
        while True:
            answer = self.next_message()
            if answer.get("id") == message["id"]:
                return answer

    def close(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            code = self.process.wait(timeout=15)
        finally:
            self.process.kill()
        self._reader.join(timeout=5)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        return code


@pytest.fixture
def gateway(gate_hall: Path, tmp_path: Path) -> Iterator[RawGateway]:
    """A gateway on the gate hall, past the handshake; killed at the end if still running."""
    gateway = RawGateway(gate_hall, "--state-dir", str(tmp_path / "state"))
    try:
        gateway.handshake()
        yield gateway
    finally:
        gateway.process.kill()


def test_malformed_lines_get_jsonrpc_errors_and_stdout_stays_protocol(
    gateway: RawGateway,
) -> None:
    try:
        gateway.send("this is not json")
        assert gateway.next_message() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "Parse error"},
        }
        gateway.send('{"jsonrpc": "2.0", "id": 2, "method": "tools/li')
        assert gateway.next_message()["error"]["code"] == -32700
        gateway.send({"jsonrpc": "1.0", "id": 3, "method": "tools/list"})
        answer = gateway.next_message()  # not JSON-RPC 2.0, but its id could be read
        assert (answer["id"], answer["error"]["code"]) == (3, -32600)

        # an id MCP forbids: not silently taken for a notification
        gateway.send({"jsonrpc": "2.0", "id": None, "method": "tools/list"})
        answer = gateway.next_message()
        assert (answer["id"], answer["error"]["code"]) == (None, -32600)
        assert "string or an integer" in answer["error"]["message"]

        # the request is invalid but its id is readable: the answer carries it
        bad_params = {"jsonrpc": "2.0", "id": 31, "method": "tools/call", "params": "x"}
        assert gateway.request(bad_params)["error"]["code"] == -32600

        unknown_method = gateway.request({"jsonrpc": "2.0", "id": 4, "method": "no/such"})
        assert unknown_method["error"]["code"] == -32601
        no_name = gateway.request(
            {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"arguments": 1}}
        )
        assert no_name["error"]["code"] == -32602
        unknown_tool = gateway.request(
            {
                "jsonrpc": "2.0",
                "id": 6,
                "method": "tools/call",
                "params": {"name": "no_such_tool", "arguments": {}},
            }
        )
        assert unknown_tool["error"]["code"] == -32602
        assert unknown_tool["error"]["data"]["deny_code"] == "DENY_UNKNOWN_TOOL"

        # A worker that prints, a crashing one, then a plain listing: all still answered.
        noisy = gateway.request(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": {"name": "noisy", "arguments": {}},
            }
        )
        assert noisy["result"]["structuredContent"] == {"ok": True}
        crash = gateway.request(
            {
                "jsonrpc": "2.0",
                "id": 8,
                "method": "tools/call",
                "params": {"name": "crash", "arguments": {}},
            }
        )
        assert crash["result"]["isError"] is True
        listing = gateway.request({"jsonrpc": "2.0", "id": 9, "method": "tools/list"})
        assert "echo" in {tool["name"] for tool in listing["result"]["tools"]}
    finally:
        code = gateway.close()

    assert code == 0
    for line in gateway.lines:
        message = json.loads(line)  # every stdout line is one JSON-RPC message
        assert message["jsonrpc"] == "2.0"
        assert "result" in message or "error" in message or "method" in message
    stderr = gateway.stderr.decode()
    noises = ("noise from print", "noise from sys.stdout", "noise from fd 1", "in the buffer")
    for noise in noises:
        assert noise in stderr
    assert "Traceback" not in b"".join(gateway.lines).decode()


def test_calls_in_flight_at_end_of_input_are_still_answered(gateway: RawGateway) -> None:
    """A client that writes its requests and closes stdin still gets every answer.

    The SDK cancels handlers at the end of input; the worker of such a call may
    already have run (its receipts say so), so its answer must not be dropped.
    """
    try:
        calls = {
            "hang": {"name": "hang", "arguments": {"pidfile": "hang.pid"}},  # times out at 1 s
            "echo": {"name": "echo", "arguments": {"text": "still here"}},
            "cancelled": {"name": "sleep", "arguments": {"pidfile": "sleep.pid"}},
        }
        for request_id, params in calls.items():
            gateway.send(
                {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
            )
        cancel = {"requestId": "cancelled", "reason": "the user gave up"}
        gateway.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel})
    finally:
        code = gateway.close()

    assert code == 0
    answers = {m.get("id"): m for m in map(json.loads, gateway.lines) if "id" in m}
    assert answers["hang"]["result"]["isError"] is True
    assert "timed out" in answers["hang"]["result"]["content"][0]["text"]
    assert answers["echo"]["result"]["structuredContent"] == {"text": "still here"}
    assert "cancelled" not in answers  # a cancelled request is not answered, nor waited for


def test_an_oversize_message_is_refused_unread_and_the_next_one_served(
    gateway: RawGateway,
) -> None:
    from pyhall_mcp._stdio import MAX_MESSAGE_BYTES

    try:
        huge = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
        huge["params"] = {"name": "echo", "arguments": {"text": "x" * MAX_MESSAGE_BYTES}}
        gateway.send(huge)
        answer = gateway.next_message()
        assert answer["id"] is None  # never parsed, so its id is unknown
        assert answer["error"]["code"] == -32600
        assert "larger than" in answer["error"]["message"]
        echo = {"name": "echo", "arguments": {"text": "still here"}}
        after = gateway.request({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": echo})
        assert after["result"]["structuredContent"] == {"text": "still here"}
    finally:
        assert gateway.close() == 0


def test_one_socket_as_stdin_and_stdout_is_served(gate_hall: Path, tmp_path: Path) -> None:
    """As socat EXEC:, inetd or systemd launch a server: one socket for both."""
    state = tmp_path / "state"
    import socket

    ours, theirs = socket.socketpair()
    process = subprocess.Popen(
        _gateway(gate_hall, "--state-dir", state),
        stdin=theirs,
        stdout=theirs,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    theirs.close()
    try:
        ours.settimeout(20)
        replies = ours.makefile("rb")

        def request(message: dict[str, Any]) -> dict[str, Any]:
            ours.sendall(json.dumps(message).encode() + b"\n")
            return json.loads(replies.readline())

        assert "result" in request(_INITIALIZE)
        ours.sendall(_lines([_INITIALIZED]))
        echoed = request(_echo(1, "over a socket"))
        assert echoed["result"]["structuredContent"] == {"text": "over a socket"}
        assert request({"jsonrpc": "2.0", "id": 2, "method": "ping"})["result"] == {}
        ours.shutdown(socket.SHUT_WR)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        ours.close()


def test_a_client_that_stops_reading_ends_the_session(gate_hall: Path, tmp_path: Path) -> None:
    """No answer can reach it: the gateway reads no more requests and exits, although
    stdin stays open."""
    gateway = _piped(gate_hall, tmp_path / "state")
    assert gateway.stdin is not None and gateway.stdout is not None
    try:
        gateway.stdin.write(_lines([_INITIALIZE]))
        gateway.stdin.flush()
        assert b"result" in gateway.stdout.readline()
        gateway.stdout.close()
        for n in range(3):
            with contextlib.suppress(BrokenPipeError):  # it may be gone already
                gateway.stdin.write(_lines([_echo(n, "unheard")]))
                gateway.stdin.flush()
            time.sleep(0.2)
        assert gateway.wait(timeout=20) == 0  # stdin is still open
    finally:
        gateway.kill()


def test_answers_wait_at_the_end_for_a_client_slow_to_read(gate_hall: Path, tmp_path: Path) -> None:
    """The client writes its calls, closes stdin, and reads only some seconds later:
    it still gets every answer, whole (more than a pipe buffer of them)."""
    gateway = _piped(gate_hall, tmp_path / "state")
    text = "x" * 1000
    assert gateway.stdin is not None and gateway.stdout is not None
    gateway.stdin.write(_lines(_session(*(_echo(n, text) for n in range(20)))))
    gateway.stdin.close()
    time.sleep(6)  # longer than a fixed 5 s flush would wait
    try:
        out = gateway.stdout.read()
        assert gateway.wait(timeout=30) == 0
    finally:
        gateway.kill()
    assert out.endswith(b"\n")
    answers = {m["id"]: m for m in map(json.loads, out.splitlines())}
    assert set(answers) == {"init", *range(20)}
    assert all(answers[n]["result"]["structuredContent"] == {"text": text} for n in range(20))
    # more than the pipe holds, less than would make a send wait: the rest sat in the
    # gateway's buffer after the last call was answered
    assert 65536 < len(out) < 2 * 65536


def test_a_closed_stderr_sends_noise_nowhere_not_into_the_state_files(
    gate_hall: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    noisy = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    noisy["params"] = {"name": "noisy", "arguments": {}}
    done = subprocess.run(
        _gateway(gate_hall, "--state-dir", state),
        input=_lines(_session(noisy)),
        stdout=subprocess.PIPE,
        env=_env(events="stderr"),
        preexec_fn=lambda: os.close(2),  # launched as with 2>&-
        timeout=30,
    )
    assert done.returncode == 0
    answers = {m["id"]: m for m in map(json.loads, done.stdout.splitlines())}
    assert answers[1]["result"]["structuredContent"] == {"ok": True}
    for path in state.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm"):
            assert b"noise" not in path.read_bytes(), path


def test_requests_from_a_file_are_served_too(gate_hall: Path, tmp_path: Path) -> None:
    """stdin a regular file (no event-loop pipe): the SDK's threaded stdio serves it."""
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(_lines(_session(_echo(1, "from a file"))) + b"not json\n")
    state = tmp_path / "state"
    with requests.open("rb") as stdin:
        done = subprocess.run(
            _gateway(gate_hall, "--state-dir", state),
            stdin=stdin,
            capture_output=True,
            env=_env(),
            timeout=30,
        )
    assert done.returncode == 0, done.stderr.decode()
    answers = {m.get("id"): m for m in map(json.loads, done.stdout.splitlines())}
    assert answers[1]["result"]["structuredContent"] == {"text": "from a file"}
    assert answers[None]["error"]["code"] == -32700


def test_invalid_configuration_refuses_to_start(gate_hall: Path, tmp_path: Path) -> None:
    hall_yaml = gate_hall / "hall.yaml"
    hall_yaml.write_text(hall_yaml.read_text().replace("env: dev", "env: production"))
    done = subprocess.run(
        [sys.executable, "-m", "pyhall_mcp", "--hall", str(gate_hall)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env={"PATH": os.environ.get("PATH", os.defpath)},
        timeout=30,
    )
    assert done.returncode == 3
    assert done.stdout == b""
    stderr = done.stderr.decode()
    assert "refusing to start" in stderr
    assert str(hall_yaml) in stderr
    assert "env" in stderr
    assert "Traceback" not in stderr
    assert not (gate_hall / ".pyhall").exists(), "nothing is created for a refused hall"


class BadSetting(NamedTuple):
    """A hall.yaml edit (old, new), argv and environment, and what stderr must name."""

    edit: tuple[str, str] | None
    argv: list[str]
    environ: dict[str, str]
    names: list[str]


_BAD_SETTINGS = {
    "bad-value": BadSetting(
        ("tenant_risk: low", "tenant_risk: extreme"), [], {}, ["hall.yaml", "tenant_risk"]
    ),
    "unknown-field": BadSetting(
        ("name: test-gate", "name: test-gate\ncolour: red"), [], {}, ["hall.yaml", "colour"]
    ),
    "out-of-range": BadSetting(
        ("reload_interval_s: 0.1", "reload_interval_s: -1"),
        [],
        {},
        ["hall.yaml", "reload_interval_s"],
    ),
    "durability": BadSetting(
        ("audit:\n  enabled: true", "audit:\n  enabled: true\n  durability: sometimes"),
        [],
        {},
        ["hall.yaml", "audit.durability"],
    ),
    "environment": BadSetting(
        None, [], {"PYHALL_QOS": "P9"}, ["environment variable PYHALL_QOS", "qos_class"]
    ),
    "flag": BadSetting(None, ["--tenant", ""], {}, ["launch flag --tenant", "tenant_id"]),
    "blank-tenant-variable": BadSetting(
        None, [], {"PYHALL_TENANT": " "}, ["environment variable PYHALL_TENANT", "not be blank"]
    ),
    "untrimmed-variable": BadSetting(
        None, [], {"PYHALL_ENV": "staging "}, ["environment variable PYHALL_ENV", "env"]
    ),
    "blank-tenant": BadSetting(None, ["--tenant", "  "], {}, ["launch flag --tenant", "tenant_id"]),
    "floor-variable": BadSetting(
        None, [], {"PYHALL_REQUIRE_SIGNATORY": "maybe"}, ["PYHALL_REQUIRE_SIGNATORY"]
    ),
    "floor-variable-range": BadSetting(
        None,
        [],
        {"PYHALL_BLAST_GATE_THRESHOLD": "900"},
        ["environment variable PYHALL_BLAST_GATE_THRESHOLD", "floors.blast_gate_threshold"],
    ),
    "floor-flag-switch": BadSetting(
        None, ["--floor", "require_signatory=maybe"], {}, ["launch flag --floor require_signatory"]
    ),
    "floor-flag": BadSetting(
        None, ["--floor", "no_such_floor=true"], {}, ["launch flag --floor no_such_floor"]
    ),
    # a bad floor in hall.yaml is the file's, even while another floor comes from the launch
    "floor-in-file": BadSetting(
        ("enforce_policy_gate: true", "enforce_policy_gate: maybe"),
        ["--floor", "require_signatory=false"],
        {},
        ["hall.yaml", "floors.enforce_policy_gate"],
    ),
    "audit-yes": BadSetting(
        ("audit:\n  enabled: true", "audit:\n  enabled: yes"), [], {}, ["audit.enabled"]
    ),
    "result-limit": BadSetting(
        ("audit:\n", "limits: {max_result_bytes: 5000000}\naudit:\n"),
        [],
        {},
        ["limits.max_result_bytes"],
    ),
    "argument-limit": BadSetting(
        ("audit:\n", "limits: {max_argument_bytes: 5000000}\naudit:\n"),
        [],
        {},
        ["limits.max_argument_bytes"],
    ),
    "floors-not-a-mapping": BadSetting(
        ("floors:\n", "floors: yes\nunused_floors:\n"), [], {}, ["hall.yaml", "floors"]
    ),
    "empty-hall": BadSetting(None, ["--hall", ""], {}, ["--hall", "empty"]),
    "state-dir": BadSetting(
        None, [], {"PYHALL_STATE_DIR": os.devnull}, ["PYHALL_STATE_DIR", "not a directory"]
    ),
}


@pytest.mark.parametrize("case", _BAD_SETTINGS.values(), ids=_BAD_SETTINGS.keys())
def test_invalid_settings_name_the_source_and_field(
    gate_hall: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: BadSetting,
) -> None:
    if case.edit is not None:
        hall_yaml = gate_hall / "hall.yaml"
        text = hall_yaml.read_text()
        assert case.edit[0] in text
        hall_yaml.write_text(text.replace(*case.edit))
    for name, value in case.environ.items():
        monkeypatch.setenv(name, value)
    assert main(["--hall", str(gate_hall), *case.argv]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("pyhall-mcp: refusing to start:")
    for name in case.names:
        assert name in err


def test_check_validates_without_serving(
    gate_hall: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--hall", str(gate_hall), "--check"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "11 tools" in err and "tenant tester" in err


def test_check_fails_when_a_worker_would_not_be_served(
    gate_hall: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = gate_hall / "workers" / "echo" / "worker.yaml"
    record.write_text(record.read_text().replace("risk_tier: low", "risk_tier: extreme"))
    assert main(["--hall", str(gate_hall), "--check"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "10 tools" in err and "1 problem(s)" in err
    assert "quarantined:" in err and "risk_tier" in err


def test_check_and_start_say_when_receipts_are_off(
    gate_hall: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hall_yaml = gate_hall / "hall.yaml"
    text = hall_yaml.read_text()
    hall_yaml.write_text(text.replace("audit:\n  enabled: true", "audit:\n  enabled: false"))
    assert main(["--hall", str(gate_hall), "--check"]) == 1
    assert "audit.enabled is false" in capsys.readouterr().err


def test_check_says_when_a_tenant_credential_is_never_checked(
    gate_hall: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYHALL_TENANT_CREDENTIAL", "an.unchecked.credential")
    assert main(["--hall", str(gate_hall), "--check"]) == 1
    assert "floors.require_credential is false: it is never checked" in capsys.readouterr().err


def test_check_reports_settings_that_would_fail_every_call(
    gate_hall: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(gate_hall / "workspace")
    argv = ["--hall", str(gate_hall), "--check", "--floor", "require_credential=true"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    assert "workspace:" in err and "not a directory" in err
    assert "floors.require_credential: no credential issuer is trusted" in err


def test_a_floor_reads_the_same_from_a_flag_and_a_variable(
    gate_hall: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pyhall_mcp.gateway import check_launch

    flag = ["--hall", str(gate_hall), "--floor", "allowed_tenants=tester, other "]
    from_flag = check_launch([*flag, "--floor", "blast_gate_threshold=1"]).settings.floors
    monkeypatch.setenv("PYHALL_ALLOWED_TENANTS", "tester, other ")
    monkeypatch.setenv("PYHALL_BLAST_GATE_THRESHOLD", "1")
    from_variable = check_launch(["--hall", str(gate_hall)]).settings.floors
    for floors in (from_flag, from_variable):
        assert floors.allowed_tenants == ["tester", "other"]
        assert floors.blast_gate_threshold == 1 and type(floors.blast_gate_threshold) is int


def test_recording_a_refused_hall_writes_no_trace(
    gate_hall: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hall_yaml = gate_hall / "hall.yaml"
    hall_yaml.write_text(hall_yaml.read_text().replace("env: dev", "env: production"))
    trace = tmp_path / "session.jsonl"
    assert main(["--hall", str(gate_hall), "--record", str(trace)]) == 3
    assert "refusing to start" in capsys.readouterr().err
    assert not trace.exists()


def test_an_open_subscription_does_not_hold_up_the_end_of_input(
    gate_hall: Path, tmp_path: Path
) -> None:
    """subscriptions/listen stays open for the whole connection: the end of input does
    not wait for its answer (it would wait out the slowest worker's timeout)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    gateway = RawGateway(gate_hall, "--state-dir", str(tmp_path / "state"))
    try:
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}}
        assert "result" in gateway.request(listing)
        listen = {"notifications": {"toolsListChanged": True}, "_meta": meta}
        gateway.send(
            {"jsonrpc": "2.0", "id": "l", "method": "subscriptions/listen", "params": listen}
        )
        time.sleep(0.3)
    finally:
        started = time.monotonic()
        code = gateway.close()
    assert code == 0
    assert time.monotonic() - started < 5  # the gate hall's slowest worker may take 30 s


async def test_the_ledger_forgets_a_request_to_the_client_once_withdrawn() -> None:
    """A server request the gateway gave up on (its elicitation timed out) must not
    count as 'waiting on the client' at the end of input, or a slow call would lose
    its answer."""
    import anyio
    import mcp.types as types

    from pyhall_mcp.gateway import _Ledger

    ledger = _Ledger(grace_s=lambda: 0.3)
    ask = types.JSONRPCRequest(jsonrpc="2.0", id="ask", method="elicitation/create", params={})
    ledger.sent(ask)
    withdraw = {"requestId": "ask", "reason": "timed out"}
    ledger.sent(
        types.JSONRPCNotification(jsonrpc="2.0", method="notifications/cancelled", params=withdraw)
    )
    call = types.JSONRPCRequest(jsonrpc="2.0", id=7, method="tools/call", params={})
    ledger.received(call)
    with anyio.move_on_after(5) as waited:
        started = anyio.current_time()
        await ledger.drained()  # the call is still owed: waits out the grace
    assert not waited.cancelled_caught and anyio.current_time() - started >= 0.25
    ledger.sent(types.JSONRPCResponse(jsonrpc="2.0", id=7, result={}))
    with anyio.fail_after(1):
        await ledger.drained()  # answered: returns at once


async def test_the_callers_own_error_is_not_blamed_on_the_gateway(gate_hall: Path) -> None:
    """gateway_client turns a gateway that never answered into a ConfigError; an error
    raised by the caller after it did answer must come through as itself."""
    from pyhall_mcp.cli._session import gateway_client
    from pyhall_mcp.errors import ConfigError

    with pytest.raises(BaseException) as caught:
        async with gateway_client(gate_hall, ["--events", "off"]) as client:
            await client.list_tools()
            raise OSError("the caller's own problem")
    assert not isinstance(caught.value, ConfigError)
    assert "the caller's own problem" in repr(
        caught.value.exceptions if isinstance(caught.value, BaseExceptionGroup) else caught.value
    )


def test_check_says_when_a_sandbox_cannot_be_had(
    demo_hall: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyhall_mcp.runners as runners

    monkeypatch.setattr(runners, "landlock_abi", lambda: 0)
    # auto: a note, no fault (a laptop without Landlock still runs the demo)
    assert main(["--hall", str(demo_hall), "--check"]) == 0
    err = capsys.readouterr().err
    assert "note: tool read_file runs unconfined: the kernel has no usable Landlock" in err
    # landlock: required, so every call would fail: a problem
    record = demo_hall / "workers" / "file-reader" / "worker.yaml"
    record.write_text(record.read_text().replace("sandbox: auto", "sandbox: landlock"))
    monkeypatch.setenv("PYHALL_REQUIRE_WORKER_ATTESTATION", "false")
    assert main(["--hall", str(demo_hall), "--check"]) == 1
    err = capsys.readouterr().err
    assert "tool read_file: the kernel has no usable Landlock, so every call fails" in err


@pytest.mark.parametrize(
    ("worker", "old", "new", "words"),
    [
        (
            "file-reader",
            "  filesystem_reads:\n  - workspace/\n",
            "  filesystem_reads:\n  - workspace/notes\n",
            "privilege_envelope.filesystem_reads: 'workspace/notes' lies inside a directory "
            "org.demo.file-deleter may write",
        ),
        (
            "file-reader",
            "  filesystem_reads:\n  - workspace/\n",
            "  filesystem_reads:\n  - .pyhall\n",
            "privilege_envelope.filesystem_reads: '.pyhall' holds the hall's own files",
        ),
        (
            "file-reader",
            "  filesystem_writes: []\n",
            "  filesystem_writes:\n  - .\n",
            "privilege_envelope.filesystem_writes: '.' holds the hall's own files",
        ),
    ],
    ids=["inside-a-writable-dir", "reads-the-state", "writes-the-hall"],
)
def test_envelopes_that_would_undo_the_hall_are_quarantined(
    demo_hall: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    worker: str,
    old: str,
    new: str,
    words: str,
) -> None:
    monkeypatch.setenv("PYHALL_REQUIRE_WORKER_ATTESTATION", "false")
    record = demo_hall / "workers" / worker / "worker.yaml"
    assert old in record.read_text()
    record.write_text(record.read_text().replace(old, new))
    assert main(["--hall", str(demo_hall), "--check"]) == 1
    err = capsys.readouterr().err
    assert "4 tools" in err and words in err
