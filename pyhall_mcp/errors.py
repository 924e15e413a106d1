"""Every exception pyhall-mcp raises on purpose lives here.

Configuration errors carry the file, the place in it and the fix, so that a
refusal to start reads like an instruction rather than a traceback.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

__all__ = [
    "ApprovalError",
    "AttestationError",
    "AuditError",
    "ConfigError",
    "IntegrityError",
    "PolicyError",
    "PyhallError",
    "RegistryError",
    "RuleError",
    "SigningError",
    "WorkerError",
    "report_failure",
    "unreadable",
]


def report_failure(where: str, exc: BaseException | None = None) -> None:
    """Tell the operator (stderr) that ``where`` failed; the caller only learns a code.

    Call it while handling the exception. An error pyhall-mcp described needs no
    traceback. It never raises: a report must not turn a denial into a leak.
    """
    with contextlib.suppress(Exception):  # stderr itself is gone: nothing left to tell
        if isinstance(exc, PyhallError):
            sys.stderr.write(f"pyhall: {where}: {exc}\n")
        else:
            sys.stderr.write(f"pyhall: {where} failed:\n{traceback.format_exc()}")


class PyhallError(Exception):
    """Base class of every pyhall-mcp error."""


class ConfigError(PyhallError):
    """Invalid configuration: names the file, the location in it and the fix."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        location: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.location = location
        self.fix = fix
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ": ".join(part for part in (self.file, self.location) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text

    def as_dict(self) -> dict[str, str | None]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "file": self.file,
            "location": self.location,
            "fix": self.fix,
        }


class RuleError(ConfigError):
    """A routing rule file is invalid."""


def unreadable(exc: OSError) -> ConfigError:
    """The configuration error for a hall path the gateway's user cannot use."""
    return ConfigError(
        f"cannot use this path: {exc.strerror or exc}",
        file=exc.filename if isinstance(exc.filename, str) else None,
        fix="make it readable (and the state directory writable) by the user pyhall runs as",
    )


class RegistryError(ConfigError):
    """A worker enrollment record is invalid."""


class PolicyError(ConfigError):
    """A policy file is invalid."""


class SigningError(ConfigError):
    """A signing key or keyring is missing or invalid."""


class AttestationError(PyhallError):
    """A worker package failed attestation; ``code`` is an ``ATTEST_*`` code."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class AuditError(PyhallError):
    """The audit store could not record or read receipts."""


class IntegrityError(AuditError):
    """The receipt chain does not verify; ``seq`` names the first broken record."""

    def __init__(self, message: str, *, seq: int | None = None, receipt_id: str | None = None):
        self.seq = seq
        self.receipt_id = receipt_id
        super().__init__(message)


class ApprovalError(PyhallError):
    """A pending approval is unknown, expired, already used or not bound to this call."""


class WorkerError(PyhallError):
    """Raised by a Python worker to fail a call with a message meant for the client.

    Any other exception from a worker is reported to the client only by its type
    name, since its text may carry paths or data of the hall.
    """
