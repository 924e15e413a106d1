"""How a worker executes: one small interface, two kinds.

A runner turns ``(arguments, context)`` into a :class:`WorkerResult`. It never
raises for anything a worker does (crash, hang, garbage, oversize output): that
becomes a result with a message safe to show a client. Only cancellation
propagates, and only after any process the call started is dead and reaped.

- :class:`PythonRunner` calls ``module:function`` from the worker's directory,
  sync functions in a worker thread, async ones on the event loop.
- :class:`SubprocessRunner` runs an argv list (no shell) in its own process
  group with a minimal environment, speaking JSON Lines over stdin/stdout.

The worker sees a :class:`WorkerContext` and nothing else of the call: never
the client's credentials, never our environment.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from pyhall_mcp import _landlock
from pyhall_mcp.errors import RegistryError, WorkerError

__all__ = [
    "DEFAULT_KILL_GRACE_S",
    "MAX_LINE_BYTES",
    "MAX_OUTPUT_BYTES",
    "ProgressFn",
    "PythonRunner",
    "Runner",
    "Sandbox",
    "SubprocessRunner",
    "WorkerContext",
    "WorkerResult",
    "WorkerStatus",
    "build_runner",
    "landlock_abi",
]

_log = logging.getLogger(__name__)

#: Largest single stdout line (the result line) or Python result, encoded.
MAX_LINE_BYTES = 1024 * 1024
#: Largest total stdout of one subprocess call, progress lines included.
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
#: Time between SIGTERM and SIGKILL to a worker's process group.
DEFAULT_KILL_GRACE_S = 0.5

_STDERR_TAIL_BYTES = 8 * 1024
_MAX_MESSAGE_CHARS = 1000
_PIPE_DRAIN_S = 1.0  # after the worker exits, how long its pipes may take to reach EOF
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENTRY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):([A-Za-z_][A-Za-z0-9_]*)")
_PYTHON = "{python}"
_module_ids = itertools.count(1)

WorkerStatus = Literal["ok", "error", "timeout", "cancelled"]
#: How a subprocess worker is confined: not at all, by Landlock where the kernel has it,
#: or by Landlock without fail.
Sandbox = Literal["none", "auto", "landlock"]
_NO_LANDLOCK = "this worker must run sandboxed, and the kernel has no usable Landlock (ABI 3+)"


@dataclass(frozen=True)
class WorkerContext:
    """What a worker may know about the call: never the client's credentials."""

    correlation_id: str
    decision_id: str
    tenant_id: str
    env: str
    data_label: str
    worker_id: str
    tool: str
    workspace: str | None  # absolute path of the hall's workspace; file workers confine to it
    deadline_s: float | None


class ProgressFn(Protocol):
    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


@dataclass
class WorkerResult:
    """The outcome of one call.

    ``error`` is safe to show a client (no traceback, no path of ours);
    ``stderr_tail`` is for logs only. Runners never return ``"cancelled"``
    (cancellation propagates); the status exists for the hall's outcome record.
    """

    status: WorkerStatus
    value: dict[str, Any] | None
    error: str | None
    duration_us: int
    stderr_tail: str = ""


class Runner(Protocol):
    async def run(
        self,
        arguments: Mapping[str, Any],
        context: WorkerContext,
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> WorkerResult: ...


# --------------------------------------------------------------------------- shared pieces


def _elapsed_us(started_ns: int) -> int:
    return (time.perf_counter_ns() - started_ns) // 1000


def _failure(
    status: WorkerStatus, started_ns: int, error: str, stderr_tail: str = ""
) -> WorkerResult:
    return WorkerResult(status, None, error, _elapsed_us(started_ns), stderr_tail)


def _timeout_message(timeout_s: float) -> str:
    return f"worker timed out after {timeout_s:g} s"


def _progress_args(
    progress: Any, total: Any, message: Any
) -> tuple[float, float | None, str | None]:
    """Check one progress report; ``ValueError`` if it is not numbers and text."""

    def number(value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError("progress and total must be finite numbers")
        return float(value)

    if message is not None and not isinstance(message, str):
        raise ValueError("progress message must be a string")
    if message is not None:
        message = message[:_MAX_MESSAGE_CHARS]
    return number(progress), None if total is None else number(total), message


async def _relay_progress(
    progress: ProgressFn | None, value: float, total: float | None, message: str | None
) -> None:
    """Progress is advisory: a failure to deliver it never fails the call."""
    if progress is None:
        return
    try:
        await progress(value, total, message)
    except Exception:
        _log.warning("progress notification failed", exc_info=True)


def _invalid(message: str, *, source: str | None, location: str, fix: str) -> RegistryError:
    return RegistryError(message, file=source, location=location, fix=fix)


# --------------------------------------------------------------------------- python callables


class _CallAbandoned(BaseException):
    """Raised inside an abandoned sync worker at its next progress report.

    A BaseException so that a worker's ``except Exception`` does not keep it alive.
    """


class _ProgressGate:
    """The ``progress`` a Python worker receives; closed once the call is over."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self._progress = progress
        self._open = True

    def close(self) -> None:
        self._open = False

    async def report(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        args = _progress_args(progress, total, message)
        if self._open:
            await _relay_progress(self._progress, *args)

    def report_from_thread(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        args = _progress_args(progress, total, message)
        if not self._open:
            raise _CallAbandoned
        try:
            anyio.from_thread.run(self.report, *args)
        except Exception:
            # the event loop is gone or the call ended meanwhile: nothing to tell
            _log.debug("progress from worker thread dropped", exc_info=True)


@dataclass(frozen=True)
class _Callable:
    fn: Callable[..., Any]
    is_async: bool
    takes_progress: bool


class PythonRunner(Runner):
    """Call ``module:function`` from ``worker_dir/module.py``.

    The module is one file, executed once per runner under a unique module name
    (two workers' ``worker.py`` never clash) without writing bytecode next to it
    (the worker's directory is attested). The function is called as
    ``function(arguments, context)`` or, when it takes a third parameter,
    ``function(arguments, context, progress)`` where ``progress(n, total=None,
    message=None)`` is a plain callable for sync functions and a coroutine
    function for async ones. It returns a JSON object; it raises
    :class:`~pyhall_mcp.errors.WorkerError` to fail with a message for the client.

    Sync functions run in a worker thread. A thread cannot be killed: on timeout
    or cancellation it is abandoned (it stops at its next progress report, if it
    makes one) and keeps running until it returns. Async functions run on the
    event loop and must not block it. Workers that may hang for real belong in a
    :class:`SubprocessRunner`.
    """

    def __init__(
        self,
        worker_dir: Path,
        entry: str,
        *,
        max_result_bytes: int = MAX_LINE_BYTES,
        source: str | None = None,
    ) -> None:
        match = _ENTRY.fullmatch(entry) if isinstance(entry, str) else None
        if match is None:
            raise _invalid(
                f"entry {entry!r} is not 'module:function'",
                source=source,
                location="runner.entry",
                fix='name a module file of the worker directory and a function, e.g. "worker:run"',
            )
        self.worker_dir = Path(worker_dir).resolve()
        self.module_name, self.function_name = match.groups()
        self.path = self.worker_dir / f"{self.module_name}.py"
        if not self.path.is_file():
            raise _invalid(
                f"entry module {self.module_name}.py not found in the worker directory",
                source=source,
                location="runner.entry",
                fix=f"add {self.module_name}.py next to worker.yaml or correct the entry",
            )
        self._source = source
        self._max_result_bytes = max_result_bytes
        self._callable: _Callable | None = None

    def load(self) -> None:
        """Execute the module and check the function; :class:`RegistryError` if unusable."""
        if self._callable is None:
            self._callable = self._load()

    def _load(self) -> _Callable:
        name = f"_pyhall_worker_{next(_module_ids)}_{self.module_name}"
        module = types.ModuleType(name)
        module.__file__ = str(self.path)
        sys.modules[name] = module  # some stdlib code (dataclasses, pickle) looks modules up
        try:
            code = compile(self.path.read_bytes(), str(self.path), "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except (Exception, SystemExit) as exc:
            del sys.modules[name]
            raise _invalid(
                f"module {self.module_name}.py failed to load: {type(exc).__name__}: {exc}",
                source=self._source,
                location="runner.entry",
                fix="fix the worker module so that it imports cleanly",
            ) from exc
        fn = getattr(module, self.function_name, None)
        if not callable(fn):
            raise _invalid(
                f"{self.module_name}.py has no function {self.function_name!r}",
                source=self._source,
                location="runner.entry",
                fix="define it or correct the entry",
            )
        takes_progress = _check_signature(fn, self._source)
        # a function, or an object whose __call__ is async
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
        return _Callable(fn, is_async, takes_progress)

    async def run(
        self,
        arguments: Mapping[str, Any],
        context: WorkerContext,
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> WorkerResult:
        started = time.perf_counter_ns()
        try:
            self.load()
        except RegistryError as exc:
            return _failure("error", started, "worker could not be loaded", exc.describe())
        call = self._callable
        assert call is not None
        # a private copy: the worker must not mutate what the receipt hashed
        args = copy.deepcopy(dict(arguments))
        gate = _ProgressGate(progress)
        value: Any = None
        try:
            with anyio.move_on_after(timeout_s) as scope:
                if call.is_async:
                    extra = (gate.report,) if call.takes_progress else ()
                    value = await call.fn(args, context, *extra)
                else:
                    extra = (gate.report_from_thread,) if call.takes_progress else ()
                    value = await anyio.to_thread.run_sync(
                        call.fn, args, context, *extra, abandon_on_cancel=True
                    )
        except WorkerError as exc:
            return _failure("error", started, str(exc)[:_MAX_MESSAGE_CHARS] or "worker failed")
        except Exception as exc:
            tail = "".join(traceback.format_exception(exc))[-_STDERR_TAIL_BYTES:]
            return _failure("error", started, f"worker failed ({type(exc).__name__})", tail)
        finally:
            gate.close()
        if scope.cancelled_caught:
            return _failure("timeout", started, _timeout_message(timeout_s))
        return self._finish(value, started)

    def _finish(self, value: Any, started: int) -> WorkerResult:
        """Normalise the value to plain JSON data, as a subprocess worker's would be."""
        if not isinstance(value, dict):
            return _failure("error", started, "worker returned an invalid result")
        try:
            encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure("error", started, "worker returned an invalid result", repr(exc))
        if len(encoded.encode()) > self._max_result_bytes:
            return _failure("error", started, "worker output too large")
        return WorkerResult("ok", json.loads(encoded), None, _elapsed_us(started))


def _check_signature(fn: Callable[..., Any], source: str | None) -> bool:
    """Whether ``fn`` takes ``progress``; :class:`RegistryError` if it cannot take two args."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False  # builtins without a signature: call with two arguments
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    star = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    if (len(positional) < 2 and not star) or len(required) > 3:
        raise _invalid(
            f"{getattr(fn, '__name__', fn)!r} must accept (arguments, context[, progress])",
            source=source,
            location="runner.entry",
            fix="give it the parameters (arguments, context) or (arguments, context, progress)",
        )
    return len(positional) >= 3 or star


# --------------------------------------------------------------------------- subprocesses


class _StdoutProtocol:
    """Reads a worker's JSON Lines: progress lines, then one result or error line."""

    def __init__(self, progress: ProgressFn | None, max_line: int, max_total: int) -> None:
        self._progress = progress
        self._max_line = max_line
        self._max_total = max_total
        self.terminal: dict[str, Any] | None = None
        self.violation: str | None = None

    async def read(self, stream: ByteReceiveStream, on_violation: Callable[[], None]) -> None:
        buffer = bytearray()
        total = 0
        try:
            async for chunk in stream:
                total += len(chunk)
                scan_from = len(buffer)
                buffer += chunk
                if total > self._max_total:
                    self._fail("worker output too large", on_violation)
                    return
                while (newline := buffer.find(b"\n", scan_from)) >= 0:
                    line = bytes(buffer[:newline])
                    del buffer[: newline + 1]
                    scan_from = 0
                    if len(line) > self._max_line:
                        self._fail("worker output too large", on_violation)
                        return
                    if await self._line(line, on_violation):
                        return
                if len(buffer) > self._max_line:
                    self._fail("worker output too large", on_violation)
                    return
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        if buffer.strip():  # a last line without its newline
            await self._line(bytes(buffer), on_violation)

    async def _line(self, line: bytes, on_violation: Callable[[], None]) -> bool:
        """Handle one line; True once nothing more is to be read."""
        if not line.strip():
            return False
        try:
            doc = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return self._fail("worker wrote invalid output", on_violation)
        if (
            isinstance(doc, dict)
            and "progress" in doc
            and set(doc) <= {"progress", "total", "message"}
        ):
            try:
                args = _progress_args(doc["progress"], doc.get("total"), doc.get("message"))
            except ValueError:
                return self._fail("worker wrote invalid output", on_violation)
            await _relay_progress(self._progress, *args)
            return False
        if (
            isinstance(doc, dict)
            and len(doc) == 1
            and (isinstance(doc.get("result"), dict) or isinstance(doc.get("error"), str))
        ):
            self.terminal = doc
            return True
        return self._fail("worker wrote invalid output", on_violation)

    def _fail(self, message: str, on_violation: Callable[[], None]) -> bool:
        self.violation = message
        on_violation()
        return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _StderrTail:
    def __init__(self, limit: int = _STDERR_TAIL_BYTES) -> None:
        self._limit = limit
        self._data = bytearray()

    async def drain(self, stream: ByteReceiveStream) -> None:
        try:
            async for chunk in stream:
                self._data += chunk
                del self._data[: -self._limit]
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def text(self) -> str:
        return self._data.decode("utf-8", errors="replace")


async def _feed(stream: ByteSendStream, payload: bytes) -> None:
    """Write the request and close stdin; a worker that does not read it is its business."""
    try:
        await stream.send(payload)
        await stream.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, signum)


async def _terminate(process: Process, grace_s: float) -> None:
    """Kill the worker's whole process group and reap the worker. Call shielded."""
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        with anyio.move_on_after(grace_s):
            await process.wait()
    # Always: the worker may be gone while children it started linger in its group.
    _signal_group(process.pid, signal.SIGKILL)
    await process.aclose()


def _minimal_path() -> str:
    return os.environ.get("PATH") or os.defpath


class SubprocessRunner(Runner):
    """Run ``argv`` (no shell) in its own process group, speaking JSON Lines.

    stdin receives one document ``{"arguments": ..., "context": {...}}`` and is
    closed. stdout carries zero or more ``{"progress": n, "total": m, "message":
    "..."}`` lines (relayed in order), then one ``{"result": {...}}`` or
    ``{"error": "message"}``. stderr is kept (a bounded tail) for logs.

    The environment is PATH, a UTF-8 C locale, no bytecode writing (the worker
    directory is attested), unbuffered Python output, plus the variables named in
    ``env_allow`` copied from ours; nothing else of ours. ``"{python}"`` in argv
    is this interpreter.

    Timeout and cancellation send SIGTERM to the whole process group, then
    SIGKILL after ``kill_grace_s``, and reap the worker; lingering members of the
    group are killed after a normal exit too.

    ``sandbox``: ``landlock`` runs the worker behind a Landlock ruleset (see
    ``_landlock``): it reads below ``reads``, its own directory and the runtime's,
    writes below ``writes``, and nothing else; without ``tcp`` it opens no TCP
    connection; where the kernel lacks Landlock the call fails. ``auto`` sandboxes
    where it can and runs unconfined elsewhere (the gateway says so at start).
    ``reads`` and ``writes`` are re-read at each call, so a symlinked directory
    counts where it points then.
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env_allow: Sequence[str] = (),
        *,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        source: str | None = None,
        sandbox: Sandbox = "none",
        reads: Sequence[str] = (),
        writes: Sequence[str] = (),
        tcp: bool = True,
    ) -> None:
        self.cwd = Path(cwd).resolve()
        if not self.cwd.is_dir():
            raise _invalid(
                "the worker directory does not exist",
                source=source,
                location="runner",
                fix="enroll the worker from an existing directory",
            )
        self.argv = _check_argv(argv, self.cwd, source)
        self.env_allow = _check_env_allow(env_allow, source)
        self.sandbox = sandbox
        self.reads, self.writes, self.tcp = tuple(reads), tuple(writes), tcp
        self._kill_grace_s = kill_grace_s
        self._max_line = max_line_bytes
        self._max_total = max_output_bytes

    def environment(self) -> dict[str, str]:
        """The whole environment a worker process gets."""
        env = {
            "PATH": _minimal_path(),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        for name in self.env_allow:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    async def run(
        self,
        arguments: Mapping[str, Any],
        context: WorkerContext,
        *,
        timeout_s: float,
        progress: ProgressFn | None = None,
    ) -> WorkerResult:
        started = time.perf_counter_ns()
        try:
            document = {"arguments": dict(arguments), "context": dataclasses.asdict(context)}
            payload = json.dumps(document, ensure_ascii=False, allow_nan=False).encode() + b"\n"
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure("error", started, "arguments are not JSON", repr(exc))
        if self.sandbox != "none" and (abi := landlock_abi()):
            return await self._run_sandboxed(abi, payload, started, timeout_s, progress)
        if self.sandbox == "landlock":
            return _failure("error", started, _NO_LANDLOCK, "")
        return await self._run_process(self.argv, payload, started, timeout_s, progress)

    async def _run_sandboxed(
        self,
        abi: int,
        payload: bytes,
        started: int,
        timeout_s: float,
        progress: ProgressFn | None,
    ) -> WorkerResult:
        """Run behind a Landlock ruleset, with a temporary directory of its own (it cannot
        reach /tmp), named in TMPDIR and removed with what it holds after the call."""
        scratch = tempfile.TemporaryDirectory(prefix="pyhall-worker-", ignore_cleanup_errors=True)
        try:
            ruleset = _landlock.build_ruleset(
                abi,
                [
                    *_landlock.runtime_directories(),
                    *(_landlock.NETWORK_READS if self.tcp else ()),
                    str(self.cwd),
                    *self.reads,
                ],
                [*_landlock.RUNTIME_WRITES, scratch.name, *self.writes],
                tcp=self.tcp,
            )
        except OSError as exc:
            scratch.cleanup()
            return _failure("error", started, "the worker's sandbox failed", repr(exc))
        launcher = [sys.executable, "-I", "-S", "-c", _landlock.LAUNCHER, str(ruleset)]
        try:
            return await self._run_process(
                [*launcher, *self.argv],
                payload,
                started,
                timeout_s,
                progress,
                ruleset,
                scratch.name,
            )
        finally:
            # In a thread: a worker may leave many files, and the loop serves other calls.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(scratch.cleanup)

    async def _run_process(
        self,
        argv: list[str],
        payload: bytes,
        started: int,
        timeout_s: float,
        progress: ProgressFn | None,
        ruleset: int | None = None,
        tmp: str | None = None,
    ) -> WorkerResult:
        """Run ``argv`` (behind the sandbox's launcher when ``ruleset`` is given)."""
        env = self.environment()
        if tmp is not None:
            env["TMPDIR"] = tmp
        try:
            process = await anyio.open_process(
                argv,
                cwd=self.cwd,
                env=env,
                start_new_session=True,  # its own process group, killed as one
                pass_fds=() if ruleset is None else (ruleset,),
            )
        except OSError as exc:
            return _failure("error", started, "worker could not be started", repr(exc))
        finally:
            if ruleset is not None:
                os.close(ruleset)

        protocol = _StdoutProtocol(progress, self._max_line, self._max_total)
        stderr = _StderrTail()
        returncode: int | None = None
        broken: Exception | None = None
        try:
            with anyio.move_on_after(timeout_s) as scope:
                returncode = await self._converse(process, payload, protocol, stderr)
        except Exception as exc:  # a fault of ours, not the worker's: still an answer
            broken = exc
        finally:
            with anyio.CancelScope(shield=True):
                await _terminate(process, self._kill_grace_s)

        tail = stderr.text()
        if broken is not None:
            return _failure("error", started, "worker failed", f"{tail}\n{broken!r}")
        if protocol.violation is not None:
            return _failure("error", started, protocol.violation, tail)
        if scope.cancelled_caught:
            return _failure("timeout", started, _timeout_message(timeout_s), tail)
        terminal = protocol.terminal or {}
        if "error" in terminal:
            message = terminal["error"][:_MAX_MESSAGE_CHARS] or "worker failed"
            return _failure("error", started, message, tail)
        if returncode == 0 and "result" in terminal:
            return WorkerResult("ok", terminal["result"], None, _elapsed_us(started), tail)
        if ruleset is not None and returncode == _landlock.LAUNCHER_FAILED and not terminal:
            return _failure("error", started, "the worker's sandbox could not be applied", tail)
        return _failure("error", started, _exit_message(returncode, "result" in terminal), tail)

    async def _converse(
        self,
        process: Process,
        payload: bytes,
        protocol: _StdoutProtocol,
        stderr: _StderrTail,
    ) -> int | None:
        """Feed stdin, read stdout and stderr, wait for exit; None on a protocol violation."""
        assert process.stdin and process.stdout and process.stderr
        returncode: int | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_feed, process.stdin, payload)
            tg.start_soon(stderr.drain, process.stderr)
            tg.start_soon(protocol.read, process.stdout, tg.cancel_scope.cancel)
            returncode = await process.wait()
            # Leftover members of the group would hold the pipes open: kill them, and
            # do not wait forever for a process that escaped the group.
            _signal_group(process.pid, signal.SIGKILL)
            tg.cancel_scope.deadline = anyio.current_time() + _PIPE_DRAIN_S
        return returncode


def _exit_message(returncode: int | None, had_result: bool) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"worker crashed (killed by {name})"
    if returncode:
        return f"worker crashed (exit status {returncode})"
    return "worker exited without a result" if not had_result else "worker failed"


def _check_argv(argv: Any, cwd: Path, source: str | None) -> list[str]:
    def bad(message: str) -> RegistryError:
        return _invalid(
            message,
            source=source,
            location="runner.argv",
            fix='give a list of strings, the program first, e.g. ["{python}", "worker.py"]',
        )

    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence) or not argv:
        raise bad("argv must be a non-empty list")
    if not all(isinstance(arg, str) and arg and "\0" not in arg for arg in argv):
        raise bad("argv items must be non-empty strings without NUL")
    resolved = [sys.executable if arg == _PYTHON else arg for arg in argv]
    program = argv[0]
    if program == _PYTHON:
        return resolved
    if "/" in program:
        path = (cwd / program).resolve()
        found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
    else:
        found = shutil.which(program, path=_minimal_path())
    if found is None:
        raise bad(f"program {program!r} is not an executable file")
    return [found, *resolved[1:]]


def _check_env_allow(env_allow: Any, source: str | None) -> tuple[str, ...]:
    if isinstance(env_allow, list | tuple) and all(
        isinstance(name, str) and _IDENT.fullmatch(name) for name in env_allow
    ):
        return tuple(env_allow)
    raise _invalid(
        "env_allow must be a list of environment variable names",
        source=source,
        location="runner.env_allow",
        fix="list names such as HOME; values are copied from the gateway's environment",
    )


# --------------------------------------------------------------------------- from worker.yaml

_SPEC_KEYS = {"python": {"kind", "entry"}, "subprocess": {"kind", "argv", "env_allow", "sandbox"}}
_SANDBOXES: tuple[Sandbox, ...] = ("none", "auto", "landlock")


def build_runner(
    spec: Mapping[str, Any],
    worker_dir: Path,
    *,
    source: str | None = None,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
    tcp: bool = True,
) -> Runner:
    """The runner a ``worker.yaml`` ``runner:`` block describes.

    ``{kind: python, entry: "module:function"}`` or ``{kind: subprocess, argv:
    ["{python}", "worker.py"], env_allow: [...], sandbox: none|auto|landlock}``.
    ``reads``/``writes``: the directories a sandboxed worker may use (its privilege
    envelope's, as absolute paths); ``tcp``: whether it may use TCP (its envelope
    names egress). Raises :class:`RegistryError` naming the field
    and the fix; ``source`` names the file in it (default ``worker_dir/worker.yaml``).
    """
    source = source or str(Path(worker_dir) / "worker.yaml")
    if not isinstance(spec, Mapping):
        raise _invalid(
            "runner must be a mapping",
            source=source,
            location="runner",
            fix='e.g. runner: {kind: python, entry: "worker:run"}',
        )
    kind = spec.get("kind")
    if kind not in _SPEC_KEYS:
        raise _invalid(
            f"unknown runner kind {kind!r}",
            source=source,
            location="runner.kind",
            fix="use kind: python or kind: subprocess",
        )
    unknown = sorted(str(key) for key in spec if key not in _SPEC_KEYS[kind])
    if unknown:
        raise _invalid(
            f"unknown field(s) {', '.join(unknown)} for a {kind} runner",
            source=source,
            location=f"runner.{unknown[0]}",
            fix=f"a {kind} runner takes only {', '.join(sorted(_SPEC_KEYS[kind]))}",
        )
    if kind == "python":
        return PythonRunner(Path(worker_dir), spec.get("entry"), source=source)  # type: ignore[arg-type]
    sandbox = spec.get("sandbox", "none")
    if sandbox not in _SANDBOXES:
        raise _invalid(
            f"unknown sandbox {sandbox!r}",
            source=source,
            location="runner.sandbox",
            fix="use none, auto (Landlock where the kernel has it) or landlock (required)",
        )
    return SubprocessRunner(
        spec.get("argv"),  # type: ignore[arg-type]
        Path(worker_dir),
        spec.get("env_allow", ()),
        source=source,
        sandbox=sandbox,
        reads=reads,
        writes=writes,
        tcp=tcp,
    )


@functools.cache
def landlock_abi() -> int:
    """The kernel's Landlock ABI version, asked once per process; 0 when there is none
    the sandbox can use (before ABI 3, Linux 6.2, Landlock cannot refuse truncation)."""
    abi = _landlock.abi_version()
    return abi if abi >= _landlock.MIN_ABI else 0
