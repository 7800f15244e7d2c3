"""Every error a user can cause or meet, each with its own exit code.

The CLI prints ``str(err)`` alone and exits with the class's ``exit_code``; ``--debug`` shows the
traceback. Messages say what was expected and what arrived. The README's exit-code table is
generated from :func:`exit_code_table` (a test checks they agree), so a script can tell a typo
in a profile from a full disk by the code alone.
"""

from __future__ import annotations


class TransientFault(RuntimeError):
    """A call that did not run because what runs it is restarting (the engine host after a
    crash or hang): the stage is not broken, and whoever hears of it waits for the recovery
    instead of giving the stage up. Not a user-facing error: it never reaches the CLI."""


class AcquireVFError(Exception):
    """Any other acquire-vf error (the base class: a one-line, user-facing message)."""

    exit_code = 1


class ProfileError(AcquireVFError):
    """A hardware profile or an acquisition plan is missing, unreadable or invalid."""

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


class EngineFileError(AcquireVFError):
    """An engine file (ONNX or TensorRT plan) is corrupt or does not fit."""

    exit_code = 7


class BackendUnavailable(AcquireVFError):
    """An inference backend cannot run here (not installed, no GPU, unsupported precision)."""

    exit_code = 8


class CardError(AcquireVFError):
    """A model card is missing, unreadable or does not match its ONNX file."""

    exit_code = 9


class DataError(AcquireVFError):
    """Training, evaluation or replay data, or a checkpoint, that does not fit."""

    exit_code = 10


class InputImageError(AcquireVFError):
    """An input image for ``predict`` is unreadable or has the wrong shape, type or values."""

    exit_code = 11


class OutputExistsError(AcquireVFError):
    """A command would replace existing data or one of its own inputs."""

    exit_code = 12


class DisplayUnavailable(AcquireVFError):
    """A window was asked for where there is no display (no desktop, no offscreen Qt)."""

    exit_code = 13


ERRORS: tuple[type[AcquireVFError], ...] = (
    AcquireVFError, ProfileError, MicroscopeError, AcquisitionError, StorageError,
    MissingExtraError, EngineFileError, BackendUnavailable, CardError, DataError,
    InputImageError, OutputExistsError, DisplayUnavailable)
"""Every error class, in exit-code order."""


def exit_code_table() -> str:
    """The README's exit-code table (markdown), from the classes themselves."""
    rows = ["| exit code | error | meaning |", "|---|---|---|",
            "| 0 | | success |"]
    for cls in sorted(ERRORS, key=lambda c: c.exit_code):
        doc = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`")
        rows.append(f"| {cls.exit_code} | `{cls.__name__}` | {doc} |")
    rows.append("| 129 | | stopped by SIGHUP, a closed terminal (as Ctrl-C: cancelled, everything "
                "acquired saved) |")
    rows.append("| 130 | | interrupted by Ctrl-C (a run is cancelled, everything acquired saved) |")
    rows.append("| 143 | | stopped by SIGTERM: kill, systemd, a job scheduler, docker stop (as "
                "Ctrl-C) |")
    return "\n".join(rows)
