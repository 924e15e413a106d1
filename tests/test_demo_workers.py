"""The demo hall's workers, run through the runners their worker.yaml records describe.

File workers act on a tmp copy of the repository's ``workspace/``, never on it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyhall_mcp._yaml import load_document
from pyhall_mcp.runners import Runner, WorkerContext, WorkerResult, build_runner

REPO = Path(__file__).resolve().parent.parent
WORKERS = REPO / "workers"
WORKSPACE = REPO / "workspace"

DEMO_WORKERS = ("greeter", "summarizer", "hasher", "file-reader", "file-deleter")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    copy = tmp_path / "workspace"
    shutil.copytree(WORKSPACE, copy)
    return copy


def _context(workspace: Path | None = None) -> WorkerContext:
    return WorkerContext(
        correlation_id="corr-demo",
        decision_id="dec-demo",
        tenant_id="tenant-a",
        env="dev",
        data_label="INTERNAL",
        worker_id="org.pyhall.demo",
        tool="demo",
        workspace=str(workspace) if workspace else None,
        deadline_s=10.0,
    )


def _runner(name: str, workspace: Path | None = None) -> Runner:
    """The runner the worker's own enrollment record describes, in a hall around
    ``workspace`` (where its envelope's directories, and a sandbox's, then lie)."""
    record = load_document(WORKERS / name / "worker.yaml")
    envelope = record.get("privilege_envelope") or {}
    hall = workspace.parent if workspace else WORKERS / name
    return build_runner(
        record["runner"],
        WORKERS / name,
        reads=[str(hall / d) for d in envelope.get("filesystem_reads", [])],
        writes=[str(hall / d) for d in envelope.get("filesystem_writes", [])],
    )


async def _call(
    name: str, arguments: dict[str, Any], workspace: Path | None = None, **kw: Any
) -> WorkerResult:
    return await _runner(name, workspace).run(arguments, _context(workspace), timeout_s=10, **kw)


def test_every_demo_worker_loads() -> None:
    for name in DEMO_WORKERS:
        runner = _runner(name)
        load = getattr(runner, "load", None)
        if load:
            load()


# --------------------------------------------------------------------------- greeter


async def test_greeter_greets() -> None:
    result = await _call("greeter", {"name": "Ada"})
    assert (result.status, result.value) == ("ok", {"greeting": "Hello, Ada!"})


@pytest.mark.parametrize("arguments", [{}, {"name": ""}, {"name": 7}])
async def test_greeter_refuses_a_missing_name(arguments: dict[str, Any]) -> None:
    result = await _call("greeter", arguments)
    assert (result.status, result.error) == ("error", "name must be a non-empty string")


# --------------------------------------------------------------------------- summarizer

TEXT = (
    "Cats sleep a lot. "
    "The weather was mild on Tuesday. "
    "Cats and dogs both sleep, but cats sleep longer than dogs. "
    "Dogs sleep too! "
    "Nobody asked about the bus timetable."
)


async def test_summarizer_keeps_the_top_sentences_in_original_order() -> None:
    result = await _call("summarizer", {"text": TEXT, "max_sentences": 2})
    assert result.status == "ok", result
    assert result.value == {
        "summary": "Cats sleep a lot. Cats and dogs both sleep, but cats sleep longer than dogs.",
        "sentences": 2,
    }


async def test_summarizer_is_deterministic_and_defaults_to_three() -> None:
    first = await _call("summarizer", {"text": TEXT})
    second = await _call("summarizer", {"text": TEXT})
    assert first.value == second.value
    assert (first.value or {})["sentences"] == 3
    assert (first.value or {})["summary"] == (
        "Cats sleep a lot. Cats and dogs both sleep, but cats sleep longer than dogs. "
        "Dogs sleep too!"
    )


async def test_summarizer_returns_a_short_text_whole() -> None:
    result = await _call("summarizer", {"text": "One. Two?", "max_sentences": 5})
    assert result.value == {"summary": "One. Two?", "sentences": 2}


async def test_summarizer_summarizes_the_sample_meeting_notes() -> None:
    text = (WORKSPACE / "notes" / "meeting.txt").read_text()
    result = await _call("summarizer", {"text": text, "max_sentences": 2})
    summary = (result.value or {})["summary"]
    assert result.value and result.value["sentences"] == 2
    assert "audit log" in summary and "Lunch" not in summary


async def test_summarizer_reports_progress_per_chunk_for_long_texts() -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        reports.append((value, total, message))

    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(450))
    result = await _call("summarizer", {"text": text}, progress=progress)
    assert result.status == "ok"
    assert reports == [
        (200.0, 450.0, "scored 200 of 450 sentences"),
        (400.0, 450.0, "scored 400 of 450 sentences"),
        (450.0, 450.0, "scored 450 of 450 sentences"),
    ]
    short = await _call("summarizer", {"text": TEXT}, progress=progress)
    assert short.status == "ok" and len(reports) == 3


@pytest.mark.parametrize(
    "arguments",
    [{"text": 3}, {"text": "a", "max_sentences": 0}, {"text": "a", "max_sentences": True}],
)
async def test_summarizer_refuses_bad_arguments(arguments: dict[str, Any]) -> None:
    result = await _call("summarizer", arguments)
    assert result.status == "error"
    assert result.error and ("text" in result.error or "max_sentences" in result.error)


# --------------------------------------------------------------------------- hasher


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_hasher_digests(algorithm: str) -> None:
    result = await _call("hasher", {"text": "héllo wörld", "algorithm": algorithm})
    expected = hashlib.new(algorithm, "héllo wörld".encode()).hexdigest()
    assert (result.status, result.value) == ("ok", {"algorithm": algorithm, "digest": expected})


async def test_hasher_refuses_an_unknown_algorithm() -> None:
    result = await _call("hasher", {"text": "x", "algorithm": "md5"})
    assert (result.status, result.error) == ("error", "algorithm must be one of sha256, sha512")


# --------------------------------------------------------------------------- file reader


async def test_reader_reads_workspace_files(workspace: Path) -> None:
    result = await _call("file-reader", {"path": "notes/meeting.txt"}, workspace)
    assert result.status == "ok", result
    assert result.value == {
        "path": "notes/meeting.txt",
        "content": (WORKSPACE / "notes" / "meeting.txt").read_text(),
        "truncated": False,
    }
    for path in ("README.txt", "./notes/../README.txt", str(workspace / "README.txt")):
        result = await _call("file-reader", {"path": path}, workspace)
        assert (result.value or {}).get("path") == "README.txt", path


async def test_reader_truncates_large_files(workspace: Path) -> None:
    (workspace / "big.txt").write_text("é" * 40_000)  # 80,000 bytes
    result = await _call("file-reader", {"path": "big.txt"}, workspace)
    value = result.value or {}
    assert value["truncated"] is True
    assert value["content"] == "é" * 32_768


async def test_reader_follows_a_symlink_that_stays_inside(workspace: Path) -> None:
    (workspace / "alias.txt").symlink_to(workspace / "notes" / "meeting.txt")
    result = await _call("file-reader", {"path": "alias.txt"}, workspace)
    assert (result.value or {}).get("path") == "notes/meeting.txt"


def _escapes(workspace: Path) -> list[str]:
    outside = workspace.parent / "outside.txt"
    outside.write_text("secret outside the workspace")
    (workspace / "leak").symlink_to(outside)
    (workspace / "notes" / "up").symlink_to(workspace.parent)
    return [
        "../outside.txt",
        "notes/../../outside.txt",
        str(outside),
        "/etc/passwd",
        "leak",
        "notes/up/outside.txt",
    ]


async def test_reader_refuses_every_escape(workspace: Path) -> None:
    for path in _escapes(workspace):
        result = await _call("file-reader", {"path": path}, workspace)
        assert (result.status, result.error) == ("error", "path is outside the workspace"), path
        assert "secret" not in repr(result.value)


async def test_reader_refuses_a_directory_with_a_safe_error(workspace: Path) -> None:
    for path in ("notes", "."):
        result = await _call("file-reader", {"path": path}, workspace)
        assert (result.status, result.value) == ("error", None)
        assert "Traceback" not in (result.error or "") and str(workspace) not in (
            result.error or ""
        )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("notes", "not a regular file"),
        pytest.param(".", "not a regular file"),
        ("missing.txt", "no such file in the workspace"),
        ("README.txt\0.png", "path must not contain NUL"),
        ("", "path must be a non-empty string"),
    ],
)
async def test_reader_refuses_what_is_not_a_file(workspace: Path, path: str, message: str) -> None:
    result = await _call("file-reader", {"path": path}, workspace)
    assert (result.status, result.error) == ("error", message)


async def test_reader_refuses_without_a_workspace() -> None:
    result = await _call("file-reader", {"path": "README.txt"})
    assert (result.status, result.error) == ("error", "no workspace is configured for this hall")


async def test_reader_does_not_block_on_a_fifo(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    with anyio.fail_after(5):
        result = await _call("file-reader", {"path": "pipe"}, workspace)
    assert (result.status, result.error) == ("error", "not a regular file")


# --------------------------------------------------------------------------- file deleter


async def test_deleter_deletes_a_workspace_file(workspace: Path) -> None:
    target = workspace / "scratch" / "old-draft.txt"
    result = await _call("file-deleter", {"path": "scratch/old-draft.txt"}, workspace)
    assert (result.status, result.value) == ("ok", {"deleted": "scratch/old-draft.txt"})
    assert not target.exists()
    assert (WORKSPACE / "scratch" / "old-draft.txt").exists(), "the committed sample is untouched"


async def test_deleter_refuses_every_escape_and_touches_nothing_outside(workspace: Path) -> None:
    for path in _escapes(workspace):
        result = await _call("file-deleter", {"path": path}, workspace)
        assert result.status == "error", path
        assert result.error in ("path is outside the workspace", "not a regular file"), path
    assert (workspace.parent / "outside.txt").read_text() == "secret outside the workspace"
    assert (workspace / "leak").is_symlink(), "a symlink is not a file to delete"
    assert Path("/etc/passwd").exists()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("notes", "not a regular file"),
        ("notes/", "not a regular file"),
        (".", "not a regular file"),
        ("..", "not a regular file"),
        ("missing.txt", "no such file in the workspace"),
        ("nowhere/missing.txt", "no such file in the workspace"),
        ("README.txt\0", "path must not contain NUL"),
    ],
)
async def test_deleter_refuses_directories_and_missing_files(
    workspace: Path, path: str, message: str
) -> None:
    result = await _call("file-deleter", {"path": path}, workspace)
    assert (result.status, result.error) == ("error", message)
    assert (workspace / "notes" / "meeting.txt").exists()


async def test_deleter_refuses_without_a_workspace() -> None:
    result = await _call("file-deleter", {"path": "README.txt"})
    assert (result.status, result.error) == ("error", "no workspace is configured for this hall")
