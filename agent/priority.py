"""CPU priority for background work: cameras and models yield to MQTT ingest.

Measured with ``scripts/bench_vision_ingest.py`` on a 2-core machine: two
ear-tag cameras at normal priority took 22-30 % off the agent's ingest rate
(the detector's C++ runs without the GIL, so the loss is CPU time, not lock
contention, and a separate process did not help). At ``SCHED_IDLE`` ingest
kept its rate, and the cameras still inferred about 1.5 frames per second under
a 500 msg/s live load. When the gateway is busy with a backlog the models get
what is left: frames are then dropped (and counted), never readings.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def lower_current_thread() -> str:
    """Put the calling thread at the lowest CPU priority; threads it starts later
    inherit it. Returns what was done ("idle", "nice", or "unchanged")."""
    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, 19)
        return "nice"
    except (AttributeError, OSError) as err:
        log.warning("could not lower the priority of thread %s: %s", tid, err)
        return "unchanged"
