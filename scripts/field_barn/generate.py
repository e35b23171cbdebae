#!/usr/bin/env python3
"""field_barn: a labelled barn traffic generator, written apart from the agent's rules.

    generate.py --seed N --days D -o DIR

Writes DIR/messages.jsonl (replay input, sorted by arrival), DIR/farm.json (farm
events, --farm format), DIR/labels.jsonl (episodes, scripts/alt_barn/score.py
format) and DIR/farm_params.json (the farm drawn from the seed). Every farm
parameter is drawn from the seed; see scripts/field_barn/README.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import os
import random
import struct
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

WIN = 900  # collar window, s (firmware: rumination minutes 0-15 in a window)
DAY = 86400
# optional windows in which the device could not show an episode of that rule
BLIND = {"sensor_stuck", "sensor_drift", "sensor_dropout", "collar_stuck", "collar_off", "collar_dead",
         "collar_dropout", "collar_removed"}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def thi(t: np.ndarray, rh: np.ndarray) -> np.ndarray:
    # NRC 1971: THI = (1.8 T + 32) - (0.55 - 0.0055 RH)(1.8 T - 26)
    return (1.8 * t + 32) - (0.55 - 0.0055 * rh) * (1.8 * t - 26)


def smooth(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    out = np.empty_like(x)
    out[k - 1:] = (c[k:] - c[:-k]) / k
    out[:k - 1] = x[:k - 1]
    return out


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs where mask is true."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


class Farm:
    def __init__(self, seed: int, days: float) -> None:
        self.r = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.days = days
        self.msgs: list[tuple[float, int, str]] = []
        self.labels: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.p: dict[str, Any] = {"seed": seed, "days": days}
        self.n_seq = 0
        self.counts: dict[str, int] = {}

    # ---- output helpers -------------------------------------------------
    def emit(self, arrival: float, topic: str, payload: str | bytes, kind: str) -> None:
        if isinstance(payload, bytes):
            line = json.dumps({"ts": iso(arrival), "topic": topic,
                               "payload_b64": base64.b64encode(payload).decode()})
        else:
            line = json.dumps({"ts": iso(arrival), "topic": topic, "payload": payload})
        self.n_seq += 1
        self.msgs.append((arrival, self.n_seq, line))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.r.random() < self.p["dup_rate"]:  # QoS 1 redelivery: same payload again
            self.n_seq += 1
            self.msgs.append((arrival + self.r.uniform(0.05, 8.0), self.n_seq, line))
            self.counts["duplicate"] = self.counts.get("duplicate", 0) + 1

    def label(self, rule: str, subject: str, onset: float, end: float, detectable: float | None = None,
              **kw: Any) -> None:
        lab: dict[str, Any] = {"rule": rule, "subject": str(subject), "onset": iso(onset), "end": iso(end),
                               "detectable": iso(onset if detectable is None else detectable)}
        lab.update({k: v for k, v in kw.items() if v is not None and v is not False})
        self.labels.append(lab)

    def event(self, t: float, typ: str, **kw: Any) -> None:
        if self.t0 <= t <= self.t1:
            self.events.append({"ts": iso(t), "type": typ, **kw})

    def outage_arrival(self, dev: str, t: float) -> float | None:
        """Arrival time of a message sent at true time t by device dev: None if lost."""
        for a, b, buffered in self.gaps.get(dev, ()):
            if a <= t < b:
                if not buffered:
                    return None
                # backlog flushed on reconnect, a few messages a second
                return b + (t - a) / max(1.0, (b - a)) * self.r.uniform(5, 90)
        return t + self.r.uniform(0.03, 1.5)

    # ---- the farm -------------------------------------------------------
    def draw(self) -> None:
        r, p = self.r, self.p
        year = r.choice([2024, 2025, 2026])
        season = r.choices(["summer", "shoulder", "winter"], [0.5, 0.3, 0.2])[0]
        month = {"summer": r.choice([6, 7, 8]), "shoulder": r.choice([4, 5, 9, 10]),
                 "winter": r.choice([11, 12, 1, 2])}[season]
        self.t0 = datetime(year, month, r.randint(1, 27), tzinfo=UTC).timestamp()
        self.t1 = self.t0 + self.days * DAY
        p["start"] = iso(self.t0)
        p["utc_offset_h"] = r.choice([-8, -6, -5, -3, 0, 1, 2, 3, 5.5, 6, 8, 10])
        p["climate"] = r.choice(["cool_temperate", "warm_temperate", "continental", "hot_humid", "hot_dry"])
        base = {"cool_temperate": (8, 17), "warm_temperate": (14, 24), "continental": (8, 26),
                "hot_humid": (22, 30), "hot_dry": (20, 31)}[p["climate"]]
        shift = {"summer": 0.0, "shoulder": -5.0, "winter": -12.0}[season]
        p["season"] = season
        p["outdoor_mean_c"] = round(r.uniform(*base) + shift, 1)
        p["daily_amplitude_c"] = round(r.uniform(3, 8) if "hot_dry" != p["climate"] else r.uniform(6, 10), 1)
        p["rh_mean"] = round({"hot_humid": r.uniform(65, 85), "hot_dry": r.uniform(25, 45)}.get(
            p["climate"], r.uniform(55, 80)), 1)
        p["heatwave"] = r.random() < 0.5
        p["herd"] = r.randint(40, 400)
        p["breed"] = r.choice(["holstein", "holstein", "jersey", "crossbred", "brown_swiss"])
        p["housing"] = r.choices(["freestall_parlour", "robot", "tiestall"], [0.55, 0.25, 0.2])[0]
        if p["housing"] == "robot":
            p["milking"] = "robot"
            p["robots"] = max(1, math.ceil(p["herd"] / r.uniform(50, 70)))
        else:
            p["milking"] = r.choice(["2x", "2x", "3x"]) if p["housing"] == "freestall_parlour" else "2x"
        local = {"2x": [r.uniform(4.5, 6.5), r.uniform(15.5, 18)],
                 "3x": [r.uniform(4, 5.5), r.uniform(12, 13.5), r.uniform(20, 21.5)], "robot": []}[p["milking"]]
        p["milking_local_h"] = [round(x, 2) for x in local]
        p["milking_utc_h"] = [round((x - p["utc_offset_h"]) % 24, 2) for x in local]
        p["feed_local_h"] = [round(r.uniform(6.5, 9), 2)] + ([round(r.uniform(14, 18), 2)] if r.random() < 0.6 else [])
        p["collared_fraction"] = round(r.uniform(0.55, 1.0), 2)
        p["activity_scale"] = round(r.uniform(60, 420) * (0.55 if p["housing"] == "tiestall" else 1.0), 1)
        p["rumination_min_day"] = round(r.uniform(430, 560) * (0.92 if p["breed"] == "jersey" else 1.0), 1)
        p["climate_nodes"] = r.choice([1, 1, 2, 3, 4])
        p["tanks"] = r.choice([1, 1, 2])
        p["tank_has_level"] = [r.random() < 0.45 for _ in range(p["tanks"])]
        p["tank_has_agitator"] = [r.random() < 0.7 for _ in range(p["tanks"])]
        p["tank_has_wash"] = [r.random() < 0.5 for _ in range(p["tanks"])]
        p["precooler"] = r.random() < 0.5
        p["collection_every_d"] = r.choice([1, 1, 2, 2, 3]) if p["herd"] < 150 else r.choice([1, 1, 2])
        p["milk_meters"] = (p["housing"] != "tiestall") or r.random() < 0.5
        p["meter_ec"] = "quarter" if p["milking"] == "robot" else r.choice(["quarter", "composite"])
        p["water_meters"] = r.choice([0, 1, 2])
        p["dup_rate"] = round(r.uniform(0.0, 0.02), 4)
        p["records_milkings"] = r.random() < 0.35
        p["records_schedule"] = p["milking"] != "robot" and r.random() < 0.4
        p["records_collections"] = r.random() < 0.5
        p["records_heats_fraction"] = round(r.uniform(0, 0.5), 2)
        p["records_calvings_fraction"] = round(r.uniform(0.8, 1.0), 2)
        p["names"] = r.choice(["a", "b", "c"])
        self.gaps: dict[str, list[tuple[float, float, bool]]] = {}

    def dev_gaps(self, dev: str, n_per_21d: float, buffered_p: float, max_h: float = 3.0,
                 quiet_after_s: float = 3600.0) -> None:
        r = self.r
        out = []
        for _ in range(np.random.default_rng(r.getrandbits(32)).poisson(n_per_21d * self.days / 21)):
            a = self.t0 + r.uniform(0.5, self.days - 0.2) * DAY
            b = a + r.uniform(120, max_h * 3600)
            out.append((a, min(b, self.t1), r.random() < buffered_p))
        self.gaps[dev] = sorted(out)
        for a, b, buf in out:
            if b - a >= 1800 or not buf:
                # the silence lasts until the device next has something to send
                self.label("sensor.dropout", dev, a, b + (0 if buf else quiet_after_s), optional=True,
                           kind="wifi_gap", buffered=buf)

    # ---- climate --------------------------------------------------------
    def climate(self) -> None:
        r, p = self.r, self.p
        n = int(self.days * 1440)
        tm = self.t0 + 60 * np.arange(n)
        hloc = ((tm - self.t0) / 3600 + p["utc_offset_h"]) % 24
        nd = math.ceil(self.days) + 2
        anom = np.zeros(nd)
        for i in range(1, nd):
            anom[i] = 0.7 * anom[i - 1] + self.np.normal(0, 2.0)
        if p["heatwave"]:
            s = r.randint(0, max(0, nd - 5))
            ln = r.randint(3, 6)
            anom[s:s + ln] += r.uniform(4, 9)
            p["heatwave_days"] = [s, s + ln]
        # interpolate the daily anomaly, a diurnal cycle peaking at 15:00 local
        mean = p["outdoor_mean_c"] + np.interp((tm - self.t0) / DAY, np.arange(nd), anom)
        amp = p["daily_amplitude_c"] * np.interp((tm - self.t0) / DAY, np.arange(nd),
                                                 1 + 0.2 * self.np.normal(size=nd))
        out_t = mean + amp * np.cos((hloc - 15) / 24 * 2 * np.pi)
        out_rh = np.clip(p["rh_mean"] - 2.8 * (out_t - mean) + 4 * np.interp(
            (tm - self.t0) / DAY, np.arange(nd), self.np.normal(0, 1, nd)), 12, 100)
        self.out_t = out_t
        self.min_t = tm
        names = {"a": "clim-{}", "b": "th{:02d}", "c": "barn-env-{}"}[p["names"]]
        self.climate_ids = []
        for k in range(p["climate_nodes"]):
            sid = names.format(k + 1)
            self.climate_ids.append(sid)
            off = r.uniform(0.5, 3.0)
            solar = r.uniform(0.0, 2.5)
            t = out_t + off + solar * np.clip(np.cos((hloc - 14) / 24 * 2 * np.pi), 0, None)
            t = t + smooth(self.np.normal(0, 0.35, n), 15)
            rh = np.clip(out_rh + r.uniform(0, 8) + smooth(self.np.normal(0, 1.5, n), 15), 5, 100)
            self.heat_labels(sid, tm, t, rh)
            self.climate_node(sid, tm, t, rh)
        self.barn_t = out_t + 1.5
        self.barn_thi = thi(self.barn_t, np.clip(out_rh + 4, 0, 100))

    def heat_labels(self, sid: str, tm: np.ndarray, t: np.ndarray, rh: np.ndarray) -> None:
        h = smooth(thi(t, rh), 30)
        # cows need some 6 h of cooler air to shed the heat load: spells closer than that are one episode
        for a, b in self._merge(runs(h >= 72), 360):
            if b - a < 30:
                continue
            peak = float(h[a:b].max())
            opt = (b - a) < 60 or peak < 73
            self.label("heat_stress", sid, tm[a], tm[b - 1] + 60, tm[a] + 900, optional=opt,
                       thi_peak=round(peak, 1), minutes=b - a)
        for a, b in self._merge(runs((h >= 68) & (h < 72)), 60):
            if b - a >= 180:
                self.label("heat_stress", sid, tm[a], tm[b - 1] + 60, optional=True, kind="mild_68_72")

    @staticmethod
    def _merge(rs: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
        out: list[list[int]] = []
        for a, b in rs:
            if out and a - out[-1][1] < gap:
                out[-1][1] = b
            else:
                out.append([a, b])
        return [(a, b) for a, b in out]

    def faults(self, sid: str, tm: np.ndarray, vals: list[np.ndarray], period: float,
               spike: tuple[float, float], drift_per_day: float, n: float,
               extra_opt: list[tuple[str, str]] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
        """Apply labelled sensor faults to value arrays; returns (values, alive mask)."""
        r = self.r
        alive = np.ones(len(tm), bool)
        vals = [v.copy() for v in vals]
        k = self.np.poisson(n * self.days / 21)
        drifted = False
        for _ in range(k):
            kind = r.choice(["spike", "stuck", "dropout", "drift"])
            if kind == "drift" and drifted:  # one drift a device: it does not start over
                kind = "spike"
            drifted = drifted or kind == "drift"
            i = r.randrange(int(len(tm) * 0.1), len(tm) - 10)
            t = tm[i]
            if kind == "spike":
                m = r.randint(1, 3)
                mag = r.uniform(*spike) * r.choice([-1, 1]) if spike[0] > 0 else r.uniform(*spike)
                vals[0][i:i + m] += mag
                end = tm[min(len(tm) - 1, i + m)]
                self.label("sensor.spike", sid, t, end, t, magnitude=round(mag, 1))
                for rule, subj in extra_opt or []:
                    self.label(rule, subj, t, end + 1800, optional=True, kind="sensor_spike")
            elif kind == "stuck":
                m = int(r.uniform(3, 20) * 3600 / period)
                for v in vals:
                    v[i:i + m] = v[i]
                end = tm[min(len(tm) - 1, i + m)]
                self.label("sensor.stuck", sid, t, end, t + 4 * period + 1800)
                for rule, subj in extra_opt or []:
                    self.label(rule, subj, t, end + 3600, optional=True, kind="sensor_stuck")
            elif kind == "dropout":
                m = int(r.uniform(2, 14) * 3600 / period)
                alive[i:i + m] = False
                end = tm[min(len(tm) - 1, i + m)]
                self.label("sensor.dropout", sid, t, end, t + max(3 * period, 900))
                for rule, subj in extra_opt or []:
                    self.label(rule, subj, t, end + 3600, optional=True, kind="sensor_dropout")
            else:
                m = len(tm) - i
                rate = drift_per_day * r.uniform(0.5, 2.0) * r.choice([-1, 1])
                ramp = rate * (tm[i:] - t) / DAY
                vals[0][i:] += ramp
                hit = np.flatnonzero(np.abs(ramp) >= 2.0)
                det = float(tm[i + hit[0]]) if len(hit) else None
                # a lone climate node has no neighbour to be compared with: ambiguous
                alone = sid in getattr(self, "climate_ids", []) and self.p["climate_nodes"] == 1
                self.label("sensor.drift", sid, t, self.t1, det if det else self.t1, optional=det is None or alone,
                           rate_per_day=round(rate, 2), kind="no_reference" if alone else None)
                one = np.flatnonzero(np.abs(ramp) >= 1.0)  # blind to the rule once a unit off
                for rule, subj in (extra_opt or []) if len(one) else []:
                    self.label(rule, subj, float(tm[i + one[0]]), self.t1, optional=True, kind="sensor_drift")
        return vals, alive

    def climate_node(self, sid: str, tm: np.ndarray, t: np.ndarray, rh: np.ndarray) -> None:
        r = self.r
        self.dev_gaps(sid, r.uniform(0, 4), r.uniform(0, 1))
        (t, rh), alive = self.faults(sid, tm, [t, rh], 60, (8, 22), 0.6, r.uniform(0, 1.5),
                                     extra_opt=[("heat_stress", sid)])
        clock = r.choice([0.0, 0.0, r.uniform(-90, 90), r.uniform(-600, 600)])
        boot, seq = r.randint(1, 400), r.randint(0, 50000)
        reboots = {int(x) for x in self.np.integers(0, len(tm), self.np.poisson(2 * self.days / 21))}
        unsynced = 0
        bat = r.uniform(2.9, 3.3)
        replaced = len(tm) // 2 + r.randint(0, len(tm) // 3) if r.random() < 0.15 else None
        topic = f"barn/climate/{sid}"
        for i in range(len(tm)):
            if i in reboots:
                boot, seq, unsynced = boot + 1, 0, r.randint(1, 6)
            if replaced is not None and i == replaced:  # same node id, new unit: fresh counters
                boot, seq, unsynced, clock = 1, 0, r.randint(1, 4), 0.0
                self.p.setdefault("replaced", []).append({"device": sid, "at": iso(tm[i])})
            if not alive[i]:
                continue
            true = tm[i] + r.uniform(0, 3)
            arr = self.outage_arrival(sid, true)
            seq += 1
            if arr is None:
                continue
            bat -= 0.15 / (21 * 1440)
            d: dict[str, Any] = {"boot": boot, "seq": seq}
            if unsynced:
                unsynced -= 1
            else:
                d["ts"] = int(true + clock)
            d["t"] = round(float(t[i]), 2)
            d["rh"] = round(float(np.clip(rh[i], 0, 100)), 1)
            d["bat"] = round(bat, 2)
            self.emit(arr, topic, json.dumps(d, separators=(",", ":")), "climate")

    # ---- herd -----------------------------------------------------------
    def herd(self) -> None:
        r, p, g = self.r, self.p, self.np
        n = p["herd"]
        W = int(self.days * DAY // WIN)
        tw = self.t0 + WIN * (np.arange(W) + 1)  # window ends
        hloc = ((tw - self.t0) / 3600 + p["utc_offset_h"]) % 24
        first = r.choice([1, 100, 1000, r.randint(1, 5000)])
        ids = sorted(r.sample(range(first, first + n * 3), n))
        # diurnal profiles, herd level
        act_prof = np.full(W, 1.0) - 0.45 * ((hloc < 4) | (hloc > 22))
        rum_prof = np.full(W, 1.0) + 0.35 * ((hloc < 5) | (hloc > 21))
        sess = p["milking_local_h"]
        for h in sess:
            near = np.abs(((hloc - h + 12) % 24) - 12) < 1.0
            act_prof += 0.9 * near
            rum_prof -= 0.45 * near
        feed_delay_days = {d for d in range(int(self.days)) if r.random() < 0.12}
        p["feed_delay_days"] = sorted(feed_delay_days)
        for fh in p["feed_local_h"]:
            for d in range(math.ceil(self.days) + 1):
                delay = r.uniform(2, 6) if d in feed_delay_days else r.uniform(-0.3, 0.3)
                start_loc = fh + delay
                rel = ((tw - self.t0) / 3600 + p["utc_offset_h"]) - d * 24 - start_loc
                act_prof += 0.7 * ((rel >= 0) & (rel < 1.2))
                rum_prof -= 0.35 * ((rel >= 0) & (rel < 1.5))
                if d in feed_delay_days:  # hungry, waiting: less cud, more walking before the feed
                    wait = (rel >= -delay) & (rel < 0)
                    rum_prof -= 0.3 * wait
                    act_prof += 0.25 * wait
        # heat: the whole herd ruminates less and moves less by day on hot days
        bthi = np.interp(tw, self.min_t, smooth(self.barn_thi, 60))
        heat = np.clip(bthi - 68, 0, 15)
        rum_prof *= 1 - 0.012 * heat
        act_prof *= 1 - 0.01 * heat
        rum_prof = np.clip(rum_prof, 0.15, None)
        act_prof = np.clip(act_prof, 0.2, None)
        act_base = p["activity_scale"] * g.lognormal(0, 0.25, n)
        rum_base = np.clip(g.normal(p["rumination_min_day"], 45, n), 300, 680) / 96
        A = np.ones((n, W))
        R = np.ones((n, W))
        # lactation and reproduction
        dim0 = g.uniform(-60, 420, n)
        dry_at = np.full(n, np.inf)
        calve_at = np.where(dim0 < 0, self.t0 - dim0 * DAY, np.inf)
        for c in range(n):
            if dim0[c] > 0 and r.random() < 0.9:
                dd = r.uniform(280, 400)
                if dim0[c] < dd < dim0[c] + self.days:
                    dry_at[c] = self.t0 + (dd - dim0[c]) * DAY
        self.dim0 = dim0
        self.calve_at = calve_at
        self.dry_at = dry_at
        self.ids = ids
        collared = [r.random() < p["collared_fraction"] for _ in range(n)]
        # fitted later: a fresh heifer or a cow getting a collar mid-run
        fitted = [self.t0 if r.random() > 0.08 else self.t0 + r.uniform(0.5, self.days * 0.6) * DAY
                  for _ in range(n)]
        self.fitted = fitted
        # some farms take the collar off at dry-off: silence that is no fault
        self.collar_stop = [float(dry_at[c]) if collared[c] and np.isfinite(dry_at[c]) and r.random() < 0.3
                            else np.inf for c in range(n)]
        for c in range(n):
            if np.isfinite(self.collar_stop[c]):
                self.label("rumination", str(ids[c]), self.collar_stop[c], self.t1, optional=True,
                           kind="collar_removed")
        wi = (lambda t: int(np.clip((t - self.t0) // WIN, 0, W)))
        tie = p["housing"] == "tiestall"

        def bump(arr: np.ndarray, c: int, a: float, b: float, shape: np.ndarray) -> None:
            ia = int((a - self.t0) // WIN)  # the window index of the shape's first value
            i, j = max(0, ia), min(W, ia + len(shape), int((b - self.t0) // WIN) + 1)
            if j > i:
                arr[c, i:j] *= shape[i - ia: j - ia]

        def hump(a: float, rise: float, hold: float, fall: float) -> tuple[np.ndarray, np.ndarray]:
            ts = np.arange(a, a + rise + hold + fall + WIN, WIN) - a + WIN / 2
            s = np.where(ts < rise, ts / rise, np.where(ts < rise + hold, 1.0, 1 - (ts - rise - hold) / fall))
            s = np.clip(s, 0, 1)
            s = s * s * (3 - 2 * s)
            return ts, s

        n_heats = 0
        for c in range(n):
            cid = str(ids[c])
            # calving
            if np.isfinite(calve_at[c]) and calve_at[c] < self.t1:
                tc = float(calve_at[c])
                _, s = hump(tc - 30 * 3600, 28 * 3600, 4 * 3600, r.uniform(2, 5) * DAY)
                bump(R, c, tc - 30 * 3600, tc + 6 * DAY, 1 - r.uniform(0.35, 0.6) * s)
                _, s2 = hump(tc - 14 * 3600, 8 * 3600, 5 * 3600, 10 * 3600)
                bump(A, c, tc - 14 * 3600, tc + 10 * 3600, 1 + r.uniform(0.3, 0.9) * s2)
                if r.random() < p["records_calvings_fraction"]:
                    self.event(tc, "calving", animal=cid)
                    if r.random() < 0.7:
                        self.event(tc + r.uniform(2, 30) * 3600, "pen_move", animal=cid, pen="fresh")
                self.label("rumination", cid, tc - 30 * 3600, tc + 5 * DAY, optional=True, kind="calving")
                self.label("estrus", cid, tc - 16 * 3600, tc + DAY, optional=True, kind="calving")
            if np.isfinite(dry_at[c]):
                td = float(dry_at[c])
                R[c, wi(td):] *= r.uniform(0.85, 0.97)
                self.event(td, "dry_off", animal=cid)
                if r.random() < 0.8:
                    self.event(td + r.uniform(0, 4) * 3600, "pen_move", animal=cid, pen="dry")
                self.label("rumination", cid, td - 3600, td + 2 * DAY, optional=True, kind="dry_off")
            # estrus: open cows past the voluntary waiting period cycle every 18-24 days
            preg = dim0[c] > 70 and r.random() < min(0.85, (dim0[c] - 60) / 150)
            if dim0[c] > 30 and not preg and not np.isfinite(dry_at[c]):
                cyc = r.uniform(18, 24) * DAY
                th = self.t0 + r.uniform(-0.3, 1.0) * cyc
                if fitted[c] > self.t0 and r.random() < 0.5:  # a heat in her first days on the collar
                    th = fitted[c] + r.uniform(0.3, 3.5) * DAY
                while th < self.t1 - 3600:
                    if th > self.t0 + 2 * 3600:
                        n_heats += 1
                        self.estrus(c, cid, th, tie, A, R, bump, hump, collared[c])
                    th += cyc
            # illness: rumination drop (ketosis, metritis, DA, pneumonia, lameness)
            risk = 0.04 + (0.12 if 0 <= dim0[c] < 30 or (np.isfinite(calve_at[c]) and calve_at[c] < self.t1) else 0)
            if r.random() < risk * self.days / 21:
                ti = self.t0 + r.uniform(1.5, self.days - 1) * DAY
                if np.isfinite(calve_at[c]) and calve_at[c] < self.t1 and r.random() < 0.6:
                    ti = float(calve_at[c]) + r.uniform(1, 10) * DAY
                if ti < self.t1 - 6 * 3600:
                    self.illness(c, cid, ti, A, R, bump, hump, collared[c])
        self.n_heats = n_heats
        # pen moves (social regrouping): activity up, rumination a little down; most recorded
        groups = self.np.poisson(2 * self.days / 21)
        for _ in range(groups):
            tm = self.t0 + r.uniform(1, self.days - 1) * DAY
            who = r.sample(range(n), max(1, int(n * r.uniform(0.03, 0.15))))
            rec = r.random() < 0.8
            for c in who:
                _, s = hump(tm, 2 * 3600, r.uniform(2, 8) * 3600, 4 * 3600)
                bump(A, c, tm, tm + 16 * 3600, 1 + r.uniform(0.3, 1.0) * s)
                _, s2 = hump(tm, 3 * 3600, 12 * 3600, 12 * 3600)
                bump(R, c, tm, tm + 30 * 3600, 1 - r.uniform(0.05, 0.2) * s2)
                if rec:
                    self.event(tm, "pen_move", animal=str(ids[c]), pen=r.choice(["high", "low", "mid", "pen3"]))
        # hoof trimming days: a few cows, unrecorded, short drop
        for _ in range(self.np.poisson(self.days / 21)):
            tm = self.t0 + r.uniform(1, self.days - 1) * DAY
            for c in r.sample(range(n), max(1, int(n * 0.1))):
                _, s = hump(tm, 3600, 3 * 3600, 6 * 3600)
                bump(R, c, tm, tm + 11 * 3600, 1 - 0.3 * s)
                bump(A, c, tm, tm + 11 * 3600, 1 - 0.3 * s)
        self.A, self.R = A, R
        self.collars(ids, collared, fitted, tw, act_prof, rum_prof, act_base, rum_base)

    def estrus(self, c: int, cid: str, th: float, tie: bool, A: np.ndarray, R: np.ndarray,
               bump: Any, hump: Any, collared: bool) -> None:
        r = self.r
        dur = r.uniform(6, 24) * 3600
        weak = r.random() < 0.2
        peak = r.uniform(1.15, 1.5) if weak else (r.uniform(1.4, 2.4) if tie else r.uniform(1.5, 4.0))
        rise = dur * r.uniform(0.2, 0.35)
        fall = dur * r.uniform(0.25, 0.4)
        ts, s = hump(th, rise, dur - rise - fall, fall)
        bump(A, c, th, th + dur + WIN, 1 + (peak - 1) * s)
        bump(R, c, th, th + dur + WIN, 1 - r.uniform(0.1, 0.35) * s)
        if not collared or not self.fitted[c] <= th < self.collar_stop[c]:
            return
        hit = np.flatnonzero((peak - 1) * s >= 0.5)
        det = th + float(ts[hit[0]]) if len(hit) else th + dur
        first = (th - self.fitted[c]) < 4 * DAY and self.fitted[c] > self.t0
        self.label("estrus", cid, th, th + dur, det, optional=peak < 1.5, peak_ratio=round(peak, 2),
                   hours=round(dur / 3600, 1), first_days_on_collar=first)
        if r.random() < self.p["records_heats_fraction"]:
            self.event(th + r.uniform(3, 12) * 3600, "heat", animal=cid)
        if not weak and r.random() < 0.6:
            self.event(th + r.uniform(10, 20) * 3600, "insemination", animal=cid)

    def illness(self, c: int, cid: str, ti: float, A: np.ndarray, R: np.ndarray,
                bump: Any, hump: Any, collared: bool) -> None:
        r = self.r
        depth = r.uniform(0.2, 0.65)
        rise, hold, fall = r.uniform(8, 36) * 3600, r.uniform(1, 4) * DAY, r.uniform(1, 3) * DAY
        ts, s = hump(ti, rise, hold, fall)
        bump(R, c, ti, ti + rise + hold + fall, 1 - depth * s)
        bump(A, c, ti, ti + rise + hold + fall, 1 - 0.5 * depth * s)
        self.sick = getattr(self, "sick", {})
        self.sick[c] = (ti, ti + rise + hold + fall, depth)
        if not collared or not self.fitted[c] <= ti < self.collar_stop[c]:
            return
        hit = np.flatnonzero(depth * s >= 0.2)
        det = ti + float(ts[hit[0]]) if len(hit) else ti + rise
        tc = self.calve_at[c]
        after = round((ti - tc) / 3600, 1) if np.isfinite(tc) and 0 <= ti - tc < 10 * DAY else None
        self.label("rumination", cid, ti, ti + rise + hold + fall / 2, det, optional=depth < 0.25,
                   depth=round(depth, 2), after_calving_h=after,
                   cause=r.choice(["ketosis", "metritis", "displaced_abomasum", "pneumonia", "lameness",
                                   "acidosis"]))

    def collars(self, ids: list[int], collared: list[bool], fitted: list[float], tw: np.ndarray,
                act_prof: np.ndarray, rum_prof: np.ndarray, act_base: np.ndarray, rum_base: np.ndarray) -> None:
        r, g, p = self.r, self.np, self.p
        n, W = len(ids), len(tw)
        act = act_base[:, None] * act_prof[None, :] * self.A * g.lognormal(0, 0.33, (n, W))
        rum = rum_base[:, None] * rum_prof[None, :] * self.R
        rum = np.clip(np.rint(rum + g.normal(0, 1.6, (n, W))), 0, 15).astype(int)
        act = np.clip(np.rint(act), 0, 10000).astype(int)
        # base-station outages: collars relay through it; some buffer there, some lose the frames
        bs: list[tuple[float, float, bool]] = []
        for _ in range(g.poisson(1.5 * self.days / 21)):
            a = self.t0 + r.uniform(0.5, self.days - 0.3) * DAY
            bs.append((a, a + r.uniform(600, 5 * 3600), r.random() < 0.6))
        p["collar_base_outages"] = [[iso(a), iso(b), buf] for a, b, buf in bs]
        all_subj: list[str] = []
        prefix = {"a": "col-", "b": "HT", "c": "c5-"}[p["names"]]
        plan = []
        for c in range(n):
            if not collared[c]:
                continue
            sid = f"{prefix}{r.getrandbits(24):06x}"
            start = wi_ = int(max(0, (fitted[c] - self.t0) // WIN))
            stop = W
            if np.isfinite(self.collar_stop[c]):  # collar taken off at dry-off
                stop = int((self.collar_stop[c] - self.t0) // WIN)
                self.label("sensor.dropout", sid, self.collar_stop[c], self.t1, optional=True,
                           kind="removed_at_dry_off", alt_subjects=[str(ids[c])])
            segs = [(sid, ids[c], start, stop)]
            if r.random() < 0.03 and stop - start > 200:  # replaced mid-run (battery): new collar
                k = r.randint(start + 100, stop - 50)
                nsid = f"{prefix}{r.getrandbits(24):06x}"
                segs = [(sid, ids[c], start, k), (nsid, ids[c], k + r.randint(0, 8), stop)]
                p.setdefault("replaced", []).append({"device": sid, "by": nsid, "at": iso(tw[k])})
                self.label("sensor.dropout", sid, tw[k], self.t1, optional=True, kind="replaced",
                           alt_subjects=[str(ids[c])])
            plan.extend((s, cow, c, a, b) for s, cow, a, b in segs)
            del wi_
        for s, cow, c, a, b in plan:
            all_subj.append(s)
            self.collar_stream(s, cow, c, a, b, tw, act[c], rum[c], bs)
        for a, b, _buf in bs:
            if b - a >= 1800:
                self.label("sensor.dropout", all_subj[0] if all_subj else "none", a, b, optional=True,
                           kind="base_station_outage", alt_subjects=all_subj[1:] + [str(x) for x in ids])

    def collar_stream(self, sid: str, cow: int, c: int, a: int, b: int, tw: np.ndarray,
                      act: np.ndarray, rum: np.ndarray, bs: list[tuple[float, float, bool]]) -> None:
        r = self.r
        if b <= a:
            return
        act, rum = act.copy(), rum.copy()
        phase = r.uniform(0, WIN - 5)
        boot, seq = r.randint(1, 60), r.randint(0, 20000)
        batt = r.uniform(2900, 3300)
        dead = None
        cid = str(cow)
        opt = [("rumination", cid), ("estrus", cid)]
        if r.random() < 0.06:  # labelled fault
            kind = r.choice(["stuck", "dropout", "spike", "off", "battery"])
            i = r.randint(a + 50, max(a + 51, b - 20))
            if i < b - 10:
                t = tw[i]
                if kind == "stuck":
                    m = r.randint(12, 80)
                    act[i:i + m], rum[i:i + m] = act[i], rum[i]
                    self.label("sensor.stuck", sid, t, tw[min(b - 1, i + m)], t + 4 * WIN, alt_subjects=[cid])
                    for ru, su in opt:
                        self.label(ru, su, t, tw[min(b - 1, i + m)] + DAY, optional=True, kind="collar_stuck")
                elif kind == "spike":
                    act[i] = r.choice([6553, 9999, r.randint(3000, 9000)])
                    self.label("sensor.spike", sid, t - WIN, t + WIN, t, alt_subjects=[cid])
                    self.label("estrus", cid, t - WIN, t + 6 * 3600, optional=True, kind="collar_spike")
                elif kind == "off":  # collar came off, lies in the straw
                    m = r.randint(8, 60)
                    act[i:i + m] = self.np.integers(0, 4, m)[: len(act[i:i + m])]
                    rum[i:i + m] = 0
                    self.label("sensor.stuck", sid, t, tw[min(b - 1, i + m)], optional=True, kind="collar_off",
                               alt_subjects=[cid])
                    for ru, su in opt:
                        self.label(ru, su, t, tw[min(b - 1, i + m)] + DAY, optional=True, kind="collar_off")
                elif kind == "dropout":
                    m = r.randint(8, 60)
                    act[i:i + m] = -1
                    self.label("sensor.dropout", sid, t, tw[min(b - 1, i + m)], t + 3 * WIN, alt_subjects=[cid])
                    for ru, su in opt:
                        self.label(ru, su, t, tw[min(b - 1, i + m)] + DAY, optional=True, kind="collar_dropout")
                else:
                    dead = i
                    self.label("sensor.dropout", sid, t, self.t1, t + 3 * WIN, alt_subjects=[cid], kind="battery")
                    for ru, su in opt:
                        self.label(ru, su, t, self.t1, optional=True, kind="collar_dead")
        topic = f"barn/collar/{sid}"
        for w in range(a, b):
            if dead is not None and w >= dead:
                break
            seq += 1
            if act[w] < 0:
                continue
            batt -= 0.02
            flags = 1 if (batt < 2700 or (dead is not None and w > dead - 150)) else 0
            body = struct.pack("<2sBBHIIHHH", b"CL", 1, flags, boot % 65536, seq, cow,
                               int(act[w]), int(rum[w]), int(batt if dead is None else batt - 400))
            frame = body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))
            true = tw[w] - WIN + phase
            arr = true + r.uniform(0.05, 2.0)
            for x0, x1, buf in bs:
                if x0 <= true < x1:
                    arr = x1 + r.uniform(1, 120) if buf else -1.0
                    break
            if arr < 0:
                continue
            self.emit(arr, topic, frame, "collar")

    # ---- milk meters ----------------------------------------------------
    def milk(self) -> None:
        r, p, g = self.r, self.p, self.np
        if not p["milk_meters"]:
            self.session_list = self.sessions()
            return
        n = p["herd"]
        names = {"a": "mm-{:02d}", "b": "stall{}", "c": "meter-{}"}[p["names"]]
        if p["milking"] == "robot":
            meters = [names.format(i + 1) for i in range(p["robots"])]
        else:
            units = max(4, min(40, int(n / r.uniform(6, 12)))) if p["housing"] != "tiestall" else r.randint(4, 8)
            meters = [names.format(i + 1) for i in range(units)]
        p["meter_ids"] = meters
        breed_ec = {"jersey": 5.4, "holstein": 4.9, "brown_swiss": 5.0, "crossbred": 5.1}[p["breed"]]
        daily = {"jersey": 24, "holstein": 36, "brown_swiss": 30, "crossbred": 29}[p["breed"]]
        cow_ec = g.normal(breed_ec, 0.35, n)
        qf = g.normal(1.0, 0.035, (n, 4))
        peak = daily * g.uniform(0.75, 1.25, n)
        # mastitis
        mast: dict[int, list[tuple[float, int, float, float, bool]]] = {}
        rate_cl, rate_sub = r.uniform(0.01, 0.04), r.uniform(0.02, 0.06)
        for c in range(n):
            for clinical, rate in ((True, rate_cl), (False, rate_sub)):
                if r.random() < rate * self.days / 21:
                    t = self.t0 + r.uniform(1.5, self.days - 0.5) * DAY
                    q = r.randrange(4)
                    mag = r.uniform(1.35, 2.0) if clinical else r.uniform(1.08, 1.35)
                    dur = r.uniform(3, 8) * DAY if clinical else r.uniform(5, 25) * DAY
                    mast.setdefault(c, []).append((t, q, mag, dur, clinical))
        meter_clock = {m: r.choice([0.0, 0.0, r.uniform(-120, 120), r.uniform(-1800, 1800)]) for m in meters}
        meter_state = {m: [r.randint(1, 90), r.randint(0, 30000)] for m in meters}
        drift_meter = r.choice(meters) if r.random() < 0.25 else None
        drift_t = self.t0 + r.uniform(3, self.days - 2) * DAY
        if drift_meter:
            self.label("sensor.drift", drift_meter, drift_t, self.t1, drift_t + 2 * DAY, kind="ec_probe_fouling")
        for m in meters:
            self.dev_gaps(m, r.uniform(0, 2), 0.9, quiet_after_s=DAY)
        self.session_list = self.sessions()
        milked: dict[int, list[float]] = {}
        order = g.permutation(n)
        found_ep: dict[tuple[int, int], float] = {}
        seen: dict[int, list[float]] = {}
        unit: dict[tuple[int, float], str] = {}
        for s0, s1 in self.session_list:
            if p["milking"] == "robot":
                continue
            pos = np.argsort(order + g.normal(0, n * 0.08, n))
            for rank, c in enumerate(pos.tolist()):
                t = s0 + (s1 - s0) * rank / n + r.uniform(300, 540)
                milked.setdefault(c, []).append(t)
                unit[(c, t)] = meters[rank % len(meters)]  # each turn fills every stall
        if p["milking"] == "robot":
            for c in range(n):
                t = self.t0 + r.uniform(0, 10) * 3600
                while t < self.t1:
                    milked.setdefault(c, []).append(t)
                    t += r.uniform(6, 13) * 3600
        per_day = {"2x": 2, "3x": 3, "robot": 2.8}[p["milking"]]
        for c, times in milked.items():
            cid = self.ids[c]
            prev = times[0] - DAY / per_day
            for t in times:
                if not self.t0 <= t < self.t1:
                    prev = t
                    continue
                dim = self.dim0[c] + (t - self.t0) / DAY
                if np.isfinite(self.calve_at[c]) and t >= self.calve_at[c]:
                    dim = (t - self.calve_at[c]) / DAY
                elif dim < 0 or (np.isfinite(self.dry_at[c]) and t >= self.dry_at[c]):
                    prev = t
                    continue
                if dim < 3 and r.random() < 0.7:  # colostrum milk goes to a bucket, not the meter
                    prev = t
                    continue
                wood = peak[c] * (max(dim, 1) / 50) ** 0.2 * math.exp(-0.004 * max(dim - 50, 0))
                interval = min(max(t - prev, 4 * 3600), 16 * 3600)
                y = wood * interval / DAY * g.normal(1, 0.07)
                prev = t
                qy = np.array([0.2, 0.2, 0.3, 0.3]) * y
                ec = cow_ec[c] * qf[c] * g.normal(1, 0.02, 4) * (1 + 0.1 * math.exp(-dim / 10))
                sick = getattr(self, "sick", {}).get(c)
                if sick and sick[0] <= t <= sick[1]:
                    qy *= 1 - 0.6 * sick[2]
                for (tm0, q, mag, dur, clinical) in mast.get(c, []):
                    if tm0 <= t <= tm0 + dur:
                        el = (t - tm0) / 3600
                        ramp = min(1.0, el / (12 if clinical else 48))
                        fade = 1 - max(0.0, (t - tm0 - dur * 0.6) / (dur * 0.4))
                        f = 1 + (mag - 1) * ramp * fade
                        ec[q] *= f
                        qy[q] *= 1 - (0.55 if clinical else 0.1) * ramp * fade
                        ratio = ec[q] / np.delete(ec, q).min()
                        if (c, q) not in found_ep and ratio > 1.15:
                            found_ep[(c, q)] = t
                m = unit.get((c, t)) or r.choice(meters)  # robots: whichever box is free
                if drift_meter == m and t > drift_t:
                    ec = ec * (1 + 0.03 * (t - drift_t) / DAY)
                if p["meter_ec"] == "composite":
                    ec = np.full(4, float((ec * qy).sum() / max(qy.sum(), 1e-6)))
                st = meter_state[m]
                st[1] += 1
                seen.setdefault(c, []).append(t)
                arr = self.outage_arrival(m, t)
                if arr is None:
                    continue
                dur_s = int(np.clip(y * 18 + r.uniform(120, 240), 60, 3600))
                ecs = ",".join(str(int(np.clip(round(e * 100), 0, 2000))) for e in ec)
                line = (f"MM1,{st[0]},{st[1]},{int(t + meter_clock[m])},{cid},"
                        f"{int(np.clip(round(qy.sum() * 100), 0, 6000))},{ecs},{dur_s}")
                self.emit(arr, f"barn/milk/{m}", line, "milk")
        for c, eps in mast.items():
            cid = str(self.ids[c])
            for (tm0, q, mag, dur, clinical) in eps:
                det = None
                for t in sorted(seen.get(c, [])):
                    if t >= tm0 + (6 if clinical else 30) * 3600:
                        det = t
                        break
                if det is None or det > tm0 + dur:
                    det = None
                visible = det is not None and (clinical or p["meter_ec"] == "quarter")
                opt = (not visible) or (not clinical and mag < 1.2)
                self.label("mastitis", cid, tm0, tm0 + dur, det if det else tm0, optional=opt,
                           kind="clinical" if clinical else "subclinical", quarter=["LF", "RF", "LR", "RR"][q],
                           ec_ratio=round(mag, 2), meter_ec=p["meter_ec"])

    def sessions(self) -> list[tuple[float, float]]:
        p, r = self.p, self.r
        out = []
        if p["milking"] == "robot":
            return out
        n = p["herd"]
        dur_h = min(3.5, max(1.0, n / r.uniform(60, 140)))
        p["session_hours"] = round(dur_h, 2)
        for d in range(-1, math.ceil(self.days) + 1):
            for h in p["milking_utc_h"]:
                s0 = self.t0 + d * DAY + h * 3600 + r.uniform(-900, 1200)
                out.append((s0, s0 + dur_h * 3600 * r.uniform(0.9, 1.15)))
        return sorted(out)

    # ---- bulk tanks -----------------------------------------------------
    def tanks(self) -> None:
        r, p = self.r, self.p
        n = p["herd"]
        daily = {"jersey": 22, "holstein": 32, "brown_swiss": 27, "crossbred": 26}[p["breed"]] * n * 0.85
        names = {"a": "tank-{}", "b": "bulk{}", "c": "bt-{}"}[p["names"]]
        dt = 30.0
        steps = int(self.days * DAY / dt)
        tm = self.t0 + dt * np.arange(steps)
        inflow = np.zeros(steps)
        if p["milking"] == "robot":
            inflow[:] = daily / DAY * dt * (1 + 0.3 * np.sin(np.arange(steps) * 0.003))
        else:
            for s0, s1 in self.session_list:
                i, j = int((s0 - self.t0) // dt), int((s1 - self.t0) // dt)
                i, j = max(i, 0), min(j, steps)
                if j > i:
                    inflow[i:j] += daily / len(p["milking_utc_h"]) / (j - i)
                if p["records_milkings"] and r.random() < 0.9:
                    for k in range(p["tanks"]):
                        self.event(s0 + r.uniform(-300, 300), "milking", tank=names.format(k + 1),
                                   duration_s=int(s1 - s0))
        if p["records_schedule"]:
            times = [f"{int(h):02d}:{round((h % 1) * 60) % 60:02d}" for h in p["milking_utc_h"]]
            for k in range(p["tanks"]):
                self.events.append({"ts": iso(self.t0 - DAY), "type": "milking_schedule", "times": times,
                                    "tank": names.format(k + 1)})
        amb = np.interp(tm, self.min_t, self.barn_t)
        for k in range(p["tanks"]):
            sid = names.format(k + 1)
            share = 1.0 if p["tanks"] == 1 else (r.uniform(0.3, 0.7) if k == 0 else 1 - self._share0)
            if k == 0:
                self._share0 = share
            self.one_tank(sid, k, tm, inflow * share, amb, daily * share)

    def one_tank(self, sid: str, k: int, tm: np.ndarray, inflow: np.ndarray, amb: np.ndarray,
                 daily: float) -> None:
        r, p = self.r, self.p
        dt = tm[1] - tm[0]
        steps = len(tm)
        cap_l = daily * p["collection_every_d"] * r.uniform(1.25, 1.8)
        tin = r.uniform(14, 20) if p["precooler"] else r.uniform(30, 34)
        setp = r.uniform(3.0, 4.2)
        per_session = daily / max(1, len(p["milking_utc_h"]) or 3)
        # sized as ISO 5708 asks (a milking from 35 C to 4 C within 3 h), whether or not a pre-cooler helps
        power = r.uniform(1.1, 1.9) * per_session * 4.05e3 * (35 - setp) / (3.0 * 3600)
        if p["milking"] == "robot":
            power = r.uniform(1.4, 2.2) * daily / DAY * 4.05e3 * (35 - setp)
        ua = r.uniform(4, 14)
        p.setdefault("tank", []).append({"id": sid, "capacity_l": int(cap_l), "setpoint_c": round(setp, 2),
                                        "cooler_w": int(power), "milk_in_c": round(tin, 1)})
        # collections: a truck every N days at a drawn hour, not during milking
        coll = []
        hour = r.uniform(7, 13)
        d = r.uniform(0.6, 1.0) * p["collection_every_d"]
        while d < self.days:
            t = self.t0 + (math.floor(d) + hour / 24) * DAY + r.uniform(-2, 2) * 3600
            for s0, s1 in self.session_list:  # the truck does not pump out during a milking
                if s0 - 1800 <= t <= s1 + 1800:
                    t = s1 + r.uniform(1800, 3600)
            coll.append(t)
            d += p["collection_every_d"]
        for t in coll:
            if p["records_collections"]:
                self.event(t + r.uniform(0, 1800), "collection", tank=sid)
        # faults of the cooler
        capf = np.ones(steps)
        kinds = []
        for _ in range(self.np.poisson(1.6 * self.days / 21) + (1 if r.random() < 0.5 else 0)):
            kind = r.choice(["failure_milking", "failure_storage", "slow"])
            if kind == "failure_milking" and self.session_list:
                s0, s1 = r.choice([s for s in self.session_list if self.t0 + DAY < s[0] < self.t1 - 0.5 * DAY]
                                  or [self.session_list[len(self.session_list) // 2]])
                a = s0 + r.uniform(-1800, (s1 - s0) * 0.8)
                b = a + r.uniform(2, 10) * 3600
            elif kind == "failure_milking":
                a = self.t0 + r.uniform(1, self.days - 0.5) * DAY
                b = a + r.uniform(2, 10) * 3600
            elif kind == "failure_storage":
                a = self.t0 + r.uniform(1, self.days - 0.5) * DAY
                b = a + r.uniform(3, 14) * 3600
            else:
                a = self.t0 + r.uniform(1, self.days - 2) * DAY
                b = min(self.t1, a + r.uniform(3, 10) * DAY)
            i, j = int((a - self.t0) // dt), min(steps, int((b - self.t0) // dt))
            if kind == "slow":
                floor_ = r.uniform(0.15, 0.45)
                span = max(1, int((r.uniform(2, 6) * DAY) // dt))
                capf[i:j] = np.minimum(capf[i:j], np.clip(1 - (1 - floor_) * np.arange(j - i) / span, floor_, 1))
            else:
                capf[i:j] = 0.0 if r.random() < 0.7 else r.uniform(0.05, 0.2)
            kinds.append((kind, a, min(b, self.t1)))
        # sensor faults on the probe: values and liveness
        noise = self.np.normal(0, 0.05, steps)
        actual = self.tank_run(tm, inflow, amb, capf, coll, cap_l, tin, setp, power, ua, noise, k)
        base = self.tank_run(tm, inflow, amb, np.ones(steps), coll, cap_l, tin, setp, power, ua, noise, k)
        temp_a, vol, ag, wash = actual
        temp_b = base[0]
        for kind, a, b in kinds:
            i, j = int((a - self.t0) // dt), min(steps, int((b - self.t0) // dt) + int(4 * 3600 // dt))
            diff = (temp_a[i:j] - temp_b[i:j] >= 1.0) & (temp_a[i:j] >= 5.0) & (vol[i:j] > 0.03 * cap_l)
            hit = np.flatnonzero(diff)
            det = float(tm[i + hit[0]]) if len(hit) else None
            self.label("cooling", sid, a, b, det if det else a, optional=det is None, kind=kind,
                       peak_c=round(float(np.where(vol[i:j] > 0.03 * cap_l, temp_a[i:j], -99).max()), 1)
                       if j > i else None)
        (temp, vol2), alive = self.faults(sid, tm, [temp_a.copy(), vol.copy()], 30, (8, 40), 0.35,
                                          r.uniform(0, 1.5), extra_opt=[("cooling", sid)])
        self.dev_gaps(sid, r.uniform(0, 3), r.uniform(0.3, 1.0))
        install = f"{r.getrandbits(16):04x}"
        counter = r.randint(0, 900000)
        clock = r.choice([0.0, 0.0, r.uniform(-60, 60), r.uniform(-900, 900)])
        replaced = int(steps * r.uniform(0.4, 0.9)) if r.random() < 0.12 else None
        topic = f"barn/tank/{sid}"
        has_lv, has_ag, has_w = p["tank_has_level"][k], p["tank_has_agitator"][k], p["tank_has_wash"][k]
        for i in range(steps):
            if replaced is not None and i == replaced:
                install, counter, clock = f"{r.getrandbits(16):04x}", 0, 0.0
                p.setdefault("replaced", []).append({"device": sid, "at": iso(tm[i]), "what": "controller"})
            counter = (counter + 1) % 1000000
            if not alive[i]:
                continue
            true = tm[i] + r.uniform(0, 2)
            arr = self.outage_arrival(sid, true)
            if arr is None:
                continue
            d: dict[str, Any] = {"msg_id": f"{install}-{counter:06d}", "ts": int(true + clock),
                                 "temp": round(float(np.clip(temp[i], -5, 90)), 1)}
            if has_ag:
                d["agitator"] = "on" if ag[i] else "off"
            if has_lv:
                d["level_l"] = int(max(0.0, vol2[i] + r.gauss(0, 15)))
            if has_w:
                d["wash"] = bool(wash[i])
            self.emit(arr, topic, json.dumps(d, separators=(",", ":")), "tank")

    def tank_run(self, tm: np.ndarray, inflow: np.ndarray, amb: np.ndarray, capf: np.ndarray, coll: list[float],
                 cap_l: float, tin: float, setp: float, power: float, ua: float, noise: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rr = random.Random(self.p["seed"] * 100 + k)
        dt = float(tm[1] - tm[0])
        steps = len(tm)
        temp = np.zeros(steps)
        vol = np.zeros(steps)
        ag = np.zeros(steps, bool)
        wash = np.zeros(steps, bool)
        v, t_m, t_probe, on = 0.0, float(amb[0]), float(amb[0]), False
        v = cap_l * 0.3
        t_m = setp
        ci = 0
        pump_until = -1.0
        wash_at = (-1.0, -1.0)
        stir_phase = rr.uniform(0, 1800)
        min_cool = 0.06 * cap_l
        for i in range(steps):
            t = float(tm[i])
            if ci < len(coll) and t >= coll[ci]:
                pump_until = t + max(600.0, v / rr.uniform(400, 700) * 60)
                w0 = pump_until + rr.uniform(900, 3600)
                wash_at = (w0, w0 + rr.uniform(1500, 2700))
                ci += 1
            if t < pump_until:
                v = max(0.0, v - v * dt / max(dt, pump_until - t))
            q = float(inflow[i])
            if q > 0 and v + q < cap_l:
                t_m = (t_m * v + tin * q) / (v + q) if v + q > 0 else tin
                v += q
            washing = wash_at[0] <= t < wash_at[1]
            empty = v < 30
            if empty:
                target = amb[i]
                if washing:
                    frac = (t - wash_at[0]) / (wash_at[1] - wash_at[0])
                    target = 65.0 if frac < 0.6 else 15.0
                t_probe += (target - t_probe) * min(1.0, dt / (300 if washing else 1500))
                t_m = t_probe
                on = False
            else:
                if t_m > setp + 0.6:
                    on = True
                elif t_m < setp - 0.4:
                    on = False
                cooling = on and v > min_cool
                heat = ua * (amb[i] - t_m) * dt - (power * capf[i] * dt if cooling else 0.0)
                t_m += heat / (4.05e3 * max(v, 1.0))
                t_probe = t_m
            temp[i] = t_probe + noise[i]
            vol[i] = v
            stirring = v > min_cool and (on or ((t + stir_phase) % 1800) < 180)  # paddle under milk
            ag[i] = stirring or washing
            wash[i] = washing
        return temp, vol, ag, wash

    def water(self) -> None:
        r, p = self.r, self.p
        for k in range(p["water_meters"]):
            sid = f"water-{k + 1}"
            self.dev_gaps(sid, r.uniform(0, 2), 0.0)
            boot, seq, total = r.randint(1, 30), r.randint(0, 10000), r.uniform(1e4, 5e6)
            n = int(self.days * 1440)
            tm = self.t0 + 60 * np.arange(n)
            hloc = ((tm - self.t0) / 3600 + p["utc_offset_h"]) % 24
            per_cow = r.uniform(70, 120) / 1440 * p["herd"] / max(1, p["water_meters"])
            heat = np.interp(tm, self.min_t, np.clip(self.barn_thi - 68, 0, 20))
            flow = per_cow * (1 + 0.8 * ((hloc > 6) & (hloc < 20))) * (1 + 0.03 * heat)
            flow = flow * self.np.gamma(1.5, 1 / 1.5, n)
            for i in range(n):
                seq += 1
                total += flow[i]
                arr = self.outage_arrival(sid, tm[i] + r.uniform(0, 2))
                if arr is None:
                    continue
                d = {"boot": boot, "seq": seq, "flow": round(float(min(flow[i], 500)), 1), "total": round(total, 1)}
                self.emit(arr, f"barn/water/{sid}", json.dumps(d, separators=(",", ":")), "water")

    def blind_windows(self) -> None:
        """An episode the device could not show (it was stuck, silent, drifting or off) is optional."""
        blind: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for x in self.labels:
            if x.get("optional") and x.get("kind") in BLIND:
                blind.setdefault((x["rule"], x["subject"]), []).append((x["onset"], x["end"]))
        for x in self.labels:
            if x.get("optional"):
                continue
            for a, b in blind.get((x["rule"], x["subject"]), []):
                if a <= x["end"] and x["onset"] <= b:  # ISO strings of one format compare as times
                    x["optional"] = True
                    x["during_sensor_fault"] = True
                    break

    def write(self, out: str) -> None:
        os.makedirs(out, exist_ok=True)
        self.blind_windows()
        late = iso(self.t1 - 6 * 3600)
        for x in self.labels:  # the data ends before the episode has had hours to show
            if not x.get("optional") and x["detectable"] > late:
                x["optional"] = True
                x["truncated"] = True
        self.msgs.sort(key=lambda x: (x[0], x[1]))
        with open(os.path.join(out, "messages.jsonl"), "w") as fh:
            fh.writelines(m[2] + "\n" for m in self.msgs)
        self.events.sort(key=lambda e: e["ts"])
        with open(os.path.join(out, "farm.json"), "w") as fh:
            fh.writelines(json.dumps(e) + "\n" for e in self.events)
        self.labels.sort(key=lambda x: (x["onset"], x["rule"]))
        with open(os.path.join(out, "labels.jsonl"), "w") as fh:
            fh.writelines(json.dumps(x) + "\n" for x in self.labels)
        self.p["message_counts"] = self.counts
        self.p["heats"] = self.n_heats
        self.p["labels"] = {}
        for x in self.labels:
            key = x["rule"] + (" (optional)" if x.get("optional") else "")
            self.p["labels"][key] = self.p["labels"].get(key, 0) + 1
        with open(os.path.join(out, "farm_params.json"), "w") as fh:
            json.dump(self.p, fh, indent=1, default=str)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Labelled barn traffic for `dairy-edge replay`, every farm "
                                             "parameter drawn from the seed (scripts/field_barn/README.md).")
    ap.add_argument("--seed", type=int, required=True, help="farm seed (the lead holds seeds 4 and up out)")
    ap.add_argument("--days", type=float, default=21.0, help="days of traffic (default 21)")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    a = ap.parse_args(argv)
    t = time.time()
    f = Farm(a.seed, a.days)
    f.draw()
    f.climate()
    f.herd()
    f.milk()
    f.tanks()
    f.water()
    f.write(a.out)
    print(f"seed {a.seed}: {len(f.msgs)} messages, {len(f.labels)} labels, {len(f.events)} farm events "
          f"in {time.time() - t:.1f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
