"""File reader, a subprocess worker confined to the hall's workspace.

``{path}`` -> ``{"path": relative path, "content": text, "truncated": bool}``.
The path is resolved strictly (every symlink, no loops) before it is checked, so
``..``, absolute paths and symlinks that lead outside the workspace are refused.
Protocol: one JSON document on stdin, one ``{"result"}``/``{"error"}`` line out.
"""

from __future__ import annotations

import codecs
import json
import os
import stat
import sys
from typing import Any

MAX_BYTES = 64 * 1024


class Refused(Exception):
    """A message for the client: never a path of ours."""


def confine(workspace: str | None, path: Any) -> tuple[str, str]:
    """(real workspace, real target) with the target inside the workspace."""
    if not workspace:
        raise Refused("no workspace is configured for this hall")
    if not isinstance(path, str) or not path:
        raise Refused("path must be a non-empty string")
    if "\0" in path:
        raise Refused("path must not contain NUL")
    try:
        # strict: the default stops resolving at a symlink loop and leaves later
        # symlinks in the path unfollowed
        root = os.path.realpath(workspace, strict=True)
        target = os.path.realpath(os.path.join(root, path), strict=True)
    except FileNotFoundError:
        raise Refused("no such file in the workspace") from None
    except OSError:
        raise Refused("the path cannot be resolved") from None
    if os.path.commonpath([root, target]) != root:
        raise Refused("path is outside the workspace")
    return root, target


def read(workspace: str | None, path: Any) -> dict[str, Any]:
    root, target = confine(workspace, path)
    try:
        # O_NOFOLLOW: a symlink swapped in after the check is refused; O_NONBLOCK: a FIFO
        # cannot stall us (regular files ignore it).
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise Refused("no such file in the workspace") from None
    except OSError:
        raise Refused("the file cannot be read") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("not a regular file")
        data = b""
        while len(data) <= MAX_BYTES and (chunk := os.read(fd, MAX_BYTES + 1 - len(data))):
            data += chunk
    finally:
        os.close(fd)
    truncated = len(data) > MAX_BYTES
    # an incremental decoder leaves a multi-byte character cut by the cap out
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data[:MAX_BYTES], final=False)
    relative = os.path.relpath(target, root).replace(os.sep, "/")
    return {"path": relative, "content": text, "truncated": truncated}


def main() -> None:
    request = json.load(sys.stdin)
    try:
        context = request.get("context") or {}
        reply: dict[str, Any] = {
            "result": read(context.get("workspace"), request["arguments"].get("path"))
        }
    except Refused as exc:
        reply = {"error": str(exc)}
    sys.stdout.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
