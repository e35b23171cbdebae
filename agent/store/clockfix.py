"""Correcting the wall time of records made before the clock was synced (R6).

A gateway without a real-time clock stamps its first records with a wall
clock near 1970. Their monotonic time and boot id are right, so once NTP
answers, ``wall = mono + (wall_now - mono_now)`` for the same boot gives their
true wall time. Corrected rows keep ``clock_synced = 0`` (what was true when
they were made) and get ``wall_corrected = 1``, in the column and in the body
that is uploaded.

Records of the open batch are left as they are: central may have stored that
batch already (its answer lost), and it takes a batch id again only with the
same content. Their times stay uncorrected, as sent (``clock_synced = 0`` says
so at central).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from agent.clock import Clock
from agent.store.migrations import SYNC_TABLES
from agent.store.outbox import open_batch


def clock_offset(clock: Clock) -> float:
    """``wall - mono`` in seconds, read now; valid for this boot while the clock is synced."""
    mono_before = clock.monotonic()
    wall = clock.wall()
    mono_after = clock.monotonic()
    return wall - (mono_before + mono_after) / 2


def correct_unsynced_times(boot_id: str, offset: float) -> Callable[[sqlite3.Connection], int]:
    """A function for ``StoreWriter.call``: fix every uncorrected record of ``boot_id``
    made while the clock was not synced; returns how many rows changed."""

    def run(conn: sqlite3.Connection) -> int:
        changed = 0
        state = open_batch(conn)
        sent = [(str(t), str(r)) for t, r in state["refs"]] if state else []
        for table in SYNC_TABLES:  # constant names, never input
            in_batch = json.dumps([r for t, r in sent if t == table])
            cur = conn.execute(
                f"""UPDATE {table} SET
                    wall_ts = mono_ns / 1e9 + :offset,
                    wall_corrected = 1,
                    body = json_set(body, '$.wall_ts', mono_ns / 1e9 + :offset,
                                    '$.wall_corrected', json('true'))
                WHERE boot_id = :boot AND clock_synced = 0 AND wall_corrected = 0
                  AND record_id NOT IN (SELECT value FROM json_each(:in_batch))""",
                {"offset": offset, "boot": boot_id, "in_batch": in_batch},
            )
            changed += max(cur.rowcount, 0)
        cur = conn.execute(
            """UPDATE quarantine SET wall_ts = mono_ns / 1e9 + :offset, wall_corrected = 1
               WHERE boot_id = :boot AND clock_synced = 0 AND wall_corrected = 0""",
            {"offset": offset, "boot": boot_id},
        )
        return changed + max(cur.rowcount, 0)

    return run
