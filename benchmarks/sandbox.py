"""What the Landlock sandbox adds to a subprocess worker's call.

Runs the demo file reader (``workers/file-reader``) through ``SubprocessRunner``
unconfined and sandboxed, in alternating rounds, and prints the median wall time
per call and the ratio. The sandboxed call starts a small launcher
(``python -I -S``) that restricts itself and execs the worker.

    .venv/bin/python benchmarks/sandbox.py [--calls 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import anyio

from pyhall_mcp.runners import SubprocessRunner, WorkerContext, landlock_abi

ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = ROOT / "workspace"
CONTEXT = WorkerContext(
    correlation_id="bench",
    decision_id="bench",
    tenant_id="bench",
    env="dev",
    data_label="PUBLIC",
    worker_id="org.demo.file-reader",
    tool="read_file",
    workspace=str(WORKSPACE),
    deadline_s=10.0,
)


async def _median_ms(runner: SubprocessRunner, calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await runner.run({"path": "README.txt"}, CONTEXT, timeout_s=10)
        times.append(time.perf_counter() - started)
        if result.status != "ok":
            raise SystemExit(f"the reader failed: {result.error}")
    return statistics.median(times) * 1000


async def main(calls: int, rounds: int) -> None:
    if not landlock_abi():
        raise SystemExit("the kernel has no Landlock: nothing to measure")
    runners = {
        mode: SubprocessRunner(
            ["{python}", "reader.py"],
            ROOT / "workers" / "file-reader",
            sandbox=mode,
            reads=[str(WORKSPACE)],
        )
        for mode in ("none", "landlock")
    }
    seen: dict[str, list[float]] = {mode: [] for mode in runners}
    for _ in range(rounds):
        for mode, runner in runners.items():
            seen[mode].append(await _median_ms(runner, calls))
    bare, boxed = statistics.median(seen["none"]), statistics.median(seen["landlock"])
    print(f"Landlock ABI {landlock_abi()}, {calls} calls x {rounds} alternating rounds")
    print(f"  unconfined   {bare:7.1f} ms per call")
    print(f"  sandboxed    {boxed:7.1f} ms per call   {boxed / bare:.2f}x (+{boxed - bare:.1f} ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds)
