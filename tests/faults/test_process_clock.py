"""T11: no real-time clock. The agent starts with its wall clock in 1970, the
clock then steps forward 56 years (NTP answers), then back one hour.

Nothing is lost; records made before the sync keep clock_synced = 0 with their
mono_ns and boot_id (and get their wall time corrected from mono_ns); retention
running every second across the steps deletes nothing.

Why not libfaketime: with FAKETIME_DONT_FAKE_MONOTONIC=1, libfaketime 0.9.10
(Debian bookworm) makes every Python ``time.sleep`` fail with EINVAL (its
clock_nanosleep wrapper shifts the absolute CLOCK_MONOTONIC deadline by the
wall offset), and without it the monotonic clock steps too, which is exactly
what must not happen. So the test builds a 40-line LD_PRELOAD shim that steps
CLOCK_REALTIME only (clock_gettime, gettimeofday, time), reading the offset
from a file, as libfaketime's FAKETIME_TIMESTAMP_FILE does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e_harness import BackgroundPublisher, Barn, barn, wait_until

from agent.config.model import GatewayConfig
from agent.sources.simulator import BarnSimulator

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*cg_t)(clockid_t, struct timespec *);
static cg_t real_cg;
static volatile double offset;
static volatile long last_read_ns;

static double wall_offset(void) {
    if (!real_cg) real_cg = (cg_t)dlsym(RTLD_NEXT, "clock_gettime");
    struct timespec now;
    real_cg(CLOCK_MONOTONIC, &now);
    long now_ns = now.tv_sec * 1000000000L + now.tv_nsec;
    if (last_read_ns == 0 || now_ns - last_read_ns > 20000000L) {  /* re-read every 20 ms */
        const char *path = getenv("WALLCLOCK_OFFSET_FILE");
        FILE *f = path ? fopen(path, "r") : NULL;
        if (f) { double v; if (fscanf(f, "%lf", &v) == 1) offset = v; fclose(f); }
        last_read_ns = now_ns;
    }
    return offset;
}

static void shift(struct timespec *ts) {
    double off = wall_offset();
    long sec = (long)off;
    long nsec = (long)((off - (double)sec) * 1e9);
    ts->tv_sec += sec;
    ts->tv_nsec += nsec;
    while (ts->tv_nsec < 0) { ts->tv_nsec += 1000000000L; ts->tv_sec -= 1; }
    while (ts->tv_nsec >= 1000000000L) { ts->tv_nsec -= 1000000000L; ts->tv_sec += 1; }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_cg) real_cg = (cg_t)dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real_cg(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    return 0;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""

BOOT_WALL = 300.0  # 1970-01-01 00:05 UTC: a Raspberry Pi without RTC, before NTP


def _build_shim(folder: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed for the wall-clock shim (apt-get install gcc)"
    src = folder / "wallclock.c"
    src.write_text(SHIM_C)
    lib = folder / "libwallclock.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return lib


class WallClock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set_wall(self, wall: float) -> None:
        """Make the agent's wall clock read ``wall`` now (a step)."""
        self.set_offset(wall - time.time())

    def set_offset(self, offset: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:.6f}\n")
        tmp.replace(self.path)  # atomic: the shim never reads half a number


@pytest.fixture
def clock_farm(tmp_path: Path) -> Iterator[tuple[Barn, WallClock]]:
    lib = _build_shim(tmp_path)
    clock = WallClock(tmp_path / "wall-offset")
    clock.set_wall(BOOT_WALL)
    env = {"LD_PRELOAD": str(lib), "WALLCLOCK_OFFSET_FILE": str(clock.path)}
    for farm in barn(tmp_path, agent_env=env,
                     agent_overrides={"store": {"retention_interval_s": 1.0}}):
        yield farm, clock


def _publish(farm: Barn, sim: BarnSimulator, n: int) -> set[str]:
    report = BackgroundPublisher(sim.take(n), farm.broker.port, rate=None).join()
    assert report.complete, report.summary()
    keys = set(report.acked)
    farm.wait_all_at_central(keys, timeout=90)
    return keys


def _rows(farm: Barn, keys: set[str]) -> list[tuple[float, int, str, int, int]]:
    rows = farm.buffer("SELECT record_id, wall_ts, mono_ns, boot_id, clock_synced, "
                       "wall_corrected FROM readings")
    return [tuple(r[1:]) for r in rows if r[0] in keys]  # type: ignore[misc]


@pytest.mark.slow
def test_t11_clock_steps_lose_nothing(clock_farm: tuple[Barn, WallClock]) -> None:
    farm, clock = clock_farm
    sim = BarnSimulator.from_dir(GatewayConfig().firmware_dir, seed=11, topic_prefix=farm.prefix)

    before = _publish(farm, sim, 200)  # made in 1970, clock not synced
    rows = _rows(farm, before)
    assert len(rows) == len(before)
    assert all(synced == 0 and mono > 0 and boot for _w, mono, boot, synced, _c in rows)
    assert all(wall < 86400 for wall, *_ in rows), "records before sync carry the 1970 time"
    central = farm.db.query("SELECT bool_or(clock_synced), min(mono_ns), count(DISTINCT boot_id)"
                            " FROM readings WHERE device_id = %s", (farm.gateway_id,))[0]
    assert central[0] is False and central[1] > 0 and central[2] == 1

    clock.set_offset(0.0)  # +56 years: NTP answered
    wait_until(lambda: farm.central_events("clock_synced") == 1, 30, "the clock_synced event")
    after_step = _publish(farm, sim, 200)
    wait_until(lambda: all(c == 1 for *_x, c in _rows(farm, before)), 30,
               "pre-sync records to get their wall time corrected from mono_ns")
    now = time.time()
    for wall, _mono, _boot, synced, _c in _rows(farm, before):
        assert synced == 0 and abs(wall - now) < 600, "corrected wall time is off"
    assert all(s == 1 for *_x, s, _c in _rows(farm, after_step))

    clock.set_offset(-3600.0)  # NTP steps back an hour
    after_back = _publish(farm, sim, 200)
    back_walls = [w for w, *_ in _rows(farm, after_back)]
    assert max(back_walls) < time.time() - 3000, "the agent does not see the backward step"

    everything = before | after_step | after_back
    missing, dups, unexpected = farm.check_exactly_once(everything)
    assert not missing and dups == 0 and not unexpected
    wait_until(lambda: farm.backlog() == 0, 60, "the outbox to empty")
    # Retention (every 1 s, synced_max_age_s 30 days) ran across a 56-year step:
    # nothing may have been deleted.
    assert len(_rows(farm, everything)) == len(everything)
    assert farm.agent.alive and farm.integrity() == "ok"
