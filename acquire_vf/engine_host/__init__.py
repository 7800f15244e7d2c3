"""The engine host: engines in their own process, so a crashed, hung or out-of-memory engine
never touches acquisition.

The session starts ``python -m acquire_vf.engine_host`` (operators see it by that name) and
talks to it over a local socket: a control connection for the heartbeat, and one connection
per engine for load, warm-up and runs. Pixels never go through the socket: each engine has a
shared-memory block that holds a batch of tiles in and the network's output back, as numpy
views on both sides. :class:`EngineHost` supervises the process (heartbeat, deadline, restart
with backoff); :class:`HostedRunner` is a :class:`~acquire_vf.inference.Runner` whose calls run
in the host. docs/engine-host.md says what is promised.
"""

from acquire_vf.engine_host._client import EngineHost, EngineHostFault, HostedRunner
from acquire_vf.engine_host._shm import remove_blocks, session_blocks, sweep_orphans

__all__ = ["EngineHost", "EngineHostFault", "HostedRunner", "remove_blocks", "session_blocks",
           "sweep_orphans"]
