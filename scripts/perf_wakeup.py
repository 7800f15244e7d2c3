"""The floor under the engine host's call overhead on this machine: a bare multiprocessing
pipe, the other process working for ``ms`` before it answers, as the host does while the
network runs. Prints, per ``ms``, the round trip beyond ``ms`` (best and median of 40).

    .venv/bin/python scripts/perf_wakeup.py

A thread that sleeps longer wakes up later (the kernel's, and a virtual machine's, idle
states): this is what ``host_call_ms_per_2048_frame_set`` pays beyond the message itself.
"""

from __future__ import annotations

import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection


def _serve(conn: Connection) -> None:
    while True:
        ms = conn.recv()
        if ms is None:
            return
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < ms / 1e3:  # busy, as a network on the CPU is
            pass
        conn.send(1)


def main() -> None:
    here, there = Pipe()
    p = Process(target=_serve, args=(there,))
    p.start()
    for ms in (0, 1, 5, 30):
        beyond = []
        for _ in range(40):
            t0 = time.perf_counter()
            here.send(ms)
            here.poll(10)
            here.recv()
            beyond.append((time.perf_counter() - t0) * 1e3 - ms)
        beyond.sort()
        print(f"work {ms:>2} ms: round trip beyond it {beyond[0]:.3f} ms best, "
              f"{beyond[len(beyond) // 2]:.3f} ms median")
    here.send(None)
    p.join()


if __name__ == "__main__":
    main()
