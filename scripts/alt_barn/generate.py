#!/usr/bin/env python3
"""An independent labelled barn-traffic generator for `dairy-edge replay`.

Written from the firmware configs and general dairy knowledge only, without
reading the project's rules or its own scenario generator (see README.md).

    generate.py --seed N [--cows 60..120] [--days 21..30] -o OUTDIR

Writes OUTDIR/messages.jsonl (replay input, sorted by ts), OUTDIR/labels.jsonl
(one labelled episode a line) and OUTDIR/farm.json (farm events, JSON lines).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

DAY = 86400.0
HOUR = 3600.0
WIN = 900  # collar window, s


def ud(r: np.random.Generator, lo: float, hi: float) -> float:
    """uniform(lo, hi) in days, kept valid on very short runs (tests)."""
    return float(r.uniform(min(lo, hi * 0.5), max(hi, min(lo, hi * 0.5) + 0.01)))


def iso(t: float) -> str:
    return datetime.fromtimestamp(round(t), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _crc_table() -> list[int]:
    table = []
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
        table.append(c & 0xFFFF)
    return table


CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def collar_frame(flags: int, boot: int, seq: int, cow: int, act: int, rum: int, mv: int) -> bytes:
    body = struct.pack("<2sBBHIIHHH", b"CL", 1, flags, boot, seq, cow, act, rum, mv)
    return body + struct.pack("<H", crc16_ccitt_false(body))


def thi(t: np.ndarray | float, rh: np.ndarray | float) -> Any:
    return (1.8 * t + 32) - (0.55 - 0.0055 * rh) * (1.8 * t - 26)


def rh_from_dew(t: np.ndarray, td: np.ndarray) -> np.ndarray:
    def es(x: np.ndarray) -> np.ndarray:
        return np.exp(17.625 * x / (243.04 + x))
    return np.clip(100 * es(td) / es(t), 15, 99.5)


@dataclass
class Out:
    msgs: list[tuple[float, int, str]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def msg(self, ts: float, topic: str, payload: str | None = None,
            b64: bytes | None = None) -> None:
        d: dict[str, Any] = {"ts": iso(ts), "topic": topic}
        if b64 is not None:
            d["payload_b64"] = base64.b64encode(b64).decode()
        else:
            d["payload"] = payload
        self.msgs.append((round(ts), len(self.msgs), json.dumps(d)))

    def label(self, rule: str, subject: str, onset: float, end: float, detectable: float,
              **extra: Any) -> None:
        d = {"rule": rule, "subject": subject, "onset": iso(onset), "end": iso(end),
             "detectable": iso(detectable)}
        d.update(extra)
        self.labels.append(d)

    def event(self, ts: float, type_: str, **kw: Any) -> None:
        d: dict[str, Any] = {"ts": iso(ts), "type": type_}
        d.update(kw)
        self.events.append(d)


# --------------------------------------------------------------------------- farm

class Farm:
    def __init__(self, seed: int, cows: int | None, days: int | None) -> None:
        r = np.random.default_rng(seed)
        self.r = r
        self.seed = seed
        self.n = int(cows if cows is not None else r.integers(60, 121))
        self.days = int(days if days is not None else r.integers(21, 31))
        self.climate = str(r.choice(["hot", "warm", "cool"], p=[0.45, 0.4, 0.15]))
        month = {"hot": r.choice([6, 7, 8]), "warm": r.choice([5, 6, 9]),
                 "cool": r.choice([3, 4, 10])}[self.climate]
        self.t0 = datetime(2025, int(month), int(r.integers(1, 10)), tzinfo=UTC).timestamp()
        self.t1 = self.t0 + self.days * DAY
        self.milking = str(r.choice(["2x", "3x", "robot"], p=[0.5, 0.25, 0.25]))
        self.tank_level = bool(r.random() < 0.5)
        self.tank_agitator = bool(r.random() < 0.6)
        self.tank_wash = bool(r.random() < 0.4)
        self.tank_period = int(r.choice([30, 30, 60]))
        self.tank_res = float(r.choice([0.1, 0.01]))
        self.tank_noise = float(r.uniform(0.02, 0.08))
        self.clim_nodes = int(r.integers(2, 5))
        self.clim_period = int(r.choice([60, 60, 120, 300]))
        self.clim_noise_t = float(r.uniform(0.05, 0.25))
        self.clim_noise_rh = float(r.uniform(0.4, 1.5))
        self.water_meters = int(r.integers(1, 4))
        self.water_period = int(r.choice([60, 60, 120]))
        self.act_shape = float(r.uniform(3.0, 8.0))   # gamma shape: lower is noisier
        self.ec_noise = float(r.uniform(0.03, 0.06))  # relative, per quarter-milking
        self.collar_loss = float(r.uniform(0.01, 0.05))
        self.radio_gaps_per_day = float(r.uniform(0.5, 3.0))
        self.record_collections = bool(r.random() < 0.5)
        self.record_milkings = bool(r.random() < 0.4)
        self.collect_every = int(r.choice([1, 2, 2, 3])) if self.n >= 90 else int(r.choice([2, 3]))
        self.ids = [int(x) for x in r.choice(np.arange(100, 9999), size=self.n, replace=False)]
        self.collar = {c: f"col-{int(r.integers(0x1000, 0xFFFF)):04x}{i:02d}" for i, c in enumerate(self.ids)}
        self.dry = {int(c) for c in r.choice(self.ids, size=max(3, int(self.n * r.uniform(0.08, 0.15))),
                                              replace=False)}

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()
                if k not in ("r", "ids", "collar", "dry") and not k.startswith("_")}


# --------------------------------------------------------------------------- climate

def gen_climate(f: Farm, o: Out) -> tuple[np.ndarray, np.ndarray]:
    """Returns (grid times at 60 s, barn THI) for the cow model."""
    r = f.r
    mu, sd = {"hot": (31.0, 3.0), "warm": (25.0, 3.0), "cool": (14.0, 3.0)}[f.climate]
    nd = f.days + 2
    tmax = np.empty(nd)
    prev = mu
    for d in range(nd):
        prev = mu + 0.7 * (prev - mu) + r.normal(0, sd)
        tmax[d] = prev
    amp = r.uniform(7, 12, nd)
    tmin = tmax - amp
    dew = tmin - r.uniform(-1, 4, nd)
    grid = f.t0 + np.arange(0, f.days * DAY + 1, 60.0)
    hod = ((grid - f.t0) % DAY) / HOUR
    day = ((grid - f.t0) // DAY).astype(int)
    # minimum at 05:00, maximum at 15:00 each day, cosine between the anchors (continuous)
    at = np.empty(2 * nd)
    av = np.empty(2 * nd)
    at[0::2] = f.t0 + (np.arange(nd) - 1) * DAY + 15 * HOUR
    av[0::2] = tmax
    at[1::2] = f.t0 + np.arange(nd) * DAY + 5 * HOUR
    av[1::2] = tmin
    seg = np.clip(np.searchsorted(at, grid) - 1, 0, at.size - 2)
    frac = np.clip((grid - at[seg]) / (at[seg + 1] - at[seg]), 0, 1)
    base = av[seg] + (av[seg + 1] - av[seg]) * (0.5 - 0.5 * np.cos(np.pi * frac)) + 1.5
    del day
    walk = np.cumsum(r.normal(0, 0.04, grid.size))
    walk -= np.convolve(walk, np.ones(241) / 241, mode="same")
    temp = base + walk
    td = np.interp(grid, f.t0 + (np.arange(nd) + 0.5) * DAY, dew)
    barn_rh = rh_from_dew(temp, td)
    barn_thi = thi(temp, barn_rh)
    f._barn_temp = temp  # type: ignore[attr-defined]

    nodes = [f"clim-{i + 1}" for i in range(f.clim_nodes)]
    for k, node in enumerate(nodes):
        off = r.normal(0, 0.5)
        tt = temp + off + 0.3 * np.sin(2 * np.pi * (hod - r.uniform(0, 24)) / 24)
        rr = rh_from_dew(tt, td)
        th = thi(tt, rr)
        # heat-stress episodes from the node's true THI: >=72 for >= 2 h, dips < 30 min merged
        hot = th >= 72
        eps = _split_days(f, _runs(hot, grid, merge_s=1800))
        fault_windows: list[tuple[float, float]] = []
        faults = _clim_faults(f, node, k, nodes)
        for kind, a, b, _ in faults:
            if kind in ("stuck", "drift", "dropout"):
                fault_windows.append((a, b))
        for a, b, cont in eps:
            if b - a >= 2 * HOUR:
                if cont:
                    o.label("heat_stress", node, a, b, a + 2 * HOUR, optional=True,
                            note="THI stayed >= 72 overnight: continues yesterday's episode")
                elif any(a < fb and b > fa for fa, fb in fault_windows):
                    o.label("heat_stress", node, a, b, a + 2 * HOUR, optional=True,
                            note="during a sensor fault")
                else:
                    o.label("heat_stress", node, a, b, a + 2 * HOUR, thi_max=round(float(th[(grid >= a) & (grid <= b)].max()), 1))
        for fa, fb in fault_windows:
            o.label("heat_stress", node, fa, fb, fa, optional=True, note="sensor fault window")
        _emit_climate(f, o, node, grid, tt, rr, faults)
    return grid, barn_thi


def _runs(mask: np.ndarray, grid: np.ndarray, merge_s: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    idx = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    for a, b in zip(idx[::2], idx[1::2], strict=True):
        ta, tb = grid[a], grid[b - 1]
        if out and ta - out[-1][1] < merge_s:
            out[-1] = (out[-1][0], tb)
        else:
            out.append((ta, tb))
    return out


def _split_days(f: Farm, runs: list[tuple[float, float]]) -> list[tuple[float, float, bool]]:
    """One heat episode per day: runs are cut at 06:00; a piece that starts at the cut
    (THI never fell below 72 overnight) is marked as a continuation."""
    out: list[tuple[float, float, bool]] = []
    for a, b in runs:
        x, cont = a, False
        while x < b:
            cut = f.t0 + (math.floor((x - f.t0 - 6 * HOUR) / DAY) + 1) * DAY + 6 * HOUR
            y = min(b, cut)
            out.append((x, y, cont))
            x, cont = y, True
    return out


_CLIM_FAULTS: dict[tuple[int, str], list[tuple[str, float, float, Any]]] = {}


def _clim_faults(f: Farm, node: str, k: int, nodes: list[str]) -> list[tuple[str, float, float, Any]]:
    key = (f.seed, node)
    if key in _CLIM_FAULTS:
        return _CLIM_FAULTS[key]
    r = f.r
    faults: list[tuple[str, float, float, Any]] = []
    busy: list[tuple[float, float]] = []
    # drift first (one node, when it has neighbours): it lasts to the end of the run,
    # so the node's other faults go before it
    last = f.t1 - HOUR
    if len(nodes) >= 2 and k == 0 and r.random() < 0.8:
        a = f.t0 + float(r.uniform(0.45, 0.75)) * f.days * DAY
        rate = r.uniform(1.5, 4.0) * float(r.choice([-1, 1]))  # degC per day
        faults.append(("drift", a, f.t1, rate))
        last = a - 6 * HOUR

    def slot(dur: float) -> float | None:
        for _ in range(50):
            a = f.t0 + ud(r, 1.0, f.days - 0.5) * DAY
            if a + dur > last:
                continue
            if all(a + dur + 6 * HOUR < x or a > y + 6 * HOUR for x, y in busy):
                busy.append((a, a + dur))
                return a
        return None

    if r.random() < 0.5:
        d = r.uniform(3, 12) * HOUR
        a = slot(d)
        if a is not None:
            faults.append(("stuck", a, a + d, None))
    if r.random() < 0.5:
        d = r.uniform(2, 20) * HOUR
        a = slot(d)
        if a is not None:
            faults.append(("dropout", a, a + d, bool(r.random() < 0.5)))
    for _ in range(int(r.integers(0, 3))):
        a = slot(120)
        if a is not None:
            faults.append(("spike", a, a + 1, str(r.choice(["t-40", "t85", "t60", "rh0", "rh120", "t-3276"]))))
    _CLIM_FAULTS[key] = faults
    return faults


def _emit_climate(f: Farm, o: Out, node: str, grid: np.ndarray, tt: np.ndarray, rr: np.ndarray,
                  faults: list[tuple[str, float, float, Any]]) -> None:
    r = f.r
    period = f.clim_period
    phase = r.uniform(0, period)
    times = f.t0 + phase + np.arange(0, f.days * DAY - phase, period)
    times = times + r.normal(0, 0.8, times.size)
    t_true = np.interp(times, grid, tt)
    rh_true = np.interp(times, grid, rr)
    t_m = t_true + r.normal(0, f.clim_noise_t, times.size)
    rh_m = np.clip(rh_true + r.normal(0, f.clim_noise_rh, times.size), 0, 100)
    keep = _radio_gaps(f, times)
    boot, seq, since_boot = int(r.integers(1, 40)), int(r.integers(0, 50000)), 10
    bat = r.uniform(2.9, 3.2)
    stuck_val: tuple[float, float] | None = None
    drop_active = False
    sent: set[float] = set()
    for i, t in enumerate(times):
        tv, hv = float(t_m[i]), float(rh_m[i])
        spike = None
        spike_at = 0.0
        silent = False
        for kind, a, b, arg in faults:
            if kind == "drift" and t >= a:
                tv += arg * (t - a) / DAY
            elif kind == "stuck" and a <= t < b:
                if stuck_val is None:
                    stuck_val = (round(tv, 2), round(hv, 1))
                tv, hv = stuck_val
            elif kind == "spike" and a <= t < a + period:
                spike = arg
                spike_at = a
            elif kind == "dropout" and a <= t < b:
                silent = True
        if stuck_val is not None and not any(k == "stuck" and a <= t < b for k, a, b, _ in faults):
            stuck_val = None
        if silent:
            drop_active = True
            seq += 1
            continue
        if drop_active:
            drop_active = False
            kind_reboot = next(arg for k, a, b, arg in faults if k == "dropout")
            if kind_reboot:
                boot, seq, since_boot = boot + 1, 0, 0
                bat = r.uniform(3.1, 3.3)
        seq += 1
        since_boot += 1
        if not keep[i]:
            continue
        payload: dict[str, Any] = {"boot": boot, "seq": seq}
        if since_boot > 2:
            payload["ts"] = int(t)
        tval, hval = round(tv, 2), round(hv, 1)
        if spike == "t-40":
            tval = -40.0
        elif spike == "t85":
            tval = 85.0
        elif spike == "t60":
            tval = 59.9
        elif spike == "t-3276":
            tval = -3276.8
        elif spike == "rh0":
            hval = 0.0
        elif spike == "rh120":
            hval = 120.0
        payload["t"] = tval
        payload["rh"] = hval
        if spike is not None:
            sent.add(spike_at)
        payload["bat"] = round(bat - 0.004 * (t - f.t0) / DAY, 2)
        o.msg(t + r.uniform(0.1, 2.0), f"barn/climate/{node}", json.dumps(payload))
    for kind, a, b, arg in faults:
        if kind == "stuck":
            o.label("sensor.stuck", node, a, b, a + 30 * 60)
            # the jump back to the true value when it recovers is part of the same fault
            o.label("sensor.spike", node, a, b + 2 * period, b, optional=True, note="stuck sensor recovers")
        elif kind == "dropout":
            o.label("sensor.dropout", node, a, b, a + max(30 * 60, 3 * period))
        elif kind == "spike" and a in sent:
            o.label("sensor.spike", node, a - 1, a + period + 1, a, value=arg)
        elif kind == "drift":
            det = a + 1.0 / abs(arg) * DAY
            if det < f.t1 - HOUR:
                o.label("sensor.drift", node, a, b, det, rate_c_per_day=round(arg, 2))


def _radio_gaps(f: Farm, times: np.ndarray) -> np.ndarray:
    """Normal radio gaps of 10-25 min (not labelled) plus 0.5 % random single losses."""
    r = f.r
    keep = r.random(times.size) > 0.005
    n = r.poisson(f.radio_gaps_per_day * f.days)
    for _ in range(n):
        a = f.t0 + r.uniform(0, f.days) * DAY
        d = r.uniform(10, 25) * 60
        keep &= ~((times >= a) & (times < a + d))
    return keep


# --------------------------------------------------------------------------- milking schedule

def milking_sessions(f: Farm) -> list[tuple[float, float]]:
    """Parlour sessions (start, duration) in data time; empty for robots."""
    r = f.r
    if f.milking == "robot":
        return []
    starts = [5.0, 16.0] if f.milking == "2x" else [4.5, 12.5, 20.5]
    stalls = int(r.choice([8, 10, 12, 16, 20]))
    dur = (f.n * (1 - len(f.dry) / f.n)) / stalls * r.uniform(9, 12) * 60 + 20 * 60
    out = []
    for d in range(f.days):
        for s in starts:
            a = f.t0 + d * DAY + (s + r.normal(0, 0.25)) * HOUR
            out.append((a, dur * r.uniform(0.95, 1.08)))
    f._stalls = stalls  # type: ignore[attr-defined]
    return out


# --------------------------------------------------------------------------- cows

@dataclass
class Cow:
    id: int
    act_base: float
    rum_daily: float
    ec_base: np.ndarray
    yield_daily: float
    act_mult: np.ndarray
    rum_mult: np.ndarray
    milking: bool
    calving: float | None = None
    dry_off: float | None = None
    busy: list[tuple[float, float]] = field(default_factory=list)

    def free(self, a: float, b: float, pad: float = 2 * DAY) -> bool:
        return all(b + pad < x or a > y + pad for x, y in self.busy)


def gen_cows(f: Farm, o: Out, sessions: list[tuple[float, float]], barn_grid: np.ndarray,
             barn_thi: np.ndarray) -> tuple[list[Cow], list[tuple[float, int, float, list[float]]]]:
    r = f.r
    nw = f.days * 96
    wt = f.t0 + np.arange(nw) * WIN  # window start
    hod = ((wt - f.t0) % DAY) / HOUR + 0.125
    # herd diurnal patterns
    act_d = 0.35 + 0.65 * (1 / (1 + np.exp(-(hod - 6) * 2)) - 1 / (1 + np.exp(-(hod - 21.5) * 2)))
    rum_d = 1.15 - 0.25 * (1 / (1 + np.exp(-(hod - 7) * 2)) - 1 / (1 + np.exp(-(hod - 20) * 2)))
    feed_times = [6.5, 16.5] if f.milking != "3x" else [6.0, 14.0]
    feed_delay_days = {int(d) for d in np.flatnonzero(r.random(f.days) < r.uniform(0.05, 0.2))}
    for d in range(f.days):
        for k, ft in enumerate(feed_times):
            delay = r.uniform(2, 4) if (d in feed_delay_days and k == 0) else r.normal(0, 0.2)
            c = f.t0 + d * DAY + (ft + delay) * HOUR
            x = (wt + WIN / 2 - c) / HOUR
            act_d = act_d + 0.7 * np.exp(-0.5 * (x / 0.6) ** 2)
            rum_d = rum_d - 0.45 * np.exp(-0.5 * (x / 0.7) ** 2) + 0.2 * np.exp(-0.5 * ((x - 3) / 1.5) ** 2)
            if delay > 1.5:  # hungry cows waiting: less rumination before the late feed
                rum_d = rum_d - 0.3 * ((x > -delay) & (x < 0))
    for a, dur in sessions:
        x = wt + WIN / 2
        m = (x >= a) & (x < a + dur)
        act_d = act_d + 0.6 * m
        rum_d = rum_d - 0.4 * m
    rum_d = np.clip(rum_d, 0.15, None)
    rum_d = rum_d / rum_d.mean()
    # herd rumination falls with heat (smoothed THI over the last 6 h)
    thi_w = np.interp(wt, barn_grid, barn_thi)
    k6 = 24
    thi_s = np.convolve(thi_w, np.ones(k6) / k6, mode="full")[:nw]
    thi_s[:k6] = thi_w[:k6]
    heat_rum = 1 - np.clip((thi_s - 68) * 0.02, 0, 0.35)
    heat_act = 1 - np.clip((thi_s - 72) * 0.015, 0, 0.2)

    cows: list[Cow] = []
    for c in f.ids:
        cow = Cow(
            id=c,
            act_base=float(np.exp(r.normal(math.log(45), 0.35))),
            rum_daily=float(np.clip(r.normal(500, 60), 320, 640)),
            ec_base=float(np.clip(r.normal(5.0, 0.35), 4.2, 6.0)) * (1 + r.normal(0, 0.03, 4)),
            yield_daily=float(np.clip(r.normal(30, 7), 14, 50)),
            act_mult=np.ones(nw), rum_mult=np.ones(nw),
            milking=c not in f.dry,
        )
        cows.append(cow)
    byid = {c.id: c for c in cows}

    def win(t: float) -> int:
        return int(np.clip((t - f.t0) // WIN, 0, nw - 1))

    def ramp(arr: np.ndarray, a: float, b: float, peak: float, up_h: float, down_h: float) -> None:
        x = wt + WIN / 2
        w = np.clip(np.minimum((x - a) / (up_h * HOUR), (b - x) / (down_h * HOUR)), 0, 1)
        arr *= 1 + (peak - 1) * w

    # calvings (from the dry group) -------------------------------------------------
    dry_list = sorted(f.dry)
    r.shuffle(dry_list)
    n_calv = min(len(dry_list), max(2, r.poisson(f.n * f.days / 330)))
    for cid in dry_list[:n_calv]:
        cow = byid[cid]
        t = f.t0 + ud(r, 1.5, f.days - 2) * DAY
        cow.calving = t
        ramp(cow.act_mult, t - 14 * HOUR, t, 1.35, 4, 0.5)
        ramp(cow.rum_mult, t - 8 * HOUR, t + 5 * DAY, 0.45, 3, 96)
        cow.busy.append((t - DAY, t + 10 * DAY))
        o.event(t, "calving", animal=str(cid))
        o.event(t + r.uniform(1, 4) * HOUR, "pen_move", animal=str(cid), pen="fresh")
        o.label("rumination", str(cid), t - DAY, t + 5 * DAY, t, optional=True, note="calving")
        o.label("estrus", str(cid), t - DAY, t + 2 * DAY, t, optional=True, note="calving")
    # dry-offs ------------------------------------------------------------------------
    milkers = [c for c in cows if c.milking]
    for cow in r.choice(milkers, size=int(r.integers(1, 4)), replace=False):
        t = f.t0 + ud(r, 3, f.days - 1) * DAY
        cow.dry_off = t
        o.event(t, "dry_off", animal=str(cow.id))
        o.event(t + HOUR, "pen_move", animal=str(cow.id), pen="dry")
        ramp(cow.rum_mult, t, t + 2 * DAY, 0.85, 2, 24)
        cow.busy.append((t - DAY, t + 3 * DAY))
    # pen moves (social stress) -------------------------------------------------------------
    for _ in range(r.poisson(f.n * f.days / 150)):
        cow = cows[int(r.integers(0, f.n))]
        t = f.t0 + ud(r, 1, f.days - 1) * DAY
        if not cow.free(t, t + 2 * DAY, pad=DAY):
            continue
        ramp(cow.act_mult, t, t + 10 * HOUR, 1.35, 0.5, 4)
        ramp(cow.rum_mult, t, t + 36 * HOUR, 0.82, 1, 12)
        cow.busy.append((t, t + 2 * DAY))
        o.event(t, "pen_move", animal=str(cow.id), pen=str(r.choice(["group-1", "group-2", "group-3"])))
    # illness: rumination drop (ketosis, DA, lameness, acidosis) ----------------------
    n_ill = max(2, r.poisson(f.n * f.days / 350))
    for _ in range(n_ill * 3):
        if n_ill <= 0:
            break
        cow = cows[int(r.integers(0, f.n))]
        t = f.t0 + ud(r, 1.5, f.days - 3) * DAY
        depth = r.uniform(0.35, 0.6)
        rup = r.uniform(10, 30)
        plateau = r.uniform(24, 72)
        down = r.uniform(24, 48)
        end = t + (rup + plateau + down / 2) * HOUR
        if not cow.free(t, end):
            continue
        ramp(cow.rum_mult, t, t + (rup + plateau + down) * HOUR, 1 - depth, rup, down)
        ramp(cow.act_mult, t, t + (rup + plateau + down) * HOUR, 1 - depth / 2.5, rup, down)
        cow.busy.append((t, end))
        cow.yield_daily *= 1.0  # yield handled via ill windows below
        det = t + rup * (0.25 / depth) * HOUR + 8 * HOUR
        o.label("rumination", str(cow.id), t, min(end, f.t1), det, depth=round(depth, 2))
        ill = getattr(cow, "ill", [])
        ill.append((t, t + (rup + plateau + down) * HOUR, depth))
        cow.ill = ill  # type: ignore[attr-defined]
        n_ill -= 1
    # estrus -------------------------------------------------------------------------------
    cyc = [c for c in cows if c.milking and r.random() < 0.5]
    for cow in cyc:
        t = f.t0 + r.uniform(0.1, 21) * DAY
        while t < f.t1 - 0.5 * DAY:
            dur = r.uniform(8, 20) * HOUR
            peak = r.uniform(1.8, 4.0)
            if cow.free(t, t + dur, pad=0.5 * DAY):
                ramp(cow.act_mult, t, t + dur, peak, 2, 2)
                ramp(cow.rum_mult, t - 2 * HOUR, t + dur + 6 * HOUR, r.uniform(0.75, 0.88), 2, 3)
                cow.busy.append((t, t + dur))
                o.label("estrus", str(cow.id), t, min(t + dur, f.t1), t + 2 * HOUR,
                        peak=round(peak, 2), hours=round(dur / HOUR, 1))
                # rumination dips a little on heat day: never a rumination alert
                o.label("rumination", str(cow.id), t, t + dur + DAY, t, optional=True, note="estrus")
                if r.random() < 0.3:
                    o.event(t + r.uniform(6, 10) * HOUR, "heat", animal=str(cow.id))
                if r.random() < 0.6:
                    o.event(t + r.uniform(10, 16) * HOUR, "insemination", animal=str(cow.id))
                    if r.random() < 0.4:
                        break  # conceived
            t += r.uniform(19, 23) * DAY
    # collar faults -----------------------------------------------------------------------
    faults: dict[int, list[tuple[str, float, float, Any]]] = {}
    for kind, n_k in (("dropout", int(r.integers(1, 4))), ("stuck", int(r.integers(0, 3))),
                      ("spike", int(r.integers(0, 3)))):
        for _ in range(n_k * 4):
            if n_k <= 0:
                break
            cow = cows[int(r.integers(0, f.n))]
            dur = {"dropout": r.uniform(4, 36), "stuck": r.uniform(4, 24), "spike": 0.25}[kind] * HOUR
            t = f.t0 + win(f.t0 + ud(r, 1, f.days - 1) * DAY) * WIN + WIN
            end = min(t + dur, f.t1)
            if not cow.free(t, end, pad=DAY):
                continue
            cow.busy.append((t, end))
            faults.setdefault(cow.id, []).append((kind, t, end, None))
            n_k -= 1
    # emit collars --------------------------------------------------------------------------------
    for cow in cows:
        mu_a = cow.act_base * act_d * heat_act * cow.act_mult
        act = mu_a * r.gamma(f.act_shape, 1 / f.act_shape, nw)
        dayf = np.repeat(r.normal(1, 0.05, f.days), 96)
        p = np.clip(cow.rum_daily / 96 / 15 * rum_d * heat_rum * cow.rum_mult * dayf, 0, 0.97)
        rum = r.binomial(15, p)
        act_i = np.clip(np.round(act * np.repeat(r.normal(1, 0.06, f.days), 96)), 0, 9999).astype(int)
        boot, seq = int(r.integers(1, 20)), int(r.integers(0, 100000))
        mv = int(r.integers(2950, 3150))
        lost = r.random(nw) < f.collar_loss
        fl = faults.get(cow.id, [])
        sid = f.collar[cow.id]
        stuck_v: tuple[int, int] | None = None
        sent_c: set[float] = set()
        for w in range(nw):
            te = wt[w] + WIN  # frame relayed at window end
            if te > f.t1:
                break
            seq += 1
            a_v, r_v = int(act_i[w]), int(rum[w])
            silent = False
            for kind, a, b, _ in fl:
                if a <= te < b:
                    if kind == "dropout":
                        silent = True
                    elif kind == "stuck":
                        if stuck_v is None:
                            stuck_v = (a_v, r_v)
                        a_v, r_v = stuck_v
                    elif kind == "spike":
                        a_v = int(r.choice([9000, 9999, 65535]))
                        if not lost[w]:
                            sent_c.add(a)
            if silent:
                continue
            if lost[w]:
                continue
            batt = mv - int(3 * (te - f.t0) / DAY)
            o.msg(te + r.uniform(1, 50), f"barn/collar/{sid}",
                  b64=collar_frame(1 if batt < 2700 else 0, boot, seq, cow.id, a_v, r_v, batt))
        for kind, a, b, _ in fl:
            subj = sid
            alt = [str(cow.id)]
            if kind == "dropout":
                o.label("sensor.dropout", subj, a, b, a + HOUR, alt_subjects=alt)
                for rule in ("rumination", "estrus"):
                    o.label(rule, str(cow.id), a, b + DAY, a, optional=True, note="collar fault")
            elif kind == "stuck":
                o.label("sensor.stuck", subj, a, b, a + HOUR, alt_subjects=alt)
                for rule in ("rumination", "estrus"):
                    o.label(rule, str(cow.id), a, b + DAY, a, optional=True, note="collar fault")
            elif a in sent_c:
                o.label("sensor.spike", subj, a - WIN, a + 2 * WIN, a, alt_subjects=alt)
                o.label("estrus", str(cow.id), a - WIN, a + 2 * WIN, a, optional=True,
                        note="collar spike")
    return cows, []


# --------------------------------------------------------------------------- milk meters

def gen_milk(f: Farm, o: Out, cows: list[Cow], sessions: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Milk meter records; returns [(ts, kg)] of milk into the tank."""
    r = f.r
    flows: list[tuple[float, float]] = []
    # per-cow visit list: (start ts, meter id)
    visits: dict[int, list[tuple[float, str, float]]] = {c.id: [] for c in cows}
    if f.milking == "robot":
        n_robot = max(1, round(f.n / 60))
        for cow in cows:
            t = f.t0 + r.uniform(0, 8) * HOUR
            robot = f"robot-{int(r.integers(1, n_robot + 1))}"
            while t < f.t1:
                visits[cow.id].append((t, robot, r.uniform(300, 480)))
                t += r.uniform(6, 12) * HOUR
    else:
        stalls = f._stalls  # type: ignore[attr-defined]
        for a, dur in sessions:
            order = list(cows)
            r.shuffle(order)
            for i, cow in enumerate(order):
                t = a + (i / len(order)) * (dur - 15 * 60)
                visits[cow.id].append((t, f"mm-{int(r.integers(1, stalls + 1)):02d}", r.uniform(240, 540)))
    meter_seq: dict[str, list[int]] = {}
    n_mast = max(2, r.poisson(f.n * f.days / 350))
    mast_cows = {int(c.id) for c in r.choice([c for c in cows if c.milking and not c.busy],
                                                size=min(n_mast, len([c for c in cows if c.milking and not c.busy])),
                                                replace=False)}
    for cow in cows:
        vs = visits[cow.id]
        if not vs:
            continue
        active = [(t, m, d) for t, m, d in vs
                  if (cow.milking and (cow.dry_off is None or t < cow.dry_off))
                  or (cow.calving is not None and t > cow.calving + 4 * HOUR)]
        if not active:
            continue
        n = len(active)
        ec = np.tile(cow.ec_base, (n, 1)) * (1 + r.normal(0, f.ec_noise, (n, 4)))
        yld = np.empty(n)
        prev_t = None
        abn: list[int] = []
        mq = -1
        if cow.id in mast_cows:
            k0 = int(r.integers(4, max(5, n - 6)))
            mq = int(r.integers(0, 4))
            amp = r.uniform(0.25, 0.6)
            length = int(r.integers(6, 14))
            for j in range(k0, min(n, k0 + length + 3)):
                g = min(1.0, (j - k0 + 1) / 2) if j < k0 + length else max(0.0, 1 - (j - k0 - length + 1) / 3)
                ec[j, mq] *= 1 + amp * g
                if amp * g >= 0.12:
                    abn.append(j)
        for j, (t, _m, _d) in enumerate(active):
            interval = (t - prev_t) if prev_t is not None else DAY / (2 if f.milking == "2x" else 3 if f.milking == "3x" else 2.6)
            prev_t = t
            yd = cow.yield_daily
            if cow.calving is not None and t > cow.calving:
                dim = (t - cow.calving) / DAY
                yd = cow.yield_daily * min(1.0, 0.4 + 0.12 * dim)
                if dim < 2.5:
                    ec[j] *= r.uniform(1.12, 1.25)  # colostrum/transition milk: all quarters
            for a, b, depth in getattr(cow, "ill", []):
                if a <= t <= b:
                    yd *= 1 - depth / 2
            yld[j] = yd * interval / DAY * r.normal(1, 0.07)
            if j in abn:
                yld[j] *= 0.85
            # a single odd quarter reading (meter glitch / strip): not mastitis
            if r.random() < 0.003 and j not in abn:
                ec[j, int(r.integers(0, 4))] *= r.uniform(1.2, 1.4)
        for j, (t, m, d) in enumerate(active):
            bs = meter_seq.setdefault(m, [int(r.integers(1, 9)), int(r.integers(0, 5000))])
            bs[1] += 1
            te = t + d
            y = max(0.0, float(yld[j]))
            e = [round(float(x) * 100) for x in ec[j]]
            line = f"MM1,{bs[0]},{bs[1]},{int(te)},{cow.id},{round(y * 100)},{e[0]},{e[1]},{e[2]},{e[3]},{int(d)}"
            o.msg(te + r.uniform(0.5, 3), f"barn/milk/{m}", line)
            flows.append((t, y, d))  # type: ignore[arg-type]
        if abn:
            # the meter stamps the record with whole seconds: label on the same clock
            ta = float(int(active[abn[0]][0] + active[abn[0]][2]))
            t2 = float(int(active[abn[1]][0] + active[abn[1]][2])) if len(abn) > 1 else ta
            tz = float(int(active[abn[-1]][0] + active[abn[-1]][2]))
            if len(abn) >= 2:
                o.label("mastitis", str(cow.id), ta, tz, t2, quarter=["lf", "rf", "lr", "rr"][mq])
            else:
                o.label("mastitis", str(cow.id), ta, tz + DAY, t2, optional=True,
                        note="one abnormal milking before the end of the run")
    return flows  # type: ignore[return-value]


# --------------------------------------------------------------------------- bulk tank

def gen_tank(f: Farm, o: Out, flows: list[Any], sessions: list[tuple[float, float]],
             barn_grid: np.ndarray, barn_temp_proxy: np.ndarray) -> None:
    r = f.r
    dt = float(f.tank_period)
    steps = int(f.days * DAY / dt)
    ts = f.t0 + np.arange(steps) * dt
    inflow = np.zeros(steps)  # kg per step
    for t, y, d in flows:
        a = int((t - f.t0) // dt)
        k = max(1, int(d // dt))
        if 0 <= a < steps:
            inflow[a:a + k] += y / k
    daily = inflow.sum() / f.days
    cap = daily * f.collect_every * r.uniform(1.3, 1.6)
    t_in = r.uniform(28, 34) if r.random() < 0.6 else r.uniform(16, 22)  # with plate pre-cooler
    per_milking = daily / (2 if f.milking == "2x" else 3 if f.milking == "3x" else 4)
    sess_dur = sessions[0][1] if sessions else 2 * HOUR
    power = per_milking * 3.9 * (t_in - 4) / (sess_dur + r.uniform(40, 80) * 60) * r.uniform(1.3, 1.8)
    ua = r.uniform(0.02, 0.06)
    setp = r.uniform(3.4, 4.0)
    ambient = np.clip(np.interp(ts, barn_grid, barn_temp_proxy) - 3, 5, 28)  # milk room
    # collections: mid-morning, every collect_every days; milk from a robot is buffered meanwhile
    coll: list[float] = []
    d0 = int(r.integers(1, f.collect_every + 1))
    for d in range(d0, f.days, f.collect_every):
        ct = f.t0 + d * DAY + r.uniform(8.5, 12.5) * HOUR
        if sessions:
            first = min((a + du for a, du in sessions if f.t0 + d * DAY <= a), default=ct)
            ct = first + r.uniform(1, 3) * HOUR
        coll.append(ct)
    if f.milking == "robot":
        for ct in coll:
            a, b = int((ct - f.t0) // dt), int((ct + 1.6 * HOUR - f.t0) // dt)
            held = inflow[a:b].sum()
            inflow[a:b] = 0
            if b < steps:
                inflow[b:b + int(600 // dt)] += held / int(600 // dt)
    # faults on the cooler: (kind, start, end, power factor)
    faults: list[tuple[str, float, float, float]] = []
    taken: list[tuple[float, float]] = [(c - 2 * HOUR, c + 3 * HOUR) for c in coll]

    def ok(a: float, b: float, pad: float = 12 * HOUR, among: list[tuple[float, float]] | None = None) -> bool:
        return a > f.t0 + 1.5 * DAY and b < f.t1 - 2 * HOUR and all(
            b + pad < x or a > y + pad for x, y in (taken if among is None else among))

    if sessions:
        starts_m = [a for a, _ in sessions]
    else:
        starts_m = [f.t0 + (d + 0.5) * DAY for d in range(f.days)]
    for kind in ("failure_milking", "failure_storage", "slow"):
        if r.random() > 0.85:
            continue
        for _ in range(40):
            if kind == "failure_milking":
                m = float(r.choice(starts_m))
                a = m + r.uniform(-20, 30) * 60
                b = a + r.uniform(3, 8) * HOUR
                fac = 0.0
            elif kind == "failure_storage":
                m = float(r.choice(starts_m))
                a = m + sess_dur + r.uniform(2, 4) * HOUR
                b = a + r.uniform(6, 12) * HOUR
                fac = 0.0
            else:
                a = f.t0 + ud(r, 1.5, f.days - 3) * DAY
                b = a + r.uniform(1, 3) * DAY
                fac = r.uniform(0.25, 0.45)
            # a slow cooler lasts days and may span collections; failures keep clear of them
            if ok(a, b, among=[(x, y) for k_, x, y, _ in faults] if kind == "slow" else None):
                faults.append((kind, a, b, fac))
                taken.append((a, b))
                break

    def simulate(with_faults: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        T = np.empty(steps)
        V = np.empty(steps)
        agit = np.zeros(steps, dtype=bool)
        wash = np.zeros(steps, dtype=bool)
        comp = np.zeros(steps, dtype=bool)
        v, temp, on, reading = cap * 0.3, setp, False, setp
        ci = 0
        drain_until = -1.0
        wash_start = -1.0
        draining = False
        for i in range(steps):
            t = ts_l[i]
            if ci < len(coll) and t >= coll[ci]:
                drain_until = coll[ci] + r_drain[ci]
                wash_start = drain_until + r_washgap[ci]
                draining = True
                ci += 1
            fac = 1.0
            if with_faults:
                for _, a, b, fc in faults:
                    if a <= t < b:
                        fac = fc
            if t < drain_until:
                v = max(0.0, v - cap / (r_drain[ci - 1] / dt))
            elif draining:
                v, draining = 0.0, False
            add = inflow_l[i]
            if add > 0:
                temp = (v * temp + add * t_in) / (v + add) if v + add > 0 else t_in
                v += add
            in_wash = 0 <= t - wash_start < 45 * 60
            if v > v_cool:
                if temp > setp + 0.4:
                    on = True
                elif temp < setp - 0.4:
                    on = False
            else:
                on = False
            if on and v > 0:
                temp -= power * fac * dt / (v * 3.9)
                temp = max(temp, 0.5)
            if v > 0:
                temp += ua * (amb_l[i] - temp) * dt / (v * 3.9)
            # what the probe reads: milk once covered, else the air or wash water
            if v > v_probe:
                reading = temp
            elif in_wash:
                x = (t - wash_start) / 60
                target = 38.0 if x < 8 else 62.0 if x < 30 else 18.0
                reading += (target - reading) * (1 - math.exp(-dt / 180))
            else:
                reading += (amb_l[i] + 2 - reading) * (1 - math.exp(-dt / 1800))
            T[i] = reading
            V[i] = v
            comp[i] = on
            wash[i] = in_wash
            agit[i] = on or in_wash or (v > cap * 0.05 and (t % 1800) < 150)
        return T, V, agit, wash, comp

    ts_l, inflow_l, amb_l = ts.tolist(), inflow.tolist(), ambient.tolist()
    # the cooler starts once milk covers the evaporator (4-10 % of the tank; less for robots)
    v_cool = cap * (float(r.uniform(0.04, 0.10)) if sessions else 0.03)
    v_probe = cap * (0.04 if sessions else 0.02)
    r_drain = r.uniform(20, 35, len(coll) + 1) * 60
    r_washgap = r.uniform(10, 40, len(coll) + 1) * 60
    T_f, V_f, ag, wa, _ = simulate(True)
    T_n, _, _, _, _ = simulate(False)
    tank = "tank-1"
    noise = r.normal(0, f.tank_noise, steps)
    meas = np.round((T_f + noise) / f.tank_res) * f.tank_res
    # sensor faults on the probe (away from cooler faults and collections)
    sfaults: list[tuple[str, float, float, Any]] = []
    for kind in ("spike", "stuck", "dropout"):
        if r.random() < (0.7 if kind == "spike" else 0.4):
            for _ in range(40):
                a = f.t0 + ud(r, 1.5, f.days - 1.5) * DAY
                dur = {"spike": dt, "stuck": r.uniform(3, 10) * HOUR, "dropout": r.uniform(2, 12) * HOUR}[kind]
                if ok(a, a + dur):
                    sfaults.append((kind, a, a + dur, None))
                    taken.append((a, a + dur))
                    break
    keep = _radio_gaps(f, ts + 0.0)
    cnt = int(r.integers(0, 900000))
    inst = f"{int(r.integers(0x1000, 0xFFFF)):04x}"
    stuck_v: float | None = None
    jitter = r.uniform(0, 2, steps)
    sent: set[float] = set()
    for i in range(steps):
        t = ts[i] + jitter[i]
        cnt += 1
        val = float(meas[i])
        skip = False
        for kind, a, b, _ in sfaults:
            if a <= t < b:
                if kind == "dropout":
                    skip = True
                elif kind == "stuck":
                    stuck_v = val if stuck_v is None else stuck_v
                    val = stuck_v
                elif kind == "spike":
                    val = float(r.choice([85.0, -5.0, 99.9, 40.0]))
                    if keep[i]:
                        sent.add(a)
        if skip or not keep[i]:
            continue
        p: dict[str, Any] = {"msg_id": f"{inst}-{cnt % 1000000:06d}", "ts": int(t),
                             "temp": round(val, 2)}
        if f.tank_agitator:
            p["agitator"] = "on" if ag[i] else "off"
        if f.tank_level:
            p["level_l"] = round(float(V_f[i]) / 1.03)
        if f.tank_wash:
            p["wash"] = bool(wa[i])
        o.msg(t + r.uniform(0.2, 2), f"barn/tank/{tank}", json.dumps(p))
    for ct in coll:
        if f.record_collections:
            o.event(ct, "collection", tank=tank)
    if f.record_milkings:
        for a, du in sessions:
            o.event(a, "milking", tank=tank, duration_s=int(du))
    # labels for cooler faults, from the faulty against the healthy trajectory
    for kind, a, b, _ in faults:
        i0, i1 = int((a - f.t0) // dt), min(steps - 1, int((b - f.t0) // dt))
        thr = 1.0 if kind == "failure_storage" else 1.5
        diff = T_f[i0:] - T_n[i0:]
        idx = np.flatnonzero(diff > thr)
        if idx.size == 0 or ts[i0 + idx[0]] > b + 2 * HOUR:
            o.label("cooling", tank, a, b, b, kind=kind, optional=True, note="not visible")
            continue
        det = float(ts[i0 + idx[0]])
        back = np.flatnonzero(np.abs(diff[i1 - i0:]) < 0.5)
        end = float(ts[i1 + back[0]]) if back.size else f.t1
        o.label("cooling", tank, a, end, det, kind=kind, repaired=iso(b))
    for kind, a, b, _ in sfaults:
        if kind == "spike":
            if a in sent:
                o.label("sensor.spike", tank, a - dt, a + 2 * dt, a)
        elif kind == "dropout":
            o.label("sensor.dropout", tank, a, b, a + 30 * 60)
        else:
            i0, i1 = int((a - f.t0) // dt), int((b - f.t0) // dt)
            dev = np.flatnonzero(np.abs(T_f[i0:i1] - T_f[i0]) > 0.5)
            det = max(a + 30 * 60, float(ts[i0 + dev[0]]) if dev.size else b)
            o.label("sensor.spike", tank, a, b + 2 * dt, b, optional=True, note="stuck probe recovers")
            if det < b:
                o.label("sensor.stuck", tank, a, b, det)
            else:
                o.label("sensor.stuck", tank, a, b, b, optional=True, note="true value did not move")
        o.label("cooling", tank, a, b + HOUR, a, optional=True, note="probe fault")


# --------------------------------------------------------------------------- water

def gen_water(f: Farm, o: Out, barn_grid: np.ndarray, barn_thi: np.ndarray,
              sessions: list[tuple[float, float]]) -> None:
    r = f.r
    per = f.water_period
    for k in range(f.water_meters):
        sid = f"water-{k + 1}"
        times = f.t0 + r.uniform(0, per) + np.arange(0, f.days * DAY - per, per)
        hod = ((times - f.t0) % DAY) / HOUR
        shape = 0.3 + 1.0 * ((hod > 6) & (hod < 22))
        for a, du in sessions:
            shape = shape + 1.5 * ((times > a) & (times < a + du + HOUR))
        heat = 1 + np.clip((np.interp(times, barn_grid, barn_thi) - 68) * 0.03, 0, 0.5)
        lam = f.n * 100 / 1440 / f.water_meters / 12 * shape / shape.mean() * heat * per / 60
        drinking = r.poisson(lam)
        flow = drinking * r.uniform(8, 16, times.size)
        total = float(r.uniform(1e4, 5e5))
        keep = _radio_gaps(f, times)
        drop = None
        if r.random() < 0.5:
            a = f.t0 + ud(r, 2, f.days - 2) * DAY
            drop = (a, a + r.uniform(2, 16) * HOUR)
            o.label("sensor.dropout", sid, drop[0], drop[1], drop[0] + max(30 * 60, 3 * per))
        boot, seq = int(r.integers(1, 9)), int(r.integers(0, 10000))
        for i, t in enumerate(times):
            fl = float(flow[i])
            total += fl * per / 60
            seq += 1
            if drop and drop[0] <= t < drop[1]:
                continue
            if not keep[i]:
                continue
            o.msg(t + r.uniform(0.2, 2), f"barn/water/{sid}",
                  json.dumps({"boot": boot, "seq": seq, "flow": round(fl, 1), "total": round(total, 1)}))


# --------------------------------------------------------------------------- main

def generate(seed: int, cows: int | None, days: int | None, outdir: Path) -> dict[str, Any]:
    f = Farm(seed, cows, days)
    o = Out()
    sessions = milking_sessions(f)
    grid, barn_thi = gen_climate(f, o)
    # barn temperature proxy for the tank room (from THI is enough: same shape)
    barn_temp = f._barn_temp  # type: ignore[attr-defined]
    cow_list, _ = gen_cows(f, o, sessions, grid, barn_thi)
    flows = gen_milk(f, o, cow_list, sessions)
    gen_tank(f, o, flows, sessions, grid, barn_temp)
    gen_water(f, o, grid, barn_thi, sessions)
    if f.milking != "robot" and f.record_milkings:
        o.event(f.t0, "milking_schedule", tank="tank-1",
                times=["05:00", "16:00"] if f.milking == "2x" else ["04:30", "12:30", "20:30"])
    outdir.mkdir(parents=True, exist_ok=True)
    o.msgs.sort()
    with open(outdir / "messages.jsonl", "w") as fh:
        for _, _, line in o.msgs:
            fh.write(line + "\n")
    o.labels.sort(key=lambda d: (d["onset"], d["rule"], d["subject"]))
    with open(outdir / "labels.jsonl", "w") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in o.labels)
    o.events.sort(key=lambda d: d["ts"])
    with open(outdir / "farm.json", "w") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in o.events)
    params = f.params()
    params.update(t0=iso(f.t0), messages=len(o.msgs), labels=len(o.labels), events=len(o.events))
    (outdir / "farm_params.json").write_text(json.dumps(params, indent=1) + "\n")
    return params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--cows", type=int, default=None, help="herd size (default: 60-120 from the seed)")
    ap.add_argument("--days", type=int, default=None, help="days (default: 21-30 from the seed)")
    ap.add_argument("-o", "--out", required=True, help="output folder")
    a = ap.parse_args(argv)
    p = generate(a.seed, a.cows, a.days, Path(a.out))
    print(json.dumps(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
