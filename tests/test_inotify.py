"""The inotify watch behind PackageMonitor: one shared instance, watches that do not leak."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyhall_mcp._inotify import ChangeWatch

pytestmark = pytest.mark.skipif(
    ChangeWatch.open([]) is None, reason="inotify is not available here"
)


def _inotify_fds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                count += 1
        except OSError:
            continue
    return count


def test_every_watch_shares_one_inotify_instance(tmp_path: Path) -> None:
    files = []
    for n in range(200):  # more than Linux's default 128 instances per user
        path = tmp_path / f"f{n}.py"
        path.write_text("x = 1\n")
        files.append(path)
    watches = [ChangeWatch.open([str(f)], moved=[str(tmp_path)]) for f in files]
    assert all(w is not None for w in watches)
    assert _inotify_fds() == 1
    files[7].write_text("x = 2\n")
    changed = [w.changed() for w in watches if w is not None]
    assert changed[7] is True
    assert sum(changed) == 1, "a change to one file flagged other watches"


def test_a_watch_on_a_shared_path_survives_another_closing(tmp_path: Path) -> None:
    path = tmp_path / "worker.py"
    path.write_text("x = 1\n")
    first = ChangeWatch.open([str(path)])
    second = ChangeWatch.open([str(path)])
    assert first is not None and second is not None
    first.close()
    assert not second.changed()
    path.write_text("x = 2\n")
    assert second.changed()
    assert second.changed(), "a changed watch stays changed"


def test_a_deleted_entry_and_a_moved_ancestor_are_changes(tmp_path: Path) -> None:
    workers = tmp_path / "workers"
    for name in ("a", "b"):
        (workers / name).mkdir(parents=True)
        (workers / name / "worker.py").write_text("x = 1\n")
    a, b = workers / "a", workers / "b"
    gone = ChangeWatch.open([str(a), str(a / "worker.py")], moved=[str(workers)])
    moved = ChangeWatch.open([str(b), str(b / "worker.py")], moved=[str(workers)])
    assert gone is not None and moved is not None
    (a / "worker.py").unlink()
    assert gone.changed()
    assert not moved.changed(), "the shared ancestor reported a change inside a sibling"
    workers.rename(tmp_path / "elsewhere")
    assert moved.changed()
