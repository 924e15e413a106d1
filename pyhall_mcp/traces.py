"""Recorded MCP sessions: record a real client's session, replay it as a regression test.

A trace is JSON Lines (see ``traces/README.md``): a header line, then one frame
per line, ``{"dir": "c2s"|"s2c", "t_ms": ..., "msg": {...}}`` (``"raw"`` for a
line that was not JSON, ``"dir": "step"`` for a change to the hall made during
the session).

- :func:`record` is a transparent stdio relay: it runs the server command,
  passes every line through byte for byte and writes the frames.
- :func:`replay` starts ``python -m pyhall_mcp`` on a temporary copy of the
  hall, sends the client frames and checks the server frames after masking
  what varies between runs (ids, timestamps, durations, hashes of those),
  learning the live values the client has to send back.

Matching: a response is matched to the expected frame by its JSON-RPC id, a
server-initiated request and a notification in order within its stream
(server requests; progress per token; other notifications per method). A
client frame is sent only once every server frame recorded before it has
arrived; progress for a request must arrive before that request's response.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import difflib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from .errors import ConfigError

__all__ = [
    "C2S",
    "S2C",
    "STEP",
    "TRACE_FORMAT",
    "Frame",
    "Mismatch",
    "ReplayResult",
    "Trace",
    "copy_hall",
    "mask",
    "record",
    "record_gateway",
    "replay",
]

TRACE_FORMAT = 1
C2S: Literal["c2s"] = "c2s"
S2C: Literal["s2c"] = "s2c"
STEP: Literal["step"] = "step"
Direction = Literal["c2s", "s2c", "step"]

#: The longest a replay waits for one expected server frame.
DEFAULT_TIMEOUT_S = 20.0
#: Added to the timeout of the first server frame: the gateway's cold start.
STARTUP_ALLOWANCE_S = 30.0
#: Replays keep the recorded gap before a client frame, up to this long.
PACE_CAP_S = 0.5
#: After stdin closes, how long the gateway may take to exit before it is killed.
_EXIT_GRACE_S = 5.0

_GATEWAY_MODULES = ("pyhall_mcp", "pyhall_mcp.gateway")
#: Gateway options that name this machine's paths: replays choose their own.
_PATH_OPTIONS = ("--hall", "--state-dir", "--record")
#: Launch variables never written to a trace (paths of this machine, secrets).
_UNRECORDED_ENV = ("PYHALL_HALL", "PYHALL_STATE_DIR", "PYHALL_TENANT_CREDENTIAL")
#: What a hall directory consists of, besides what hall.yaml names.
_HALL_PARTS = ("hall.yaml", "rules", "policies", "workers", "keys", "workspace")
_CLI = "import sys; from pyhall_mcp.cli import main; sys.exit(main())"
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", ".pyhall", ".git", "*.pyc")


# -- the format ---------------------------------------------------------------------------


@dataclass
class Frame:
    """One line of a trace after the header."""

    dir: Direction
    t_ms: int
    msg: Any = None
    raw: str | None = None
    step: dict[str, Any] | None = None

    @classmethod
    def from_line(cls, direction: Direction, t_ms: int, line: bytes) -> Frame:
        """A frame for one line seen on the wire (the newline already removed or not)."""
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        try:
            return cls(direction, t_ms, msg=json.loads(text))
        except ValueError:
            return cls(direction, t_ms, raw=text)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"dir": self.dir, "t_ms": self.t_ms}
        if self.step is not None:
            doc["step"] = self.step
        elif self.raw is not None:
            doc["raw"] = self.raw
        else:
            doc["msg"] = self.msg
        return doc

    @classmethod
    def from_json(cls, doc: Any, *, file: str, line: int) -> Frame:
        def bad(message: str) -> ConfigError:
            return ConfigError(
                message,
                file=file,
                location=f"line {line}",
                fix='a frame is {"dir": "c2s"|"s2c"|"step", "t_ms": int, "msg"|"raw"|"step": ...}',
            )

        if not isinstance(doc, dict):
            raise bad("a frame must be a JSON object")
        direction = doc.get("dir")
        if direction not in (C2S, S2C, STEP):
            raise bad(f"unknown direction {direction!r}")
        t_ms = doc.get("t_ms", 0)
        if isinstance(t_ms, bool) or not isinstance(t_ms, int):
            raise bad("t_ms must be an integer")
        payload = [key for key in ("msg", "raw", "step") if key in doc]
        if len(payload) != 1 or (direction == STEP) != (payload[0] == "step"):
            raise bad("a frame carries exactly one of msg or raw (a step frame: step)")
        if direction == STEP and not isinstance(doc["step"], dict):
            raise bad("step must be an object")
        if "raw" in doc and not isinstance(doc["raw"], str):
            raise bad("raw must be a string")
        return cls(direction, t_ms, msg=doc.get("msg"), raw=doc.get("raw"), step=doc.get("step"))

    def line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)

    def wire(self) -> bytes:
        """The line to send for a client frame."""
        text = self.raw if self.raw is not None else json.dumps(self.msg, ensure_ascii=False)
        return text.encode("utf-8") + b"\n"


@dataclass
class Trace:
    """A header and the frames of one recorded session."""

    header: dict[str, Any]
    frames: list[Frame] = field(default_factory=list)

    @property
    def era(self) -> str | None:
        return self.header.get("era")

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the trace: {exc.strerror}", file=source) from None
        lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if not lines:
            raise ConfigError(
                "empty trace", file=source, fix="record one with `pyhall traces record`"
            )
        docs = []
        for number, line in lines:
            try:
                docs.append((number, json.loads(line)))
            except ValueError as exc:
                raise ConfigError(
                    f"not JSON: {exc}", file=source, location=f"line {number}"
                ) from None
        number, header = docs[0]
        if not isinstance(header, dict) or "pyhall_trace" not in header:
            raise ConfigError(
                "not a pyhall trace: the first line must be the header",
                file=source,
                location="line 1",
                fix='the header is {"pyhall_trace": 1, "era": ..., "launch": ...}',
            )
        if header["pyhall_trace"] != TRACE_FORMAT:
            raise ConfigError(
                f"trace format {header['pyhall_trace']!r} is not supported ({TRACE_FORMAT} is)",
                file=source,
                location="line 1",
                fix="upgrade pyhall-mcp or re-record the trace",
            )
        frames = [Frame.from_json(doc, file=source, line=n) for n, doc in docs[1:]]
        return cls(header, frames)

    def dumps(self) -> str:
        lines = [json.dumps(self.header, ensure_ascii=False)]
        lines.extend(frame.line() for frame in self.frames)
        return "\n".join(lines) + "\n"

    def dump(self, path: str | Path) -> None:
        """Write atomically: a reader never sees half a trace."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.dumps(), encoding="utf-8")
        os.replace(tmp, path)


def _is_request(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" in msg


def detect_era(msg: Any) -> str | None:
    """The era a client's first request opens: ``initialize`` is the handshake era."""
    if _is_request(msg):
        return "legacy" if msg["method"] == "initialize" else "modern"
    return None


# -- recording ------------------------------------------------------------------------------


def _iso(epoch_s: float) -> str:
    """UTC, to the millisecond: a step's time can be placed among the frames from it."""
    moment = _dt.datetime.fromtimestamp(epoch_s, _dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    """Seconds since the epoch of a header's ``recorded_at``."""
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def gateway_args(command: Sequence[str]) -> list[str] | None:
    """The gateway's own arguments if ``command`` runs pyhall-mcp, else None."""
    if not command:
        return None
    name = Path(command[0]).name
    if name in ("pyhall-mcp", "pyhall-mcp.exe"):
        return list(command[1:])
    if not name.startswith("python"):
        return None
    args = list(command[1:])
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "-m":
        i += 2 if args[i] in ("-X", "-W") else 1  # interpreter options, some with a value
    if i + 1 < len(args) and args[i] == "-m" and args[i + 1] in _GATEWAY_MODULES:
        return args[i + 2 :]
    return None


def strip_options(args: Sequence[str], names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """``args`` without the options ``names`` (and their values); the values removed."""
    names = tuple(names)
    kept: list[str] = []
    removed: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in names and eq:
            removed[name] = value
        elif arg in names and i + 1 < len(args):
            removed[arg] = args[i + 1]
            i += 1
        else:
            kept.append(arg)
        i += 1
    return kept, removed


def hall_label(hall: str | Path | None, trace_dir: Path) -> str:
    """``"demo"`` for the bundled demo hall, else the hall relative to the trace's directory."""
    from .layout import bundled_demo_hall

    root = Path(hall).expanduser().resolve() if hall else bundled_demo_hall().resolve()
    if root == bundled_demo_hall().resolve():
        return "demo"
    return Path(os.path.relpath(root, trace_dir.resolve())).as_posix()


def recording_header(
    out: Path, command: Sequence[str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The header of a trace recorded around ``command`` (the recorder adds era and time)."""
    from . import __version__

    environ = os.environ if environ is None else environ
    args = gateway_args(command)
    launch: dict[str, Any]
    hall: str | None
    if args is None:
        launch, hall = {"command": list(command)}, None
    else:
        kept, removed = strip_options(args, _PATH_OPTIONS)
        env = {
            k: v
            for k, v in sorted(environ.items())
            if k.startswith("PYHALL_") and k not in _UNRECORDED_ENV
        }
        launch = {"args": kept, "env": env}
        hall = hall_label(removed.get("--hall") or environ.get("PYHALL_HALL"), out.parent)
    return {
        "pyhall_trace": TRACE_FORMAT,
        "era": None,
        "sdk_version": _dist_version("mcp"),
        "pyhall_mcp_version": __version__,
        "hall": hall,
        "launch": launch,
    }


class Recorder:
    """Writes frames as they pass; the header once the first client request shows the era."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        try:
            self._file: IO[str] = open(out, "w", encoding="utf-8")  # noqa: SIM115 - see close()
        except OSError as exc:
            raise ConfigError(
                f"cannot write the trace: {exc.strerror}", file=str(out), fix="check the path"
            ) from None
        self._header = dict(header)
        self._held: list[Frame] | None = []  # frames seen before the era is known
        self._lock = threading.Lock()
        # t_ms counts from recorded_at: a frame's wall time is recorded_at + t_ms.
        self._started = time.monotonic()
        self._header["recorded_at"] = _iso(time.time())

    def frame(self, direction: Direction, line: bytes) -> None:
        if not line.strip():
            return  # a blank line is no message (the SDK skips it too)
        frame = Frame.from_line(direction, int((time.monotonic() - self._started) * 1000), line)
        with self._lock:
            if self._held is not None and self._header.get("era") is None:
                era = detect_era(frame.msg) if direction == C2S else None
                if era is None:
                    self._held.append(frame)
                    return
                self._header["era"] = era
            self._flush_header()
            self._write(frame)

    def _flush_header(self) -> None:
        if self._held is None:
            return
        held, self._held = self._held, None
        self._file.write(json.dumps(self._header, ensure_ascii=False) + "\n")
        for frame in held:
            self._write(frame)

    def _write(self, frame: Frame) -> None:
        self._file.write(frame.line() + "\n")
        self._file.flush()  # a host may kill the relay at any moment: keep what was seen

    def close(self) -> None:
        with self._lock:
            self._flush_header()
            self._file.close()


def _pump(source: IO[bytes], sink: IO[bytes], recorder: Recorder, direction: Direction) -> None:
    """Copy lines from ``source`` to ``sink`` unchanged, recording each; close ``sink`` at EOF."""
    try:
        for line in iter(source.readline, b""):
            recorder.frame(direction, line)
            try:
                sink.write(line)
                sink.flush()
            except (BrokenPipeError, OSError, ValueError):
                break  # the other side is gone; keep draining nothing
    finally:
        with contextlib.suppress(OSError, ValueError):
            sink.close()


def record(
    out: str | Path,
    command: Sequence[str],
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
) -> int:
    """Relay stdio between our caller and ``command``, writing the session to ``out``.

    Lines pass through byte for byte; stderr is inherited. Signals we receive
    are forwarded to the server. Returns the server's exit code.
    """
    if not command:
        raise ConfigError("no server command to record", fix="pyhall traces record OUT -- CMD ARGS")
    out = Path(out)
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stdout = stdout if stdout is not None else sys.stdout.buffer
    recorder = Recorder(out, recording_header(out, command))
    try:
        child = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    except OSError as exc:
        recorder.close()
        raise ConfigError(
            f"cannot start {command[0]!r}: {exc.strerror}", fix="check the command after --"
        ) from None
    assert child.stdin is not None and child.stdout is not None
    previous = _forward_signals(child)
    try:
        threading.Thread(
            target=_pump, args=(stdin, child.stdin, recorder, C2S), daemon=True
        ).start()
        down = threading.Thread(
            target=_pump, args=(child.stdout, _Unclosable(stdout), recorder, S2C), daemon=True
        )
        down.start()
        code = child.wait()
        down.join(timeout=1.0)  # what the server wrote before exiting still reaches the client
    finally:
        _restore_signals(previous)
        recorder.close()
    return code if code >= 0 else 128 - code


def record_gateway(out: str | Path, argv: Sequence[str]) -> int:
    """``pyhall-mcp --record OUT ...``: the same gateway, without --record, behind the relay."""
    rest, _ = strip_options(list(argv), ["--record"])
    try:
        return record(out, [sys.executable, "-m", "pyhall_mcp", *rest])
    except ConfigError as exc:
        sys.stderr.write(f"pyhall-mcp: cannot record: {exc.describe()}\n")
        return 3


class _Unclosable:
    """Our stdout: flushed, never closed, by the pump."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        return self._stream.write(data)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP")


def _forward_signals(child: subprocess.Popen[bytes]) -> dict[int, Any]:
    """A host stops the relay; the server it runs should hear it (main thread only)."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in _FORWARDED:
        signum = getattr(signal, name, None)
        if signum is None:
            continue

        def forward(received: int, _frame: Any) -> None:
            with contextlib.suppress(OSError):
                child.send_signal(received)

        previous[signum] = signal.signal(signum, forward)
    return previous


def _restore_signals(previous: Mapping[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


# -- masking ------------------------------------------------------------------------------------

#: Keys whose values differ on every run, also with a prefix (``outcome_receipt_id``).
VOLATILE_KEYS = frozenset(
    {
        "decision_id",
        "receipt_id",
        "receipt_hash",
        "receipt_seq",
        "artifact_hash",  # covers the correlation id, random unless the client sets one
        "policy_version",  # a digest of the policy files: their effects are compared instead
        "timestamp",
        "dispatched_at",
        "recorded_at",
        "created_at",
        "decided_at",
        "approval_expires_at",
        "expires_at",
        "duration_us",
        "duration_ms",
        "pending_approval_id",
        "approval_id",
        "key_id",
        "signing_key_id",
        "requestState",
    }
)
_SERVER_INFO_KEYS = ("serverInfo", "io.modelcontextprotocol/serverInfo")
#: Random values inside strings, masked wherever they appear.
_PATTERNS = (
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "<uuid>",
    ),
    (re.compile(r"\brcpt_[0-9a-zA-Z]{8,}"), "<receipt-id>"),
    (re.compile(r"\bapr_[0-9A-Za-z_-]{6,}"), "<approval-id>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
        "<timestamp>",
    ),
)


def _volatile(key: str) -> bool:
    if key in VOLATILE_KEYS:
        return True
    parts = key.split("_")
    return any("_".join(parts[i:]) in VOLATILE_KEYS for i in range(1, len(parts)))


def _mask_text(text: str) -> str:
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def mask(value: Any) -> Any:
    """``value`` with everything that varies between runs replaced by a placeholder."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if _volatile(key) and item is not None:
                out[key] = f"<{key}>"
            elif key in _SERVER_INFO_KEYS and isinstance(item, dict) and "version" in item:
                out[key] = {**mask(item), "version": "<version>"}
            else:
                out[key] = mask(item)
        return out
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return _mask_text(value)
    return value


def _tokens(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for pattern, _ in _PATTERNS[:3]:  # ids, not timestamps: nobody sends those back
        found.extend((m.start(), m.group()) for m in pattern.finditer(text))
    return [token for _, token in sorted(found)]


def _learn(expected: Any, live: Any, learned: dict[str, str], key: str = "") -> None:
    """Pair the recorded random values with their live counterparts, to rewrite client frames."""
    if isinstance(expected, dict) and isinstance(live, dict):
        for k, item in expected.items():
            if k in live:
                _learn(item, live[k], learned, k)
    elif isinstance(expected, list) and isinstance(live, list):
        for a, b in zip(expected, live, strict=False):
            _learn(a, b, learned, key)
    elif isinstance(expected, str) and isinstance(live, str) and expected != live:
        if _volatile(key):
            learned[expected] = live
            return
        old, new = _tokens(expected), _tokens(live)
        if len(old) == len(new):
            learned.update((a, b) for a, b in zip(old, new, strict=True) if a != b)


def _rewrite(value: Any, learned: Mapping[str, str]) -> Any:
    if not learned:
        return value
    if isinstance(value, dict):
        return {k: _rewrite(v, learned) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, learned) for v in value]
    if isinstance(value, str):
        if value in learned:
            return learned[value]
        for old, new in learned.items():
            if len(old) >= 8 and old in value:
                value = value.replace(old, new)
        return value
    return value


def _pretty(frame: Frame | None, *, server_request: bool = False) -> str:
    if frame is None:
        return ""
    if frame.raw is not None:
        return frame.raw + "\n"
    masked = mask(frame.msg)
    if server_request and isinstance(masked, dict) and "id" in masked:
        masked = {**masked, "id": "<server-request-id>"}
    return json.dumps(masked, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# -- replay ---------------------------------------------------------------------------------------


@dataclass
class Mismatch:
    """One way the live session differed from the trace."""

    index: int | None  # the expected frame (None: a live frame nobody expected)
    summary: str
    diff: str = ""

    @property
    def line(self) -> int | None:
        return None if self.index is None else self.index + 2  # the header is line 1

    def as_dict(self) -> dict[str, Any]:
        return {"frame": self.index, "line": self.line, "summary": self.summary, "diff": self.diff}


@dataclass
class ReplayResult:
    path: Path | None
    era: str | None
    frames: int
    mismatches: list[Mismatch]
    live: Trace
    seconds: float
    exit_code: int | None
    stderr_tail: str = ""
    updated: bool = False

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def report(self) -> str:
        name = str(self.path) if self.path else "trace"
        if self.updated:
            head = f"updated {name}: {len(self.live.frames)} frames re-recorded"
            if self.mismatches:
                head += f" ({len(self.mismatches)} differed from the old trace)"
            return head
        if self.ok:
            return f"ok   {name}: {self.frames} frames ({self.era}), {self.seconds:.1f} s"
        lines = [f"FAIL {name}: {len(self.mismatches)} difference(s) in {self.frames} frames"]
        for item in self.mismatches:
            where = f"frame {item.index} (line {item.line}): " if item.index is not None else ""
            lines.append(f"- {where}{item.summary}")
            if item.diff:
                lines.append(item.diff.rstrip("\n"))
        if self.stderr_tail and any("did not arrive" in m.summary for m in self.mismatches):
            lines.append("gateway stderr (last lines):")
            lines.append(self.stderr_tail.rstrip("\n"))
        lines.append("re-record with: pyhall traces replay --update " + name)
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path) if self.path else None,
            "ok": self.ok,
            "era": self.era,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "updated": self.updated,
            "exit_code": self.exit_code,
            "mismatches": [m.as_dict() for m in self.mismatches],
        }


def _id_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _stream(frame: Frame) -> tuple[str, ...]:
    """Which ordered stream a server frame belongs to (see the module docstring)."""
    msg = frame.msg
    if frame.raw is not None:
        return ("raw",)
    if not isinstance(msg, dict):
        return ("other",)
    method = msg.get("method")
    if method is None:
        return ("response", _id_key(msg.get("id")))
    if "id" in msg:
        return ("server-request",)
    if method == "notifications/progress":
        return ("progress", _id_key((msg.get("params") or {}).get("progressToken")))
    return ("notification", str(method))


def _progress_token(msg: Any) -> Any:
    params = msg.get("params") if isinstance(msg, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta.get("progressToken") if isinstance(meta, dict) else None


class _Checker:
    """Matches live server frames to the trace's; decides when each client frame may go."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.streams: dict[tuple[str, ...], collections.deque[int]] = collections.defaultdict(
            collections.deque
        )
        self.pending: set[int] = set()
        self.requests: dict[str, Any] = {}  # request id -> the client's request message
        self.tokens: dict[str, str] = {}  # request id -> its progress token's stream key
        for index, frame in enumerate(trace.frames):
            if frame.dir == S2C:
                self.streams[_stream(frame)].append(index)
                self.pending.add(index)
            elif frame.dir == C2S and _is_request(frame.msg):
                key = _id_key(frame.msg["id"])
                self.requests[key] = frame.msg
                token = _progress_token(frame.msg)
                if token is not None:
                    self.tokens[key] = _id_key(token)
        self.server_ids: dict[str, Any] = {}  # recorded server-request id -> live id
        self.learned: dict[str, str] = {}
        self.mismatches: list[Mismatch] = []
        self.live: list[Frame] = []
        self.live_received = 0
        self.happened_at: dict[int, float] = {}
        self.given_up: dict[tuple[str, ...], collections.deque[int]] = collections.defaultdict(
            collections.deque
        )

    # -- describing frames ---------------------------------------------------------------
    def describe(self, frame: Frame) -> str:
        msg = frame.msg
        if frame.raw is not None:
            return f"non-JSON line {frame.raw[:60]!r}"
        if not isinstance(msg, dict):
            return "JSON that is not a message"
        if "method" in msg:
            kind = "server request" if "id" in msg else "notification"
            return f"{kind} {msg['method']}"
        request = self.requests.get(_id_key(msg.get("id")))
        what = ""
        if request is not None:
            what = request.get("method", "")
            name = (request.get("params") or {}).get("name")
            what = f" ({what} {name})" if name else f" ({what})"
        outcome = "error" if "error" in msg else "response"
        return f"{outcome} to id {msg.get('id')!r}{what}"

    # -- sending ---------------------------------------------------------------------------
    def outgoing(self, index: int, now_ms: int) -> Frame:
        """The client frame ``index`` as it must be sent now (live ids substituted)."""
        frame = self.trace.frames[index]
        msg = frame.msg
        if isinstance(msg, dict) and "method" not in msg and "id" in msg:
            live_id = self.server_ids.get(_id_key(msg["id"]))
            if live_id is not None:  # our answer to a server-initiated request
                msg = {**msg, "id": live_id}
        if frame.raw is None:
            msg = _rewrite(msg, self.learned)
        step = _rewrite(frame.step, self.learned) if frame.step is not None else None
        sent = Frame(frame.dir, now_ms, msg=msg, raw=frame.raw, step=step)
        self.live.append(sent)
        self.happened_at[index] = time.monotonic()
        return sent

    def waiting_before(self, index: int) -> list[int]:
        return sorted(i for i in self.pending if i < index)

    # -- receiving ----------------------------------------------------------------------------
    def incoming(self, live: Frame) -> None:
        self.live.append(live)
        self.live_received += 1
        stream = _stream(live)
        queue_ = self.streams.get(stream)
        late = self.given_up.get(stream)
        if not queue_ and late:
            late.popleft()  # arrived after its timeout, which was already reported
            return
        if not queue_:
            self.mismatches.append(
                Mismatch(
                    None,
                    f"unexpected {self.describe(live)}",
                    _diff("", _pretty(live, server_request=stream == ("server-request",)), None),
                )
            )
            return
        index = queue_.popleft()
        self.pending.discard(index)
        self.happened_at[index] = time.monotonic()
        expected = self.trace.frames[index]
        is_request = stream == ("server-request",)
        want, got = (
            _pretty(expected, server_request=is_request),
            _pretty(live, server_request=is_request),
        )
        if want != got:
            self.mismatches.append(
                Mismatch(index, f"{self.describe(expected)} differs", _diff(want, got, index))
            )
        if is_request and isinstance(expected.msg, dict) and isinstance(live.msg, dict):
            self.server_ids[_id_key(expected.msg.get("id"))] = live.msg.get("id")
        if expected.raw is None and live.raw is None:
            _learn(expected.msg, live.msg, self.learned)
        if stream[0] == "response":
            self._close_progress(stream[1])

    def _close_progress(self, request_id: str) -> None:
        """Progress recorded for a request must arrive before its response."""
        token = self.tokens.get(request_id)
        if token is None:
            return
        left = self.streams.get(("progress", token))
        while left:
            index = left.popleft()
            self.pending.discard(index)
            self.mismatches.append(
                Mismatch(
                    index,
                    f"{self.describe(self.trace.frames[index])} did not arrive before "
                    "the response it belongs to",
                    _diff(_pretty(self.trace.frames[index]), "", index),
                )
            )

    def give_up(self, indices: Sequence[int], timeout_s: float, exited: bool) -> None:
        reason = "the gateway exited first" if exited else f"not within {timeout_s:g} s"
        for n, index in enumerate(indices):
            frame = self.trace.frames[index]
            self.pending.discard(index)
            with contextlib.suppress(ValueError):
                self.streams[_stream(frame)].remove(index)
                self.given_up[_stream(frame)].append(index)
            diff = _diff(_pretty(frame), "", index) if n == 0 else ""
            self.mismatches.append(
                Mismatch(index, f"{self.describe(frame)} did not arrive ({reason})", diff)
            )


def _diff(want: str, got: str, index: int | None) -> str:
    where = f"frame {index}" if index is not None else "no frame"
    lines = difflib.unified_diff(
        want.splitlines(keepends=True),
        got.splitlines(keepends=True),
        fromfile=f"expected ({where}, masked)",
        tofile="live (masked)",
        n=3,
    )
    return "".join(lines)


class _Gateway:
    """The live ``python -m pyhall_mcp`` process of one replay."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
        )
        self.inbox: queue.Queue[Frame | None] = queue.Queue()
        self.stderr: collections.deque[str] = collections.deque(maxlen=40)
        self.eof = False
        self.died = False  # stdout ended before we closed stdin
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def now_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            if line.strip():
                self.inbox.put(Frame.from_line(S2C, self.now_ms(), line))
        self.inbox.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in iter(self.process.stderr.readline, b""):
            self.stderr.append(line.decode("utf-8", errors="replace"))

    def send(self, frame: Frame) -> bool:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(frame.wire())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.died = True
            return False
        return True

    def receive(self, timeout_s: float) -> Frame | None:
        """The next server frame; None at EOF; ``queue.Empty`` on timeout."""
        if self.eof:
            return None
        item = self.inbox.get(timeout=max(timeout_s, 0.0))
        if item is None:
            self.eof = self.died = True
        return item

    def close(self) -> tuple[int | None, list[Frame]]:
        """Close stdin, let the gateway exit (kill it if it will not); what it still said."""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            code: int | None = self.process.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        for thread in self._threads:
            thread.join(timeout=1.0)
        rest: list[Frame] = []
        while not self.eof:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.eof = True
            else:
                rest.append(item)
        return code, rest


def resolve_hall(trace: Trace, path: Path | None, hall: str | Path | None = None) -> Path:
    """The hall a replay copies: ``hall`` if given, else the header's, relative to the trace."""
    from .layout import bundled_demo_hall

    if hall is not None:
        root = Path(hall).expanduser().resolve()
    else:
        label = trace.header.get("hall")
        if label is None:
            raise ConfigError(
                "this trace was not recorded from pyhall-mcp: there is no hall to replay against",
                file=str(path) if path else None,
                location="line 1: launch",
                fix="record with `pyhall traces record OUT -- pyhall-mcp ...` or pass --hall",
            )
        if label == "demo":
            root = bundled_demo_hall().resolve()
        else:
            base = path.parent if path is not None else Path.cwd()
            root = (base / label).resolve()
    if not (root / "hall.yaml").is_file():
        raise ConfigError(
            "hall not found (no hall.yaml)",
            file=str(root),
            fix="pass the hall directory with --hall DIR",
        )
    return root


def copy_hall(source: Path, target: Path) -> Path:
    """Copy a hall's configuration (never its state) to ``target``."""
    from ._yaml import load_document

    source = source.resolve()
    parts = set(_HALL_PARTS)
    doc = load_document(source / "hall.yaml") or {}
    if isinstance(doc, dict):
        named = [*(doc.get("rules") or []), doc.get("workspace")]
        parts.update(str(p) for p in named if isinstance(p, str) and p)
    target.mkdir(parents=True, exist_ok=True)
    for part in sorted(parts):
        origin = (source / part).resolve()
        if not origin.is_relative_to(source):
            raise ConfigError(
                f"{part!r} lies outside the hall, so a replay cannot copy it",
                file=str(source / "hall.yaml"),
                fix="keep rules and the workspace inside the hall directory",
            )
        destination = target / origin.relative_to(source)
        if origin.is_dir():
            shutil.copytree(origin, destination, ignore=_COPY_IGNORE, dirs_exist_ok=True)
        elif origin.is_file():
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, destination)
    return target


def _inside(root: Path, relative: str) -> Path:
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root.resolve()):
        raise ConfigError(
            f"step path {relative!r} leaves the hall",
            fix="step paths are relative to the hall directory",
        )
    return path


def apply_step(
    root: Path,
    step: Mapping[str, Any],
    *,
    state_dir: Path | None = None,
    python: str = sys.executable,
) -> None:
    """Change the hall copy as the recorded session did.

    ``write`` files, ``remove`` paths (both relative to the hall), or decide an
    approval as the operator would (``approvals``: ``{"decision": "approve"|"deny",
    "approval_id": ...}``, through ``pyhall approvals``).
    """
    for relative, content in (step.get("write") or {}).items():
        path = _inside(root, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(content), encoding="utf-8")
    for relative in step.get("remove") or []:
        path = _inside(root, relative)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    decision = step.get("approvals")
    if decision is not None:
        _decide_approval(root, decision, state_dir, python)


def _decide_approval(root: Path, decision: Any, state_dir: Path | None, python: str) -> None:
    verb = decision.get("decision") if isinstance(decision, dict) else None
    approval_id = decision.get("approval_id") if isinstance(decision, dict) else None
    if verb not in ("approve", "deny") or not isinstance(approval_id, str):
        raise ConfigError(
            "an approvals step needs decision (approve or deny) and approval_id",
            fix='{"approvals": {"decision": "approve", "approval_id": "apr_..."}}',
        )
    command = [
        python,
        "-c",
        _CLI,
        "approvals",
        verb,
        approval_id,
        "--hall",
        str(root),
        "--by",
        str(decision.get("by") or "trace-operator"),
    ]
    if decision.get("note"):
        command += ["--note", str(decision["note"])]
    if state_dir is not None:
        command += ["--state-dir", str(state_dir)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=_environment({}), check=False
    )
    if done.returncode != 0:
        raise ConfigError(
            f"pyhall approvals {verb} {approval_id} failed: {done.stderr.strip()[-500:]}"
        )


def _environment(launch: Mapping[str, Any]) -> dict[str, str]:
    """Ours without PYHALL_* settings (a replay depends on the trace only), plus the trace's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYHALL_") or k == "PYHALL_TENANT_CREDENTIAL"
    }
    env.update({str(k): str(v) for k, v in (launch.get("env") or {}).items()})
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def _launch(trace: Trace, path: Path | None) -> Mapping[str, Any]:
    launch = trace.header.get("launch") or {}
    if not isinstance(launch, dict) or "command" in launch:
        raise ConfigError(
            "this trace was recorded around a server that is not pyhall-mcp",
            file=str(path) if path else None,
            location="line 1: launch",
            fix="replay starts `python -m pyhall_mcp`; record around pyhall-mcp to replay",
        )
    args = launch.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(
            "launch.args must be a list of strings",
            file=str(path) if path else None,
            location="line 1",
        )
    return launch


def replay(
    source: str | Path | Trace,
    *,
    hall: str | Path | None = None,
    update: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    python: str = sys.executable,
) -> ReplayResult:
    """Replay a trace against a fresh gateway; ``update`` rewrites the file from the live run."""
    path = None if isinstance(source, Trace) else Path(source)
    trace = source if isinstance(source, Trace) else Trace.load(source)
    if update and path is None:
        raise ConfigError("--update needs a trace file to rewrite")
    launch = _launch(trace, path)
    root = resolve_hall(trace, path, hall)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyhall-replay-") as tmp:
        work = Path(tmp)
        hall_copy = copy_hall(root, work / "hall")
        setup = trace.header.get("setup")
        if isinstance(setup, dict):
            apply_step(hall_copy, setup)  # the hall as it was when the session began
        state = work / "state"
        args = [str(a) for a in launch.get("args", [])]
        command = [python, "-m", "pyhall_mcp", "--hall", str(hall_copy), "--state-dir", str(state)]
        gateway = _Gateway([*command, *args], _environment(launch), cwd=work)
        checker = _Checker(trace)
        try:
            _drive(trace, checker, gateway, hall_copy, state, timeout_s, keep_going=update)
        finally:
            exit_code, rest = gateway.close()
        for frame in rest:
            checker.incoming(frame)
    if checker.pending:
        checker.mismatches.append(
            Mismatch(
                None, f"{len(checker.pending)} later server frame(s) not checked (stopped early)"
            )
        )
    result = ReplayResult(
        path=path,
        era=trace.era,
        frames=len(trace.frames),
        mismatches=checker.mismatches,
        live=Trace(_updated_header(trace.header, gateway.started_wall), checker.live),
        seconds=time.monotonic() - started,
        exit_code=exit_code,
        stderr_tail="".join(gateway.stderr),
    )
    if update and path is not None:
        if gateway.died:  # a gateway that did not start or crashed is no new truth
            result.mismatches.append(
                Mismatch(None, "not updated: the gateway exited during the replay")
            )
        else:
            result.live.dump(path)
            result.updated = True
    return result


def _drive(
    trace: Trace,
    checker: _Checker,
    gateway: _Gateway,
    hall_copy: Path,
    state_dir: Path,
    timeout_s: float,
    *,
    keep_going: bool,
) -> None:
    """Send each client frame once the server frames recorded before it have arrived."""
    frames = trace.frames
    for index, frame in enumerate(frames):
        if frame.dir == S2C:
            continue
        if (
            not _await(checker, gateway, checker.waiting_before(index), timeout_s)
            and not keep_going
        ):
            return
        _pace(checker, frames, index)
        if frame.dir == STEP:
            done = checker.outgoing(index, gateway.now_ms())
            assert done.step is not None
            apply_step(hall_copy, done.step, state_dir=state_dir)
        elif not gateway.send(checker.outgoing(index, gateway.now_ms())):
            checker.give_up(checker.waiting_before(len(frames)), timeout_s, exited=True)
            return
    _await(checker, gateway, checker.waiting_before(len(frames)), timeout_s)


def _await(checker: _Checker, gateway: _Gateway, indices: list[int], timeout_s: float) -> bool:
    """Receive until every frame in ``indices`` arrived; False (after reporting) if not."""
    # The gateway's cold start (importing the SDK) is no frame's delay.
    allowance = 0.0 if checker.live_received else STARTUP_ALLOWANCE_S
    deadline = time.monotonic() + timeout_s + allowance
    while any(i in checker.pending for i in indices):
        try:
            frame = gateway.receive(deadline - time.monotonic())
        except queue.Empty:
            frame, timed_out = None, True
        else:
            timed_out = False
        if frame is not None:
            checker.incoming(frame)
            deadline = time.monotonic() + timeout_s  # the timeout is per frame
            continue
        missing = [i for i in indices if i in checker.pending]
        checker.give_up(missing, timeout_s, exited=not timed_out)
        return False
    return True


def _pace(checker: _Checker, frames: Sequence[Frame], index: int) -> None:
    """Keep the recorded gap before a client frame (capped): a cancel comes after its call."""
    if index == 0:
        return
    previous = checker.happened_at.get(index - 1)
    if previous is None:
        return
    gap = min(max(frames[index].t_ms - frames[index - 1].t_ms, 0) / 1000, PACE_CAP_S)
    delay = previous + gap - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _updated_header(header: Mapping[str, Any], started: float) -> dict[str, Any]:
    from . import __version__

    return {
        **header,
        "sdk_version": _dist_version("mcp"),
        "pyhall_mcp_version": __version__,
        "recorded_at": _iso(started),
    }


def iter_trace_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Trace files named directly or found (``*.jsonl``) in the directories named."""
    for item in paths:
        path = Path(item)
        if path.is_dir():
            yield from sorted(path.glob("*.jsonl"))
        else:
            yield path
