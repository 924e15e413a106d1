"""Landlock: the kernel confines a subprocess worker to the directories it may use.

A worker whose runner asks for a sandbox runs behind a Landlock ruleset: it may
read (and execute) below the directories the runtime needs and its envelope's
``filesystem_reads``, and write only below ``filesystem_writes``. Everything
else (the hall's keys and audit log, the user's home) is refused by the kernel,
whatever the worker's code does, and whatever symlinks it meets.

The ruleset is built here, in the gateway, for each call; a tiny launcher in the
child (:data:`LAUNCHER`, run by this interpreter) applies it to itself and execs
the worker, so the restriction holds across ``exec`` and nothing of ours runs
sandboxed. Three syscalls through ``ctypes``: the one Python binding on PyPI
(``landlock``) is a pre-release, and a security boundary should not rest on one.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from collections.abc import Iterable

__all__ = [
    "LAUNCHER",
    "LAUNCHER_FAILED",
    "MIN_ABI",
    "NETWORK_READS",
    "RUNTIME_WRITES",
    "abi_version",
    "build_ruleset",
    "runtime_directories",
]

#: Before ABI 3 (Linux 6.2) Landlock cannot refuse truncating a file: no sandbox then.
MIN_ABI = 3
#: Files any worker may write (file rights only).
RUNTIME_WRITES = ("/dev/null",)
#: What name resolution and TLS read: granted to a worker whose envelope allows egress.
NETWORK_READS = (
    "/etc/resolv.conf",  # often a link into /run/systemd/resolve: the rule follows it
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
)

_CREATE_RULESET, _ADD_RULE = 444, 445  # the same number on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
#: Every filesystem right each ABI version handles (ABI 2 adds REFER, 3 TRUNCATE, 5 IOCTL_DEV).
_HANDLED = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
#: The rights a rule on a file (not a directory) may carry.
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | (1 << 14) | (1 << 15)
_READ = _EXECUTE | _READ_FILE | _READ_DIR
#: Never granted, only refused: device nodes (MAKE_CHAR, MAKE_BLOCK) and device ioctls
#: (IOCTL_DEV) would reach what no directory rule names.
_DEVICES = (1 << 6) | (1 << 11) | (1 << 15)
_TCP = (1 << 0) | (1 << 1)  # BIND_TCP, CONNECT_TCP (ABI 4): handled with no rule, refused
_SCOPES = (1 << 0) | (1 << 1)  # abstract UNIX sockets and signals beyond the sandbox (ABI 6)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 where Landlock is missing or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    version = _libc().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def _handled(abi: int) -> int:
    return _HANDLED[max(v for v in _HANDLED if v <= abi)]


def runtime_directories() -> list[str]:
    """What any worker needs to read: this interpreter's installation and the system's
    programs and libraries (not /etc, /home, /root, /tmp or the hall)."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    found.update(("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc/ld.so.cache"))
    found.update(("/etc/localtime", "/dev/urandom", "/dev/random"))
    return sorted(found)


def build_ruleset(
    abi: int, reads: Iterable[str], writes: Iterable[str], *, tcp: bool = True
) -> int:
    """A ruleset fd (inheritable, for the launcher): read below ``reads``, anything below
    ``writes``, nothing elsewhere. Paths that do not exist are skipped. Without ``tcp``
    (ABI 4+) every TCP connect and bind is refused; from ABI 6 signals and abstract UNIX
    sockets stop at the sandbox's edge. OSError when the kernel refuses."""
    libc = _libc()
    handled = _handled(abi)
    attr = _RulesetAttr(
        handled,
        _TCP if abi >= 4 and not tcp else 0,
        _SCOPES if abi >= 6 else 0,
    )
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8  # what this ABI's struct holds
    fd = libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for paths, rights in ((reads, _READ), (writes, handled & ~_DEVICES)):
            for path in paths:
                _allow(libc, fd, path, rights & handled)
        os.set_inheritable(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _allow(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    try:
        target = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # missing: nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(target).st_mode):
            rights &= _FILE_RIGHTS
        rule = _PathBeneath(rights, target)
        if libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
    finally:
        os.close(target)


#: The launcher's exit status when it could not restrict itself (the worker never ran).
LAUNCHER_FAILED = 126

#: Run as ``python -I -S -c LAUNCHER FD PROGRAM ARGS...``: no site, no environment, no
#: imports but ctypes and os; restrict this process with the ruleset FD, then exec.
LAUNCHER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = int(sys.argv[1])
if libc.prctl(38, 1, 0, 0, 0) or libc.syscall(446, fd, 0):
    sys.stderr.write("pyhall sandbox: landlock_restrict_self failed: "
                     + os.strerror(ctypes.get_errno()) + "\\n")
    sys.exit(126)
os.close(fd)
os.execv(sys.argv[2], sys.argv[2:])
"""
