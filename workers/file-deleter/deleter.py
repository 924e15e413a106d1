"""File deleter: removes one regular file inside the hall's workspace.

``{path}`` -> ``{"deleted": relative path}``. The directory part is resolved
(symlinks included) and must lie inside the workspace; the last component is
not followed: directories and symlinks are refused, so nothing outside the
workspace is touched. Destructive: the demo hall holds it for a human.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from pyhall_mcp.errors import WorkerError


def run(arguments: dict[str, Any], context: Any) -> dict[str, str]:
    workspace = getattr(context, "workspace", None)
    path = arguments.get("path")
    if not workspace:
        raise WorkerError("no workspace is configured for this hall")
    if not isinstance(path, str) or not path:
        raise WorkerError("path must be a non-empty string")
    if "\0" in path:
        raise WorkerError("path must not contain NUL")
    try:
        # strict: the default stops resolving at a symlink loop and leaves later
        # symlinks in the path unfollowed
        root = os.path.realpath(workspace, strict=True)
        head, name = os.path.split(os.path.join(root, path))
        parent = os.path.realpath(head, strict=True)
    except FileNotFoundError:
        raise WorkerError("no such file in the workspace") from None
    except OSError:
        raise WorkerError("the path cannot be resolved") from None
    if os.path.commonpath([root, parent]) != root:
        raise WorkerError("path is outside the workspace")
    if name in ("", ".", ".."):
        raise WorkerError("not a regular file")
    try:
        directory = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        raise WorkerError("no such file in the workspace") from None
    try:
        # lstat and unlink relative to the directory we checked: the name is never followed
        mode = os.lstat(name, dir_fd=directory).st_mode
        if not stat.S_ISREG(mode):
            raise WorkerError("not a regular file")
        os.unlink(name, dir_fd=directory)
    except FileNotFoundError:
        raise WorkerError("no such file in the workspace") from None
    except PermissionError:
        raise WorkerError("the file cannot be deleted") from None
    finally:
        os.close(directory)
    relative = os.path.relpath(os.path.join(parent, name), root).replace(os.sep, "/")
    return {"deleted": relative}
