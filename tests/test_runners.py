"""Runners: Python callables and subprocesses, their failures, timeouts and kills."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyhall_mcp.errors import RegistryError
from pyhall_mcp.runners import (
    PythonRunner,
    SubprocessRunner,
    WorkerContext,
    WorkerResult,
    build_runner,
    landlock_abi,
)

FIXTURES = Path(__file__).parent / "fixtures" / "workers"


def _context(**overrides: Any) -> WorkerContext:
    fields: dict[str, Any] = {
        "correlation_id": "corr-1",
        "decision_id": "dec-1",
        "tenant_id": "tenant-a",
        "env": "dev",
        "data_label": "INTERNAL",
        "worker_id": "org.example.test",
        "tool": "test_tool",
        "workspace": None,
        "deadline_s": 5.0,
    }
    fields.update(overrides)
    return WorkerContext(**fields)


def _py(entry: str, directory: str = "pyfuncs", **kwargs: Any) -> PythonRunner:
    return PythonRunner(FIXTURES / directory, entry, **kwargs)


def _sub(name: str, *extra: str, **kwargs: Any) -> SubprocessRunner:
    return SubprocessRunner(["{python}", f"{name}.py", *extra], FIXTURES / name, **kwargs)


class _Progress:
    """A ProgressFn that records every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, float | None, str | None]] = []
        self.first = anyio.Event()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.reports.append((progress, total, message))
        self.first.set()


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (it can run no code)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def _assert_dead(pid: int, within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not _dead(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        await anyio.sleep(0.02)


def _pids(progress: _Progress) -> tuple[int, int]:
    leader, grandchild = (int(p) for p in (progress.reports[0][2] or "").split())
    return leader, grandchild


# --------------------------------------------------------------------------- python runner


async def test_python_sync_runs_in_a_thread_with_a_private_copy_of_the_arguments() -> None:
    arguments = {"text": "hi", "nested": {"n": 1}}
    result = await _py("pyfuncs:sync_echo").run(arguments, _context(), timeout_s=5)
    assert result.status == "ok", result
    assert result.value == {
        "arguments": {"text": "hi", "nested": {"n": 1}},
        "correlation_id": "corr-1",
        "on_main_thread": False,
    }
    assert arguments == {"text": "hi", "nested": {"n": 1}}
    assert result.error is None
    assert result.duration_us > 0


async def test_python_async_runs_on_the_event_loop() -> None:
    result = await _py("pyfuncs:async_echo").run({"a": [1]}, _context(), timeout_s=5)
    assert result.status == "ok"
    assert result.value == {"arguments": {"a": [1]}, "tool": "test_tool", "on_main_thread": True}


@pytest.mark.parametrize("entry", ["pyfuncs:sync_progress", "pyfuncs:async_progress"])
async def test_python_progress_is_relayed_in_order(entry: str) -> None:
    progress = _Progress()
    result = await _py(entry).run({}, _context(), timeout_s=5, progress=progress)
    assert result.status == "ok"
    kind = entry.split(":")[1].split("_")[0]
    assert progress.reports == [(float(i), 3.0, f"{kind} {i}") for i in (1, 2, 3)]


async def test_python_progress_without_a_listener_is_harmless() -> None:
    result = await _py("pyfuncs:sync_progress").run({}, _context(), timeout_s=5)
    assert result.status == "ok"


async def test_a_failing_progress_listener_does_not_fail_the_call() -> None:
    async def broken(progress: float, total: float | None, message: str | None) -> None:
        raise RuntimeError("client went away")

    result = await _py("pyfuncs:async_progress").run({}, _context(), timeout_s=5, progress=broken)
    assert result.status == "ok"


async def test_python_worker_error_message_reaches_the_client() -> None:
    result = await _py("pyfuncs:refuses").run({}, _context(), timeout_s=5)
    assert (result.status, result.error, result.value) == (
        "error",
        "name is not allowed here",
        None,
    )


async def test_python_crash_gives_a_safe_message_and_logs_the_traceback() -> None:
    result = await _py("pyfuncs:crashes").run({}, _context(), timeout_s=5)
    assert result.status == "error"
    assert result.error == "worker failed (KeyError)"
    assert "Traceback" in result.stderr_tail and "missing" in result.stderr_tail


@pytest.mark.parametrize("entry", ["pyfuncs:returns_list", "pyfuncs:returns_set"])
async def test_python_result_must_be_a_json_object(entry: str) -> None:
    result = await _py(entry).run({}, _context(), timeout_s=5)
    assert (result.status, result.error) == ("error", "worker returned an invalid result")


async def test_python_result_is_normalised_to_plain_json() -> None:
    result = await _py("pyfuncs:returns_tuple").run({}, _context(), timeout_s=5)
    assert result.value == {"values": [1, 2], "3": "int key"}


async def test_python_oversize_result_is_an_error() -> None:
    runner = _py("pyfuncs:returns_huge", max_result_bytes=1000)
    small = await runner.run({"size": 10}, _context(), timeout_s=5)
    large = await runner.run({"size": 5000}, _context(), timeout_s=5)
    assert small.status == "ok"
    assert (large.status, large.error) == ("error", "worker output too large")


async def test_python_sync_timeout_returns_promptly() -> None:
    started = time.monotonic()
    result = await _py("pyfuncs:sync_sleep").run({"seconds": 1.5}, _context(), timeout_s=0.2)
    assert result.status == "timeout"
    assert result.error == "worker timed out after 0.2 s"
    assert time.monotonic() - started < 1.2


async def test_python_async_timeout() -> None:
    result = await _py("pyfuncs:async_hang").run({}, _context(), timeout_s=0.1)
    assert (result.status, result.value) == ("timeout", None)


async def test_an_abandoned_sync_worker_stops_at_its_next_progress_report() -> None:
    runner = _py("pyfuncs:sync_loop_with_progress")
    result = await runner.run({}, _context(), timeout_s=0.1, progress=_Progress())
    assert result.status == "timeout"
    state = runner._callable.fn.__globals__["STATE"]  # type: ignore[union-attr]
    deadline = time.monotonic() + 2
    while not state["stopped"]:
        assert time.monotonic() < deadline, "the abandoned thread kept running"
        await anyio.sleep(0.02)


async def test_python_cancellation_propagates() -> None:
    runner = _py("pyfuncs:async_hang")
    with anyio.move_on_after(0.1) as scope:
        await runner.run({}, _context(), timeout_s=10)
    assert scope.cancelled_caught


async def test_two_workers_with_the_same_module_name_do_not_clash() -> None:
    a = PythonRunner(FIXTURES / "twin-a", "worker:run")
    b = PythonRunner(FIXTURES / "twin-b", "worker:run")
    assert (await a.run({}, _context(), timeout_s=5)).value == {"who": "a"}
    assert (await b.run({}, _context(), timeout_s=5)).value == {"who": "b"}
    assert (await a.run({}, _context(), timeout_s=5)).value == {"who": "a"}


def test_loading_writes_no_bytecode_into_the_worker_directory(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text("def run(arguments, context):\n    return {}\n")
    PythonRunner(tmp_path, "w:run").load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.py"]


async def test_a_module_that_fails_to_import_is_an_error_result_not_an_exception() -> None:
    runner = PythonRunner(FIXTURES / "broken", "worker:run")
    with pytest.raises(RegistryError, match="failed to load"):
        runner.load()
    result = await runner.run({}, _context(), timeout_s=5)
    assert (result.status, result.error) == ("error", "worker could not be loaded")
    assert "/secret/path" in result.stderr_tail


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("pyfuncs:nothing_here", "no function"),
        ("pyfuncs:NOT_CALLABLE", "no function"),
        ("pyfuncs:one_arg", "must accept"),
    ],
)
def test_an_unusable_entry_function_is_refused_at_load(entry: str, match: str) -> None:
    with pytest.raises(RegistryError, match=match) as caught:
        _py(entry).load()
    assert caught.value.location == "runner.entry"


@pytest.mark.parametrize("entry", ["pyfuncs", "pyfuncs:", "pkg.mod:run", "../x:run", "missing:run"])
def test_a_bad_entry_is_refused_at_construction(entry: str) -> None:
    with pytest.raises(RegistryError) as caught:
        _py(entry)
    assert caught.value.location == "runner.entry"
    assert caught.value.fix


# --------------------------------------------------------------------------- subprocess runner


async def test_subprocess_happy_path_gets_arguments_context_and_its_directory() -> None:
    context = _context(workspace="/tmp/ws")
    result = await _sub("leaky").run({"text": "héllo"}, context, timeout_s=10)
    assert result.status == "ok", result
    value = result.value or {}
    assert value["arguments"] == {"text": "héllo"}
    assert value["context"] == {
        "correlation_id": "corr-1",
        "decision_id": "dec-1",
        "tenant_id": "tenant-a",
        "env": "dev",
        "data_label": "INTERNAL",
        "worker_id": "org.example.test",
        "tool": "test_tool",
        "workspace": "/tmp/ws",
        "deadline_s": 5.0,
    }
    assert value["cwd"] == str((FIXTURES / "leaky").resolve())


async def test_subprocess_progress_is_relayed_in_order() -> None:
    progress = _Progress()
    result = await _sub("progress").run({"steps": 6}, _context(), timeout_s=10, progress=progress)
    assert result.value == {"steps": 6}
    assert progress.reports == [(float(i), 6.0, f"step {i}") for i in range(1, 7)]


async def test_environment_is_minimal_and_client_secrets_do_not_leak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYHALL_TEST_SECRET", "s3cret")
    monkeypatch.setenv("MCP_CLIENT_TOKEN", "bearer-xyz")
    monkeypatch.setenv("HOME", "/home/someone")
    result = await _sub("leaky").run({}, _context(), timeout_s=10)
    env = (result.value or {})["env"]
    assert "s3cret" not in repr(result.value) and "bearer-xyz" not in repr(result.value)
    # the interpreter may add LC_CTYPE on its own; nothing of ours besides PATH
    assert set(env) - {"LC_CTYPE"} == {
        "PATH",
        "LANG",
        "LC_ALL",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
    }

    allowed = await _sub("leaky", env_allow=["PYHALL_TEST_SECRET"]).run(
        {}, _context(), timeout_s=10
    )
    env = (allowed.value or {})["env"]
    assert env["PYHALL_TEST_SECRET"] == "s3cret"
    assert "MCP_CLIENT_TOKEN" not in env and "HOME" not in env


HOSTILE = [
    "; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    'a\nb\r\n{{"result": {{}}}}',
    "../../etc/passwd",
    "-rf",
    "--help",
    "| touch {canary}",
    "\u202e\u0000 nul",
]


async def test_hostile_argument_strings_reach_the_worker_as_inert_data(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    arguments = {f"s{i}": s.format(canary=canary) for i, s in enumerate(HOSTILE)}
    result = await _sub("leaky").run(arguments, _context(), timeout_s=10)
    assert result.status == "ok"
    assert (result.value or {})["arguments"] == arguments
    assert (result.value or {})["argv"][1:] == []
    assert not canary.exists()


async def test_a_worker_that_ignores_stdin_still_answers() -> None:
    big = {"blob": "z" * 300_000}  # larger than a pipe buffer
    result = await _sub("leaky", "skip_stdin").run(big, _context(), timeout_s=10)
    assert (result.status, result.value) == ("ok", {"skipped": True})


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("raise", "worker crashed (exit status 1)"),
        ("exit1", "worker crashed (exit status 1)"),
        ("signal", "worker crashed (killed by SIGKILL)"),
        ("silent", "worker exited without a result"),
        ("result_then_exit3", "worker crashed (exit status 3)"),
        ("garbage", "worker wrote invalid output"),
        ("nonobject", "worker wrote invalid output"),
        ("nan", "worker wrote invalid output"),
        ("unknown_key", "worker wrote invalid output"),
        ("bad_progress", "worker wrote invalid output"),
        ("error", "bad input: try again"),
    ],
)
async def test_a_misbehaving_worker_is_an_error_result_with_a_safe_message(
    mode: str, message: str
) -> None:
    result = await _sub("crasher").run({"mode": mode}, _context(), timeout_s=10)
    assert (result.status, result.error, result.value) == ("error", message, None)
    assert "Traceback" not in (result.error or "")
    assert "/srv/hall" not in (result.error or "")


async def test_a_crash_traceback_stays_in_the_log_tail() -> None:
    result = await _sub("crasher").run({"mode": "raise"}, _context(), timeout_s=10)
    assert "Traceback" in result.stderr_tail and "/srv/hall/private" in result.stderr_tail


async def test_a_last_line_without_newline_counts() -> None:
    result = await _sub("crasher").run({"mode": "no_newline"}, _context(), timeout_s=10)
    assert (result.status, result.value) == ("ok", {"ok": True})


async def test_an_oversize_line_is_an_error() -> None:
    runner = _sub("oversize", max_line_bytes=10_000)
    fits = await runner.run({"mode": "line", "size": 5_000}, _context(), timeout_s=10)
    too_big = await runner.run({"mode": "line", "size": 50_000}, _context(), timeout_s=10)
    assert fits.status == "ok"
    assert (too_big.status, too_big.error) == ("error", "worker output too large")


async def test_endless_output_is_cut_and_the_worker_killed() -> None:
    runner = _sub("oversize", max_output_bytes=200_000)
    started = time.monotonic()
    result = await runner.run({"mode": "flood"}, _context(), timeout_s=10, progress=_Progress())
    assert (result.status, result.error) == ("error", "worker output too large")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("ignore_term", [False, True])
async def test_timeout_kills_the_whole_process_group(ignore_term: bool) -> None:
    progress = _Progress()
    runner = _sub("hanger", kill_grace_s=0.2)
    started = time.monotonic()
    result = await runner.run(
        {"ignore_term": ignore_term}, _context(), timeout_s=1.0, progress=progress
    )
    assert result.status == "timeout"
    assert result.error == "worker timed out after 1 s"
    assert time.monotonic() - started < 4
    leader, grandchild = _pids(progress)
    assert not Path(f"/proc/{leader}").exists(), "the worker was not reaped"
    await _assert_dead(grandchild)


async def test_cancellation_kills_the_group_and_reaps_the_worker() -> None:
    progress = _Progress()
    runner = _sub("hanger", kill_grace_s=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: runner.run({}, _context(), timeout_s=30, progress=progress))
        with anyio.fail_after(10):
            await progress.first.wait()
        tg.cancel_scope.cancel()
    leader, grandchild = _pids(progress)
    assert not Path(f"/proc/{leader}").exists(), "the worker was not reaped"
    await _assert_dead(grandchild)


async def test_children_left_behind_after_a_normal_exit_are_killed() -> None:
    progress = _Progress()
    started = time.monotonic()
    result = await _sub("hanger").run({"orphan": True}, _context(), timeout_s=10, progress=progress)
    assert result.status == "ok"
    assert time.monotonic() - started < 5  # did not wait for the grandchild's pipes until timeout
    _, grandchild = _pids(progress)
    assert result.value == {"left_behind": grandchild}
    await _assert_dead(grandchild)


async def test_a_child_that_escaped_the_group_cannot_hold_the_call_until_timeout() -> None:
    progress = _Progress()
    result = await _sub("hanger").run(
        {"orphan": True, "escape": True}, _context(), timeout_s=20, progress=progress
    )
    _, grandchild = _pids(progress)
    try:
        # a process in its own session is out of a process-group kill's reach: the runner
        # only stops waiting for the pipes it holds open
        assert result.status == "ok"
        assert result.duration_us < 10_000_000
    finally:
        os.kill(grandchild, signal.SIGKILL)


async def test_a_hanging_worker_does_not_block_other_calls() -> None:
    hanger_progress = _Progress()
    finished: list[str] = []
    results: dict[str, WorkerResult] = {}

    async def call(name: str, runner: Any, arguments: dict[str, Any], **kw: Any) -> None:
        results[name] = await runner.run(arguments, _context(), **kw)
        finished.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: call("hanger", _sub("hanger"), {}, timeout_s=20, progress=hanger_progress)
        )
        tg.start_soon(
            lambda: call("sleeper", _py("pyfuncs:sync_sleep"), {"seconds": 1.0}, timeout_s=20)
        )
        with anyio.fail_after(10):
            await hanger_progress.first.wait()
            await call("echo", _sub("leaky"), {"x": 1}, timeout_s=10)
            await call("greet", _py("pyfuncs:async_echo"), {"y": 2}, timeout_s=10)
        assert finished[:2] == ["echo", "greet"]
        assert results["echo"].status == results["greet"].status == "ok"
        tg.cancel_scope.cancel()
    assert "hanger" not in finished


async def test_a_fault_in_the_runner_itself_is_still_an_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken_drain(self: Any, stream: Any) -> None:
        raise OSError("pipe trouble at /internal/path")

    monkeypatch.setattr("pyhall_mcp.runners._StderrTail.drain", broken_drain)
    result = await _sub("leaky").run({}, _context(), timeout_s=10)
    assert (result.status, result.error) == ("error", "worker failed")
    assert "pipe trouble" in result.stderr_tail


async def test_a_program_that_vanished_is_an_error_result(tmp_path: Path) -> None:
    program = tmp_path / "tool.sh"
    program.write_text("#!/bin/sh\necho '{\"result\": {}}'\n")
    program.chmod(0o755)
    runner = SubprocessRunner(["./tool.sh"], tmp_path)
    assert (await runner.run({}, _context(), timeout_s=10)).status == "ok"
    program.unlink()
    result = await runner.run({}, _context(), timeout_s=10)
    assert (result.status, result.error) == ("error", "worker could not be started")


# --------------------------------------------------------------------------- build_runner


def test_build_runner_builds_both_kinds() -> None:
    python = build_runner({"kind": "python", "entry": "pyfuncs:sync_echo"}, FIXTURES / "pyfuncs")
    assert isinstance(python, PythonRunner)
    sub = build_runner(
        {"kind": "subprocess", "argv": ["{python}", "leaky.py"], "env_allow": ["HOME"]},
        FIXTURES / "leaky",
    )
    assert isinstance(sub, SubprocessRunner)
    assert sub.argv[0] == sys.executable
    assert sub.env_allow == ("HOME",)


@pytest.mark.parametrize(
    ("spec", "location"),
    [
        (["python"], "runner"),
        ({"entry": "x:run"}, "runner.kind"),
        ({"kind": "shell", "command": "ls"}, "runner.kind"),
        ({"kind": "python", "entry": "pyfuncs:sync_echo", "timeout": 3}, "runner.timeout"),
        ({"kind": "python"}, "runner.entry"),
        ({"kind": "subprocess"}, "runner.argv"),
        ({"kind": "subprocess", "argv": "python worker.py"}, "runner.argv"),
        ({"kind": "subprocess", "argv": []}, "runner.argv"),
        ({"kind": "subprocess", "argv": ["{python}", 3]}, "runner.argv"),
        ({"kind": "subprocess", "argv": ["{python}", "a\0b"]}, "runner.argv"),
        ({"kind": "subprocess", "argv": ["no-such-program-pyhall"]}, "runner.argv"),
        ({"kind": "subprocess", "argv": ["./missing.sh"]}, "runner.argv"),
        ({"kind": "subprocess", "argv": ["{python}"], "env_allow": "HOME"}, "runner.env_allow"),
        ({"kind": "subprocess", "argv": ["{python}"], "env_allow": ["A-B"]}, "runner.env_allow"),
    ],
)
def test_build_runner_refuses_an_invalid_spec_naming_the_field(spec: Any, location: str) -> None:
    with pytest.raises(RegistryError) as caught:
        build_runner(spec, FIXTURES / "pyfuncs")
    assert caught.value.location == location
    assert caught.value.file == str(FIXTURES / "pyfuncs" / "worker.yaml")
    assert caught.value.fix


# -- the Landlock sandbox ------------------------------------------------------------------

needs_landlock = pytest.mark.skipif(not landlock_abi(), reason="the kernel has no Landlock")


def _sandbox_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    allowed, out, elsewhere = tmp_path / "allowed", tmp_path / "out", tmp_path / "elsewhere"
    for directory in (allowed, out, elsewhere):
        directory.mkdir()
    (allowed / "a.txt").write_text("a")
    (elsewhere / "secret.txt").write_text("s")
    (allowed / "link.txt").symlink_to(elsewhere / "secret.txt")  # leads out
    return allowed, out, elsewhere


async def _probe(
    runner: SubprocessRunner, read: list[Path], write: list[Path], **more: list[Path]
) -> dict:
    arguments = {"read": [str(p) for p in read], "write": [str(p) for p in write]}
    arguments |= {action: [str(p) for p in paths] for action, paths in more.items()}
    result = await runner.run(arguments, _context(), timeout_s=20)
    assert result.status == "ok", result.error
    return {Path(k).name: v for k, v in result.value.items()}


@needs_landlock
async def test_a_sandboxed_worker_reaches_only_its_envelope(tmp_path: Path) -> None:
    allowed, out, elsewhere = _sandbox_dirs(tmp_path)
    runner = _sub("prober", sandbox="landlock", reads=[str(allowed)], writes=[str(out)])
    seen = await _probe(
        runner,
        read=[allowed / "a.txt", allowed / "link.txt", elsewhere / "secret.txt"],
        write=[out / "new.txt", allowed / "b.txt", elsewhere / "c.txt"],
    )
    assert seen == {
        "a.txt": "read",
        "link.txt": "refused:13",  # the kernel follows the link out, and refuses
        "secret.txt": "refused:13",
        "new.txt": "written",
        "b.txt": "refused:13",
        "c.txt": "refused:13",
    }


@needs_landlock
async def test_a_sandboxed_worker_cannot_truncate_or_make_devices_and_may_use_dev_null(
    tmp_path: Path,
) -> None:
    allowed, out, elsewhere = _sandbox_dirs(tmp_path)
    runner = _sub("prober", sandbox="landlock", reads=[str(allowed)], writes=[str(out)])
    seen = await _probe(
        runner,
        read=[],
        write=[Path("/dev/null")],
        truncate=[elsewhere / "secret.txt"],
        mknod=[out / "device"],
    )
    assert seen["null"] == "written"
    assert seen["secret.txt"] == "refused:13" and (elsewhere / "secret.txt").read_text() == "s"
    assert seen["device"].startswith("refused:") and not (out / "device").exists()


@needs_landlock
async def test_a_sandboxed_worker_has_a_temporary_directory_of_its_own_for_the_call() -> None:
    runner = _sub("prober", sandbox="landlock")
    made = []
    for _ in range(2):
        result = await runner.run({"tempfile": True}, _context(), timeout_s=20)
        assert result.status == "ok", result.error
        made.append(Path(result.value["tempfile"]))
    assert all(p.parent.name.startswith("pyhall-worker-") for p in made)
    assert made[0].parent != made[1].parent  # one per call
    assert not any(p.parent.exists() for p in made)  # removed with what it held


@needs_landlock
async def test_a_sandboxed_calls_directory_is_removed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tempfile
    import threading

    removed_on: list[str] = []
    cleanup = tempfile.TemporaryDirectory.cleanup

    def recording(self: tempfile.TemporaryDirectory) -> None:
        removed_on.append(threading.current_thread().name)
        cleanup(self)

    monkeypatch.setattr(tempfile.TemporaryDirectory, "cleanup", recording)
    result = await _sub("prober", sandbox="landlock").run(
        {"tempfile": True}, _context(), timeout_s=20
    )
    assert result.status == "ok", result.error
    assert removed_on and threading.main_thread().name not in removed_on


@needs_landlock
@pytest.mark.parametrize(("tcp", "expected"), [(True, "read"), (False, "refused:13")])
async def test_a_sandboxed_worker_reads_name_resolution_files_only_with_egress(
    tcp: bool, expected: str
) -> None:
    hosts = Path("/etc/hosts")
    if not hosts.is_file():
        pytest.skip("no /etc/hosts here")
    seen = await _probe(_sub("prober", sandbox="landlock", tcp=tcp), read=[hosts], write=[])
    assert seen == {"hosts": expected}


def test_landlock_before_abi_3_is_no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyhall_mcp._landlock as landlock

    for abi, usable in ((0, 0), (1, 0), (2, 0), (3, 3), (7, 7)):
        monkeypatch.setattr(landlock, "abi_version", lambda abi=abi: abi)
        assert landlock_abi.__wrapped__() == usable


@needs_landlock
async def test_a_sandboxed_worker_without_egress_opens_no_tcp_connection() -> None:
    import socket

    if landlock_abi() < 4:
        pytest.skip("TCP rules need Landlock ABI 4")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        arguments = {"connect": [port]}
        for tcp, expected in ((False, "refused:13"), (True, "connected")):
            runner = _sub("prober", sandbox="landlock", tcp=tcp)
            result = await runner.run(arguments, _context(), timeout_s=20)
            assert result.value == {f"tcp:{port}": expected}, (tcp, result)


async def test_an_unsandboxed_worker_reaches_everything(tmp_path: Path) -> None:
    allowed, _, elsewhere = _sandbox_dirs(tmp_path)
    seen = await _probe(_sub("prober"), read=[elsewhere / "secret.txt"], write=[allowed / "b"])
    assert seen == {"secret.txt": "read", "b": "written"}


async def test_without_landlock_required_fails_and_auto_runs_unconfined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyhall_mcp.runners as runners

    monkeypatch.setattr(runners, "landlock_abi", lambda: 0)
    allowed, _, elsewhere = _sandbox_dirs(tmp_path)
    required = _sub("prober", sandbox="landlock", reads=[str(allowed)])
    failed = await required.run({"read": []}, _context(), timeout_s=20)
    assert failed.status == "error" and "no usable Landlock" in (failed.error or "")
    auto = _sub("prober", sandbox="auto", reads=[str(allowed)])
    assert await _probe(auto, read=[elsewhere / "secret.txt"], write=[]) == {"secret.txt": "read"}


def test_sandbox_settings_are_checked_at_load() -> None:
    with pytest.raises(RegistryError) as caught:
        build_runner({"kind": "subprocess", "argv": ["{python}", "-V"], "sandbox": "yes"}, FIXTURES)
    assert "runner.sandbox" in caught.value.describe()
    with pytest.raises(RegistryError) as caught:
        build_runner({"kind": "python", "entry": "pyfuncs:sync_echo", "sandbox": "auto"}, FIXTURES)
    assert "runner.sandbox" in caught.value.describe()
