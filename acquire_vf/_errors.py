"""Error types whose message is the one line a user sees.

Every error a user can cause or meet (a profile typo, an unreachable microscope, a full disk)
is one of these. The CLI prints ``str(err)`` alone and exits non-zero; ``--debug`` shows the
traceback. Messages say what was expected and what arrived.
"""

from __future__ import annotations


class AcquireVFError(Exception):
    """Base class: an error with a one-line, user-facing message."""

    exit_code = 1


class ProfileError(AcquireVFError):
    """A hardware profile is missing, unreadable or invalid."""

    exit_code = 2


class MicroscopeError(AcquireVFError):
    """Micro-Manager could not be started, reached or configured."""

    exit_code = 3


class AcquisitionError(AcquireVFError):
    """The acquisition stopped abnormally (buffer overflow, hardware error)."""

    exit_code = 4


class StorageError(AcquireVFError):
    """Frames could not be written or read back (disk full, permissions, corrupt file)."""

    exit_code = 5


class MissingExtraError(AcquireVFError):
    """An optional dependency is not installed."""

    exit_code = 6

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this needs the '{module}' package, which is not installed; "
            f'install it with: pip install "acquire-vf[{extra}]"'
        )
