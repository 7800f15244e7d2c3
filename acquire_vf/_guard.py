"""A session's guard: a small process that outlives a session that dies without ending.

Python cleans up after every ending it sees (Ctrl-C, an error, the window closed). It sees
none of these: an abort in a C extension (the Qt binding's ``bool_dealloc`` killed the live
window's process this way), ``kill -9``, running out of memory, or a signal with no handler.
Then the OME-TIFF has no OME-XML, there is no ``session.json``, and the engine host's
shared-memory blocks stay in ``/dev/shm`` (11 blocks, about 60 MB, per killed demo).

So every session starts ``python -m acquire_vf._guard PID RUN_DIR`` in a session of its own
(a Ctrl-C or a job scheduler's signal to the run's process group does not reach it) with a
pipe from the session. A session that ends writes ``done`` into the pipe before it closes;
the guard then exits, having done nothing. If the pipe closes without ``done``, the session
died: the guard waits for its process to be gone, unlinks its shared-memory blocks (named by
its pid), and runs ``recover`` on the run folder (the journal's frames kept and verified, the
OME-XML written, a ``session.json`` rebuilt from the journal, marked ``recovered``).

The guard imports nothing heavy until it has work, and uses no CPU while it waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

DONE = b"done\n"


class Guard:
    """The session's side: :meth:`done` once the session has ended in order."""

    def __init__(self, run_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "acquire_vf._guard", str(os.getpid()), str(run_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True)

    def done(self) -> None:
        """The session ended in order (its files whole, ``session.json`` written or the run
        refused): the guard exits without touching anything."""
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(DONE)
            stdin.close()
        except OSError:  # the guard itself was killed: nothing to tell it
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _gone(pid: int, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.05)
    return False


def clean_up(pid: int, run_dir: Path) -> dict[str, object]:
    """After session ``pid`` died: its shared memory removed, its run folder recovered."""
    from acquire_vf.engine_host import remove_blocks

    did: dict[str, object] = {"shared_memory_removed": remove_blocks(pid)}
    if run_dir.is_dir() and any(run_dir.glob("*.journal")):
        from acquire_vf._recover import recover

        try:
            report, session = recover(run_dir, by="the session's guard",
                                      extra={"shared_memory_removed":
                                             did["shared_memory_removed"]})
            did["frames_kept"] = sum(r.frames for r in report)
            did["session_json"] = str(session) if session else None
        except Exception as e:  # noqa: BLE001 - said; `acquire-vf recover` can be run later
            did["recover_failed"] = f"{type(e).__name__}: {e}"
    return did


def main(argv: list[str]) -> int:
    pid, run_dir = int(argv[0]), Path(argv[1])
    said = sys.stdin.buffer.read()  # blocks, with no CPU, until the session closes the pipe
    if said.startswith(DONE.strip()):
        return 0
    if not _gone(pid, timeout_s=30.0):  # the pipe closes as the process dies; if it lives
        return 0                          # on (it closed the pipe), nothing is touched
    clean_up(pid, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
