"""nixld's exceptions: each carries a one-line message and the shell exit status it maps to."""

from __future__ import annotations


class NixLdError(Exception):
    """Base of every error nixld raises for a problem the user can fix."""

    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(NixLdError):
    """The command line is wrong."""

    exit_status = 2


class OutputError(NixLdError):
    """nixld's own output could not be written: stdout is closed, full or not writable."""


class LaunchError(NixLdError):
    """The program cannot be launched; raised before anything is executed."""

    exit_status = 126


class ProgramNotFound(LaunchError):
    """The program does not exist or is not on PATH."""

    exit_status = 127


class NotExecutable(LaunchError):
    """The program exists but cannot be executed: a directory, no permission, not ELF, corrupt."""


class ArchitectureMismatch(LaunchError):
    """The program is built for a machine this one cannot run."""


class LoaderError(LaunchError):
    """The loader is missing, is not an ELF program loader, or does not fit the program.

    The message is `subject reason: advice`, and each part is kept: `subject` names the loader
    and where it came from, `reason` says what is wrong with it, `advice` which setting to change
    (None when the file itself must be fixed)."""

    def __init__(self, subject: str, reason: str, advice: str | None = None) -> None:
        super().__init__(f"{subject} {reason}" + (f": {advice}" if advice else ""))
        self.subject = subject
        self.reason = reason
        self.advice = advice


def display(path: bytes) -> str:
    """A path as it should appear in a one-line message: undecodable bytes as \\xNN escapes."""
    return path.decode(errors="backslashreplace")
