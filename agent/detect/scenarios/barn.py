"""A deterministic, seeded simulator of one dairy barn with labelled episodes.

It produces what the ingest side would hand to detect, with the firmware
names and value keys of the shipped firmware (``firmware_configs/``): a
``barn-climate`` node every 5 min (the firmware sends every minute; 5 min keeps
the evaluation fast), a ``bulk-tank`` reading every minute (firmware: 30 s), a
``milk-meter`` reading per cow per milking, a ``neck-collar`` reading per cow
every 15 min (as the firmware) and a ``water-flow`` meter every 5 min. The physics is simple on purpose: the tank
is mixed, warm milk flows in during milkings, the cooler's power grows with
the wetted evaporator area, a thermostat cycles in storage, collection and a
hot wash follow every morning milking. Cows have their own baselines, diurnal
rhythms, day-to-day variation and occasional one-off outliers.

Scenario kinds inject labelled episodes into that normal barn; every stream
that is not injected is a negative for the other rules. Labels come from the
simulated truth, never from the rules.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from agent.detect.rules.heat_stress import thi
from agent.detect.scenarios.farms import FarmParams
from agent.detect.scenarios.model import Episode, Scenario
from agent.records import Reading, Stamp
from agent.records.types import stable_id

DAY = 86400.0
HOUR = 3600.0
WALL0 = 1_748_736_000.0  # 2025-06-01 00:00 UTC: simulated second 0 is midnight
MONO0 = 1000.0
BOOT = "sim-boot"
KINDS = (
    "normal", "cooling_failure", "heat_stress", "mastitis", "estrus", "rumination",
    "stuck", "dropout", "mixed",
)
# "mixed": a whole farm with every kind of episode at once (cooling failures, hot
# spells, cows in heat, with mastitis or ruminating less, a stuck and a silent
# sensor), the kind the family-of-farms evaluation runs.
TANK, CLIMATE, WATER = "tank-1", "climate-1", "water-1"
COLLAR_STEP = 900.0
MILKINGS_H = (5.0, 17.0)


@dataclass(slots=True)
class _Item:
    s: float
    sensor: str
    firmware: str
    values: dict[str, float]
    animal: str | None = None


@dataclass
class _Barn:
    rng: random.Random
    days: int
    kind: str
    p: FarmParams = field(default_factory=FarmParams)
    _sessions: list[tuple[float, float]] = field(default_factory=list)
    streams: dict[str, list[_Item]] = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list)
    day_temp: list[tuple[float, float, float]] = field(default_factory=list)  # mean, amp, rh
    hot_days: set[int] = field(default_factory=set)
    # Herd-wide disturbances (regrouping, hoof trimming): (start, end, factor).
    herd_events: list[tuple[float, float, float]] = field(default_factory=list)
    # Herd-wide rumination dips (feed delays): (start, end, depth).
    herd_dips: list[tuple[float, float, float]] = field(default_factory=list)
    # Faults added after the first family of farms (slow cooling, drift) draw
    # from their own generator, so they move none of the other draws of a seed.
    extra: random.Random = field(default_factory=random.Random)

    def add(self, item: _Item) -> None:
        self.streams.setdefault(item.sensor, []).append(item)

    # -- climate --------------------------------------------------------------
    def plan_weather(self) -> None:
        r = self.rng
        if self.kind in ("heat_stress", "mixed"):
            while len(self.hot_days) < 3:
                start = r.randrange(2, self.days - 2)
                self.hot_days.update(range(start, start + r.choice((1, 1, 2))))
        if self.p.climate == "hot":  # a hot summer: one day in five is a hot day
            self.hot_days.update(d for d in range(self.days) if r.random() < 0.2)
        normal = {"temperate": (9, 14), "warm": (13, 18), "hot": (16, 21)}[self.p.climate]
        for d in range(self.days + 1):
            if d in self.hot_days:
                self.day_temp.append((r.uniform(24, 28), r.uniform(4.5, 7), r.uniform(55, 70)))
            else:
                self.day_temp.append((r.uniform(*normal), r.uniform(3, 6), r.uniform(65, 80)))

    def air(self, s: float) -> tuple[float, float]:
        """True air temperature and humidity; day parameters blend noon to noon."""
        x = s / DAY - 0.5
        d = max(0, min(self.days - 1, math.floor(x)))
        w = min(1.0, max(0.0, x - d))
        w = 0.5 - 0.5 * math.cos(math.pi * w)
        a, b = self.day_temp[d], self.day_temp[d + 1]
        mean, amp, rh = (a[i] * (1 - w) + b[i] * w for i in range(3))
        phase = math.sin(2 * math.pi * (s / DAY - 9 / 24))  # warmest at 15:00
        return mean + amp * phase, min(98.0, rh - 15 * phase)

    def climate(self) -> None:
        for node in range(self.p.climate_nodes):
            sensor = CLIMATE if node == 0 else f"climate-{node + 1}"
            offset = 0.0 if node == 0 else self.rng.uniform(-0.8, 0.8)
            self._climate_node(sensor, offset)

    def _climate_node(self, sensor: str, offset: float) -> None:
        r = self.rng
        p = self.p
        step = p.climate_period_s
        start: float | None = None
        hot_s = 0.0
        last_glitch = -math.inf
        skip_until = -1.0
        n = int(self.days * DAY / step)
        for i in range(n):
            s = i * step
            t, rh = self.air(s)
            t += offset
            value = thi(t, rh)
            vals = {"temperature_c": round(t + r.gauss(0, p.temp_noise), 2),
                    "humidity_pct": round(min(100.0, max(0.0, rh + r.gauss(0, 2))), 1),
                    "battery_v": round(3.1 - s * 1e-8, 3)}
            # A one-off glitch is a sensor.spike (and feeds no other rule). Glitches
            # stay 2 h apart: three within the hour is a sensor going erratic.
            if r.random() < 0.002 * step / 300 and s - last_glitch > 2 * 3600:
                vals["temperature_c"] += r.choice((-1, 1)) * r.uniform(15, 30)
                last_glitch = s
                self.episodes.append(Episode("sensor.spike", sensor, s, s + HOUR))
            # An irregular radio: now and then nothing for 16-25 min (not a dropout).
            # The first reading after a gap gets through: gaps back to back made
            # silences of 40 min and more, as long as a labelled dropout.
            if p.climate_gaps and s >= skip_until and r.random() < p.climate_gaps:
                until = s + r.uniform(16, 25) * 60
                if s - step >= skip_until:
                    skip_until = until
            if s >= skip_until:
                self.add(_Item(s, sensor, "barn-climate", vals))
            # Truth with the hysteresis staff expect: heat stress starts at THI 72
            # and lasts until THI falls below 70 (a night without relief continues
            # it). Spells that never reach 72 for 45 min are ambiguous: ignored.
            if value >= 70 and start is None:
                start, hot_s = s, 0.0
            if start is not None and value >= 72:
                hot_s += step
            if start is not None and (value < 70 or i == n - 1):
                self.episodes.append(Episode(
                    "heat_stress", sensor, start, s + HOUR, kind="heat",
                    ignore=hot_s < 2700, pre_s=HOUR))
                start = None

    # -- bulk tank ------------------------------------------------------------
    def sessions(self) -> list[tuple[float, float]]:
        """When milk flows into the tank: parlour sessions, or (robot) all day
        except while the tank is collected and washed."""
        return self._sessions

    def tank(self, cows: int) -> None:
        r = self.rng
        p = self.p
        per_milking = cows * r.uniform(12, 16)  # litres, at two milkings a day
        duration = r.uniform(80, 110) * 60
        inflow = per_milking / (duration / 60)  # L/min
        t_in = r.uniform(32, 34)
        power = r.uniform(1.0, 1.2) * inflow * (t_in - 5)  # °C·L/min at full wetting
        leak = r.uniform(0.0004, 0.0008)
        collect = [d * DAY + r.uniform(9.3, 9.8) * HOUR for d in range(self.days)
                   if d % p.collection_every_days == 0]
        wash_len = [r.uniform(35, 45) * 60 for _ in collect]
        wash_hot = [r.uniform(55, 62) for _ in collect]
        hours = MILKINGS_H if p.milkings_per_day == 2 else (5.0, 13.0, 21.0)
        sessions: list[tuple[float, float]] = []
        if p.milking == "robot":
            # Milk flows all day; the robot holds it back while the tank is emptied.
            inflow = 2 * per_milking / (DAY / 60)
            edges = [0.0] + [c for c in collect]
            for k, a in enumerate(edges):
                begin = a if k == 0 else a + wash_len[k - 1] + 300
                end = collect[k] if k < len(collect) else self.days * DAY
                if end > begin:
                    sessions.append((begin, end))
        else:
            if p.milkings_per_day != 2:
                per_milking *= 2 / p.milkings_per_day
                duration *= 2 / p.milkings_per_day
                inflow = per_milking / (duration / 60)
            for d in range(self.days):
                for h in hours:
                    start = d * DAY + h * HOUR + r.uniform(-10, 10) * 60
                    sessions.append((start, start + duration))
        self._sessions = sessions
        failures: list[tuple[float, float]] = []
        eps: list[Episode] = []
        if self.kind in ("cooling_failure", "mixed"):
            for d in range(2, self.days - 1, 4):
                if r.random() < 0.5:  # the compressor does not start with the milking
                    day = [a for a, _ in sessions if d * DAY <= a < (d + 1) * DAY] or [d * DAY]
                    start = r.choice(day) + r.uniform(-10, 40) * 60
                    length, kind = r.uniform(4, 10) * HOUR, "at milking"
                else:  # it fails while holding cooled milk
                    start = d * DAY + r.uniform(0.5, 3.5) * HOUR + r.choice((0, 12)) * HOUR
                    length, kind = r.uniform(12, 16) * HOUR, "in storage"
                failures.append((start, start + length))
                eps.append(Episode("cooling", TANK, start, start + length + 3 * HOUR, kind=kind))
        slow = self._slow_cooling(failures)
        if slow is not None:
            eps.append(Episode("cooling", TANK, slow[0], slow[1] + 3 * HOUR, kind="slow"))
        self.episodes += eps
        temp, volume, compressor, wash_until = 3.5, per_milking, False, -1.0
        ci = si = 0
        step = p.tank_period_s
        dm = step / 60  # minutes per step
        for i in range(int(self.days * DAY / step)):
            s = i * step
            ambient = self.air(s)[0] + 2
            failed = any(a <= s < b for a, b in failures)
            weak = slow[2] if slow is not None and slow[0] <= s < slow[1] else 1.0
            while si < len(sessions) and sessions[si][1] <= s:
                si += 1
            milking = si < len(sessions) and sessions[si][0] <= s < sessions[si][1]
            if ci < len(collect) and s >= collect[ci]:
                volume, wash_until = 0.0, s + wash_len[ci]
                ci += 1
            if s < wash_until:
                # The hot wash: up to its temperature within minutes, a little
                # unsteady, then rinsed down towards the air.
                hot = wash_hot[ci - 1] + r.gauss(0, 0.7)
                temp = (temp + (hot - temp) * (1 - 0.3 ** dm) if s + 600 < wash_until
                        else temp + (ambient - temp) * (1 - 0.7 ** dm))
                agitator = 1.0
            else:
                if milking:
                    flow = inflow * dm
                    temp = t_in - 2 if volume <= 0 else (temp * volume + t_in * flow) / (volume + flow)
                    volume += flow
                if volume > 0:
                    wet = min(1.0, volume / (0.5 * per_milking))
                    if temp > 4.0 and volume > 0.03 * per_milking:
                        compressor = True
                    elif temp < 3.0:
                        compressor = False
                    if compressor and (failed or (weak < 1.0 and milking)):
                        # The controller calls for cooling that never comes (or a
                        # weak compressor meets warm milk): from here on the
                        # fault can be seen at all.
                        for ep in eps:
                            if ep.start <= s < ep.end and ep.observable_s is None:
                                ep.observable_s = s
                    if compressor and not failed:
                        temp -= weak * power * wet / volume * dm
                    temp += leak * (ambient - temp) * dm
                    agitator = 1.0 if milking or compressor or (int(s // 60) % 20) < 2 else 0.0
                else:
                    temp += (1 - 0.95 ** dm) * (ambient - temp)
                    agitator = 0.0
            q = p.tank_resolution
            value = round(round((temp + r.gauss(0, p.tank_noise)) / q) * q, 2)
            vals = {"milk_temp_c": value, "wash": float(s < wash_until)}
            if p.tank_agitator:
                vals["agitator"] = agitator
            if p.tank_level:
                vals["level_l"] = round(volume)
            self.add(_Item(s, TANK, "bulk-tank", vals))

    def _slow_cooling(self, failures: list[tuple[float, float]]) -> tuple[float, float, float] | None:
        """A weak compressor (low refrigerant, a dirty condenser) on a mixed farm:
        (start, end, share of its power left). It still cools, too slowly, for
        1.5 to 3 days (it may or may not meet a first milking after a
        collection), and it keeps clear of the failures (a dead compressor is another fault)."""
        if self.kind != "mixed" or self.days < 8:
            return None
        r = self.extra
        for _ in range(50):
            start = r.uniform(3, self.days - 4) * DAY
            end = start + r.uniform(1.5, 3) * DAY
            if all(b + 6 * HOUR < start or end + 6 * HOUR < a for a, b in failures):
                return start, end, r.uniform(0.3, 0.55)
        return None

    # -- cows ------------------------------------------------------------------
    def herd(self, cows: int) -> None:
        r = self.rng
        for d in range(1, self.days):
            if r.random() < 0.15:
                a = d * DAY + r.uniform(8, 16) * HOUR
                self.herd_events.append((a, a + r.uniform(2, 5) * HOUR, r.uniform(1.6, 2.5)))
        if self.p.herd_dip_days:
            for d in range(1, self.days):
                if r.random() < self.p.herd_dip_days:  # feed delay: the herd ruminates less
                    a = d * DAY + r.uniform(6, 14) * HOUR
                    self.herd_dips.append((a, a + r.uniform(6, 14) * HOUR,
                                           r.uniform(*self.p.herd_dip)))
        ids = [f"cow-{n:03d}" for n in range(cows)]
        if self.kind == "mixed":
            events = {}
            for cow in ids:
                x = r.random()
                events[cow] = ("estrus" if x < 0.12 else "rumination" if x < 0.18
                               else "mastitis" if x < 0.24 else "")
            for n, cow in enumerate(ids):
                self._cow(cow, n, events[cow])
            return
        chosen = set(r.sample(ids, max(1, int(cows * r.uniform(0.3, 0.4)))))
        for n, cow in enumerate(ids):
            self._cow(cow, n, cow in chosen and self.kind or "")

    def _cow(self, cow: str, n: int, event: str) -> None:
        r = self.rng
        p = self.p
        days = self.days
        act0 = r.uniform(40, 100)
        rum0 = r.uniform(420, 600)
        yield0 = r.uniform(11, 20)
        ec0 = r.uniform(4.4, 5.4)
        quarters = ("lf", "rf", "lr", "rr")
        offsets = {q: r.gauss(0, 0.03) for q in quarters}
        ev_start = r.uniform(p.first_event_day, days - 4) * DAY
        ev_end = ev_start
        level = 0.0
        sick_q = r.choice(quarters)
        kind = ""
        if event == "estrus":
            ev_end = ev_start + r.uniform(*p.estrus_hours) * HOUR
            level = r.uniform(*p.estrus_level)
            self.episodes.append(Episode("estrus", cow, ev_start, ev_end + 6 * HOUR))
        elif event == "rumination":
            ev_end = ev_start + r.uniform(2, 4) * DAY
            level = r.uniform(*p.rumination_drop)
            self.episodes.append(Episode("rumination", cow, ev_start, ev_end + DAY))
        elif event == "mastitis":
            kind = r.choice(("clinical", "subclinical"))
            milkings = r.randint(4, 10) if kind == "clinical" else r.randint(6, 14)
            ev_end = ev_start + milkings * 12 * HOUR
            level = r.uniform(0.35, 0.8) if kind == "clinical" else r.uniform(0.2, 0.4)
            self.episodes.append(Episode("mastitis", cow, ev_start, ev_end + DAY, kind=kind,
                                         pre_s=12 * HOUR))
        collar = f"collar-{cow}"
        offset = r.uniform(0, COLLAR_STEP)
        sigma = r.uniform(0.12, 0.32)  # how restless she is from hour to hour
        day_act = day_rum = hour_act = 1.0
        battery = r.uniform(3.4, 3.7)
        for k in range(int(days * DAY / COLLAR_STEP)):
            s = k * COLLAR_STEP + offset
            if k % 96 == 0:
                day_act, day_rum = math.exp(r.gauss(0, 0.08)), r.gauss(1, 0.04)
            if k % 4 == 0:
                hour_act = math.exp(r.gauss(0, sigma))
                if r.random() < 0.01:
                    hour_act *= 2.0  # a one-hour disturbance of her own (vet visit)
            hod = (s / HOUR) % 24
            diurnal = (1 + 0.3 * math.sin(2 * math.pi * (hod - 8) / 24)
                       + 0.6 * math.exp(-((hod - 6.5) ** 2)) + 0.6 * math.exp(-((hod - 18.5) ** 2)))
            act = act0 / 4 * diurnal * day_act * hour_act * math.exp(r.gauss(0, p.activity_noise))
            rum = rum0 / 96 * (1 + 0.3 * math.sin(2 * math.pi * (hod - 2) / 24)) * day_rum
            for a, b, factor in self.herd_events:  # the whole herd is stirred up
                if a <= s < b:
                    act *= 1 + (factor - 1) * r.uniform(0.7, 1.3)
            if event == "estrus" and ev_start <= s <= ev_end:
                ramp = min(1.0, (s - ev_start) / (2 * HOUR), (ev_end - s) / (2 * HOUR) + 0.3)
                act *= 1 + (level - 1) * ramp
                rum *= 0.85
            if event == "rumination" and ev_start <= s:
                ramp = min(1.0, (s - ev_start) / (12 * HOUR))
                if s > ev_end:
                    ramp = max(0.0, 1 - (s - ev_end) / DAY)
                rum *= 1 - level * ramp
            for a, b, depth in self.herd_dips:  # feed delay: no cud to chew
                if a <= s < b:
                    rum *= 1 - depth * r.uniform(0.7, 1.3)
            if int(s // DAY) in self.hot_days:
                rum *= 1 - p.hot_day_rumination
            self.add(_Item(s, collar, "neck-collar", {
                "activity": float(min(10000, round(act))),
                "rumination_min": float(min(15, max(0, round(rum + r.gauss(0, 0.8))))),
                "battery_v": round(battery - s * 2e-8, 3)}, animal=cow))
        for s, meter in self._milkings(n):
            factor = r.gauss(1, 0.02)
            y = yield0 * r.gauss(1, 0.07)
            ec = {q: ec0 * (1 + offsets[q]) * factor * r.gauss(1, p.ec_noise) for q in quarters}
            if r.random() < 0.005:  # a one-off outlier on one quarter
                ec[r.choice(quarters)] *= 1 + r.uniform(0.1, 0.25)
            if event == "mastitis" and ev_start <= s <= ev_end:
                first = s - ev_start < 12 * HOUR
                ec[sick_q] *= 1 + level * (0.6 if first else 1.0)
                if kind == "clinical":
                    y *= 1 - r.uniform(0.2, 0.45)
                else:
                    y *= 1 - r.uniform(0.0, 0.08)
            values = {f"conductivity_{q}": round(v, 2) for q, v in ec.items()}
            values.update({"yield_kg": round(y, 2), "duration_s": round(r.uniform(300, 480))})
            self.add(_Item(s, meter, "milk-meter", values, animal=cow))

    def _milkings(self, n: int) -> list[tuple[float, str]]:
        """(time, meter) of each of cow ``n``'s milkings."""
        r = self.rng
        p = self.p
        out = []
        if p.milking == "robot":  # visits whenever she comes, ~p.milkings_per_day a day
            s = r.uniform(0, 8) * HOUR
            gap = DAY / p.milkings_per_day
            while s < self.days * DAY:
                if not any(a <= s < b for a, b in self._sessions) and s > 0:
                    s += 1800  # the robot waits while the tank is washed
                    continue
                out.append((s, f"robot-{n // 60}"))
                s += gap * r.uniform(0.6, 1.4)
            return out
        hours = MILKINGS_H if p.milkings_per_day == 2 else (5.0, 13.0, 21.0)
        spacing = min(2.5, 80.0 / max(1, p.cows))
        for d in range(self.days):
            for milking_h in hours:
                s = d * DAY + milking_h * HOUR + (n * spacing + r.uniform(0, 2)) * 60
                out.append((s, f"mm-{n % 4}"))
        return out

    # -- water ------------------------------------------------------------------
    def water(self) -> None:
        r = self.rng
        total = r.uniform(1e5, 5e5)
        step = self.p.water_period_s
        for i in range(int(self.days * DAY / step)):
            s = i * step
            h = (s / HOUR) % 24
            after = any(m + 1 <= h < m + 3 for m in MILKINGS_H)
            flow = (25.0 if after else 3.0 + 6.0 * (7 <= h < 20)) * r.uniform(0.6, 1.4)
            total += flow * step / 60
            self.add(_Item(s, WATER, "water-flow", {"flow_lpm": round(flow, 2),
                                                   "total_l": round(total, 1)}))

    # -- sensor faults ----------------------------------------------------------
    def faults(self) -> None:
        r = self.rng
        stuck: tuple[str, ...] = (TANK, CLIMATE) if self.kind == "stuck" else ()
        if self.kind == "mixed":
            stuck = (r.choice((TANK, CLIMATE)),)
        if stuck:
            for sensor in stuck:
                items = self.streams[sensor]
                start = r.uniform(3, self.days - 2) * DAY
                end = start + r.uniform(4, 10) * HOUR
                frozen = next(i.values for i in items if i.s >= start)
                for item in items:
                    if start <= item.s < end:
                        item.values = dict(frozen)
                self.episodes.append(Episode("sensor.stuck", sensor, start, end + HOUR))
                # While frozen, the tank's own alerts are not the truth either way.
                if sensor == TANK:
                    self.episodes.append(Episode("cooling", TANK, start, end + 3 * HOUR,
                                                 ignore=True))
        if self.kind == "mixed":
            self._drift()
        if self.kind in ("dropout", "mixed"):
            collars = sorted(k for k in self.streams if k.startswith("collar-"))
            # (sensor, dropout timeout, its reporting period): a short silence
            # (under 2.5 periods and under the timeout) is a lost message or two,
            # not a dropout; a long one is at least 2.5 timeouts.
            targets = [(TANK, max(900.0, 6 * self.p.tank_period_s), self.p.tank_period_s),
                       (CLIMATE, max(900.0, 6 * self.p.climate_period_s),
                        self.p.climate_period_s),
                       (r.choice(collars), 3 * HOUR, COLLAR_STEP)]
            if self.kind == "mixed":
                targets = [r.choice(targets[:2]), targets[2]]
            for sensor, timeout, period in targets:
                for long in (True, False, True, False):
                    start = r.uniform(2, self.days - 1) * DAY
                    span = (r.uniform(2.5, 8) * timeout if long
                            else min(r.uniform(0.3, 0.7) * timeout,
                                     r.uniform(1.5, 2.5) * period))
                    self.streams[sensor] = [i for i in self.streams[sensor]
                                            if not start <= i.s < start + span]
                    if long:
                        self.episodes.append(Episode("sensor.dropout", sensor, start,
                                                     start + span + 600))
            # Gaps in the data are not cooling or heat problems either way.
            for ep in list(self.episodes):
                if ep.rule == "sensor.dropout" and ep.subject == TANK:
                    self.episodes.append(Episode("cooling", TANK, ep.start, ep.end + 3 * HOUR,
                                                 ignore=True))

    def _drift(self) -> None:
        """One climate node's temperature drifts away (0.1-0.3 °C/h, up or down,
        levelling off 2.5-6 °C out) and stays there: only a barn with three
        nodes or more can tell which one moved, so only such a farm gets it."""
        nodes = sorted(k for k in self.streams if k.startswith("climate-") and k != CLIMATE)
        if len(nodes) < 2:
            return
        r = self.extra
        node = r.choice(nodes)
        start = r.uniform(4, self.days - 3) * DAY
        rate, cap, sign = r.uniform(0.1, 0.3) / HOUR, r.uniform(2.5, 6), r.choice((-1, 1))
        for item in self.streams[node]:
            if item.s >= start:
                item.values = dict(item.values)
                shift = sign * min(cap, rate * (item.s - start))
                item.values["temperature_c"] = round(item.values["temperature_c"] + shift, 2)
        end = self.days * DAY
        self.episodes.append(Episode("sensor.drift", node, start, end))
        # What a drifted node says of heat is no evidence either way.
        self.episodes.append(Episode("heat_stress", node, start, end, ignore=True))
        self.episodes = [replace(ep, ignore=True) if ep.rule == "heat_stress"
                         and ep.subject == node and ep.end > start else ep
                         for ep in self.episodes]

    def readings(self) -> list[Reading]:
        items = sorted((i for stream in self.streams.values() for i in stream),
                       key=lambda i: (i.s, i.sensor))
        out = []
        for i in items:
            mono_ns = int((MONO0 + i.s) * 1e9)
            out.append(Reading(
                record_id=stable_id(i.sensor, str(mono_ns)), sensor_id=i.sensor,
                firmware=i.firmware, topic=f"barn/{i.firmware}/{i.sensor}",
                values=dict(i.values), raw=dict(i.values), units={},
                stamp=Stamp(WALL0 + i.s, mono_ns, BOOT, True), animal_id=i.animal,
                source_ts=WALL0 + i.s,
            ))
        return out


def generate(kind: str, seed: int, days: int = 21, cows: int | None = None,
             params: FarmParams | None = None) -> Scenario:
    """One labelled barn scenario; the same arguments give the same data.

    ``params`` is the farm (``farms.sample(split, seed)``); without it the
    project's original barn with ``cows`` cows (30 when not given).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scenario kind {kind!r}; choose from {', '.join(KINDS)}")
    if params is None:
        params = FarmParams(cows=30 if cows is None else cows)
    elif cows is not None:
        params = replace(params, cows=cows)
    barn = _Barn(random.Random(f"{kind}:{seed}"), days, kind, params,
                 extra=random.Random(f"faults:{kind}:{seed}"))
    barn.plan_weather()
    barn.climate()
    barn.tank(params.cows)
    barn.herd(params.cows)
    barn.water()
    barn.faults()
    if params.loss:  # messages lost on the way, at random, from every sensor
        lose = random.Random(f"loss:{kind}:{seed}")
        for sensor, items in barn.streams.items():
            barn.streams[sensor] = [i for i in items if lose.random() >= params.loss]
    # A glitch whose reading never left the sensor (a radio gap) or was lost on
    # the way is no evidence of anything: its label counts neither way.
    sent = {(sensor, i.s) for sensor, items in barn.streams.items() for i in items}
    barn.episodes = [replace(ep, ignore=True)
                     if ep.rule == "sensor.spike" and (ep.subject, ep.start) not in sent else ep
                     for ep in barn.episodes]
    return Scenario(f"{kind}-{seed}", seed, barn.readings(), barn.episodes, days * DAY, MONO0,
                    notes={"farm": repr(params)})
