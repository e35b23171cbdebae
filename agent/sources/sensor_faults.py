"""A small labelled barn for the sensor-health checks: replay lines with one
injected sensor fault at a known time, or none.

``FaultBarn(...).messages()`` gives ``(arrival ts, topic, payload)`` in arrival
order, payloads in the shipped firmware formats (climate and tank JSON with the
device's ``ts``, collars as binary frames and water meters as JSON without
one), so they go through ``Ingestor.parse`` and the rules exactly as recorded
traffic does (``dairy-edge replay``). ``FaultBarn.episodes`` labels the fault:
``(rule, sensor id, start, end)``.

The barn is a family, not one farm: reporting period and jitter, random message
loss, irregular climate radios (gaps of 16-25 min), quantised or fine values,
sensor noise, and an uplink outage whose backlog arrives in a burst are all
parameters, so the checks can be developed on some and judged on others.
Faults: ``spike`` (one in-range extreme value), ``range_spike`` (one value the
firmware refuses: quarantined), ``range`` (refused values for two hours),
``stuck`` (the last value repeated exactly), ``dropout`` (silent), ``drift``
(a climate node moving away from its neighbours at ``drift_per_h``).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from agent.ingest.decode import encode_binary
from agent.ingest.firmware import FirmwareSpec, load_firmware

HOUR, DAY = 3600.0, 86400.0
T0 = 1_748_736_000.0  # 2025-06-01T00:00:00Z
FAULTS = ("spike", "range_spike", "range", "stuck", "dropout", "drift")
RULE_OF = {"spike": "sensor.spike", "range_spike": "sensor.spike", "range": "sensor.range",
           "stuck": "sensor.stuck", "dropout": "sensor.dropout", "drift": "sensor.drift"}
FIRMWARE = Path(__file__).resolve().parents[2] / "firmware_configs"


@dataclass
class FaultBarn:
    seed: int = 1
    days: float = 4.0
    fault: str | None = None
    fault_sensor: str | None = None  # default: a climate node (a tank for stuck)
    fault_at: float | None = None  # seconds from the start; default 2.5 days in
    climate_nodes: int = 4
    climate_period_s: float = 300.0
    climate_gaps: bool = False  # irregular radio: some gaps of 16-25 min
    tank_period_s: float = 60.0
    collars: int = 4
    collar_period_s: float = 900.0
    water_period_s: float = 60.0
    loss: float = 0.01  # share of messages lost at random
    resolution: float = 0.1  # values rounded to this (0: two decimals)
    noise_c: float = 0.15  # climate temperature noise (°C)
    drift_per_h: float = 0.15  # °C per hour
    outage: tuple[float, float] | None = None  # (start, length) s: backlog in a burst
    episodes: list[tuple[str, str, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}")
        self.rng = random.Random(self.seed)
        self._collar: FirmwareSpec = load_firmware(FIRMWARE / "neck_collar.yaml")
        at = self.fault_at if self.fault_at is not None else 2.5 * DAY
        self.fault_at = at + self.rng.uniform(0, HOUR)
        if self.fault_sensor is None:
            self.fault_sensor = "tank-1" if self.fault == "stuck" else "c2"

    # -- the barn -------------------------------------------------------------
    def messages(self) -> list[tuple[float, str, str | bytes]]:
        r = self.rng
        out: list[tuple[float, str, str | bytes]] = []
        weather = [r.uniform(-3, 3) for _ in range(int(self.days) + 2)]
        for n in range(self.climate_nodes):
            out += self._climate(f"c{n + 1}", weather, r.uniform(-1.0, 1.0), r.uniform(-0.6, 0.6))
        out += self._tank("tank-1")
        for n in range(self.collars):
            out += self._collars(f"k{n + 1}", 1000 + n)
        out += self._water("w1")
        if self.fault is not None:
            self._label()
        out.sort(key=lambda m: m[0])
        if self.outage is not None:
            start, length = T0 + self.outage[0], self.outage[1]
            held = [m for m in out if start <= m[0] < start + length]
            rest = [m for m in out if not start <= m[0] < start + length]
            burst = [(start + length + 0.01 * i, topic, p) for i, (_, topic, p) in enumerate(held)]
            out = sorted(rest + burst, key=lambda m: m[0])
        return out

    def lines(self) -> list[str]:
        """The messages as ``dairy-edge replay`` input lines."""
        from datetime import UTC, datetime

        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z")

        out = []
        for ts, topic, payload in self.messages():
            line: dict[str, str] = {"ts": iso(ts), "topic": topic}
            if isinstance(payload, bytes):
                import base64

                line["payload_b64"] = base64.b64encode(payload).decode()
            else:
                line["payload"] = payload
            out.append(json.dumps(line, separators=(",", ":")))
        return out

    # -- sensors --------------------------------------------------------------
    def _times(self, period: float, gappy: bool = False) -> list[float]:
        r = self.rng
        out: list[float] = []
        end = self.days * DAY
        s = r.uniform(0, period)
        while s < end:
            out.append(s)
            step = period * r.uniform(0.9, 1.1)
            if gappy and r.random() < 0.02:
                step = r.uniform(16, 25) * 60
            s += step
        return [x for x in out if r.random() >= self.loss]

    def _round(self, v: float) -> float:
        q = self.resolution
        return round(round(v / q) * q, 6) if q else round(v, 2)

    def _faulty(self, sid: str, s: float) -> str | None:
        if self.fault is None or sid != self.fault_sensor:
            return None
        assert self.fault_at is not None
        return self.fault if s >= self.fault_at else None

    def _climate(self, sid: str, weather: list[float], offset: float,
                 local: float) -> list[tuple[float, str, str | bytes]]:
        r = self.rng
        out: list[tuple[float, str, str | bytes]] = []
        frozen: tuple[float, float] | None = None
        spiked = 0
        bad_until = None
        for i, s in enumerate(self._times(self.climate_period_s, self.climate_gaps)):
            h = (s / HOUR) % 24
            day = int(s // DAY)
            w = weather[day] + (weather[day + 1] - weather[day]) * (s % DAY) / DAY
            diurnal = math.sin(2 * math.pi * (h - 9) / 24)
            temp = 16 + w + 6 * diurnal + offset + local * diurnal + r.gauss(0, self.noise_c)
            rh = min(100.0, max(20.0, 72 - 2.2 * (temp - 16) + r.gauss(0, 1.0)))
            fault = self._faulty(sid, s)
            assert self.fault_at is not None
            if fault == "drift":
                temp += self.drift_per_h * (s - self.fault_at) / HOUR
            elif fault == "stuck":
                if frozen is None:
                    frozen = (temp, rh)
                temp, rh = frozen
            elif fault == "dropout" and s < self.fault_at + 3 * HOUR:
                continue
            elif fault == "spike" and spiked == 0:
                temp, spiked = (-40.0 if r.random() < 0.5 else 55.0), 1
            elif fault == "range_spike" and spiked == 0:
                temp, spiked = 85.0, 1
            elif fault == "range":
                if bad_until is None:
                    bad_until = s + 2 * HOUR
                if s < bad_until:
                    temp = -127.0  # a disconnected probe
            payload = {"boot": 1, "seq": i, "ts": int(s + T0), "t": self._round(temp),
                       "rh": self._round(rh), "bat": 3.0}
            out.append((T0 + s + r.uniform(0.2, 2.0), f"barn/climate/{sid}",
                        json.dumps(payload, separators=(",", ":"))))
        return out

    def _tank(self, sid: str) -> list[tuple[float, str, str | bytes]]:
        """Milkings at 05:00 and 16:00 (90 min), collection and wash every second
        morning at 07:30, a thermostat holding 3.5-4.1 °C in between."""
        r = self.rng
        out: list[tuple[float, str, str | bytes]] = []
        temp, level, compressor = 15.0, 0.0, False
        frozen: float | None = None
        spiked = 0
        last = 0.0
        for i, s in enumerate(self._times(self.tank_period_s)):
            dt = s - last
            last = s
            h = (s / HOUR) % 24
            day = int(s // DAY)
            milking = 5 <= h < 6.5 or 16 <= h < 17.5
            collection = day % 2 == 1 and 7.5 <= h < 8.0
            wash = day % 2 == 1 and 8.0 <= h < 8.4
            if collection:
                level = max(0.0, level - 400 * dt / 60)
            if milking:  # milk arrives pre-cooled to 15 °C by the plate cooler
                inflow = 10 * dt / 60
                temp = (temp * level + 15.0 * inflow) / (level + inflow)
                level += inflow
            if wash:
                temp = 55.0 + r.gauss(0, 1)
            elif level <= 50:  # empty: the probe reads the air in the tank
                air = 16 + 6 * math.sin(2 * math.pi * (h - 9) / 24)
                temp += (air - temp) * 0.05 * dt / 60
            else:
                compressor = temp > 4.1 or (compressor and temp > 3.5) or milking
                temp += (-0.08 if compressor else 0.01) * dt / 60
            value = temp + r.gauss(0, 0.03)
            fault = self._faulty(sid, s)
            if fault == "stuck":
                frozen = value if frozen is None else frozen
                value = frozen
            elif fault == "spike" and spiked == 0:
                value, spiked = value + 25.0, 1
            elif fault == "dropout":
                assert self.fault_at is not None
                if s < self.fault_at + 2 * HOUR:
                    continue
            payload = {"msg_id": f"a81f-{i:06d}", "ts": int(s + T0), "temp": self._round(value),
                       "agitator": "on" if compressor or milking else "off",
                       "level_l": round(level), "wash": wash}
            out.append((T0 + s + r.uniform(0.2, 2.0), f"barn/tank/{sid}",
                        json.dumps(payload, separators=(",", ":"))))
        return out

    def _collars(self, sid: str, cow: int) -> list[tuple[float, str, str | bytes]]:
        r = self.rng
        assert self._collar.binary is not None
        base = r.uniform(60, 120)
        out: list[tuple[float, str, str | bytes]] = []
        frozen: tuple[int, int] | None = None
        for i, s in enumerate(self._times(self.collar_period_s)):
            fault = self._faulty(sid, s)
            if fault == "dropout":
                assert self.fault_at is not None
                if s < self.fault_at + 3 * HOUR:
                    continue
            h = (s / HOUR) % 24
            act = base * (1.6 if 5 <= h < 19 else 0.6) * r.lognormvariate(0, 0.3)
            values = (int(act), r.randint(4, 12))
            if fault == "stuck":  # the same window's counts sent again and again
                frozen = values if frozen is None else frozen
                values = frozen
            frame = encode_binary(self._collar.binary, {
                "magic": b"CL", "version": 1, "flags": 0, "boot": 1, "seq": i, "cow": cow,
                "activity": values[0], "rumination": values[1], "battery": 3600})
            out.append((T0 + s + r.uniform(0.2, 2.0), f"barn/collar/{sid}", frame))
        return out

    def _water(self, sid: str) -> list[tuple[float, str, str | bytes]]:
        r = self.rng
        total = 1e5
        out: list[tuple[float, str, str | bytes]] = []
        for i, s in enumerate(self._times(self.water_period_s)):
            h = (s / HOUR) % 24
            flow = (4 + 8 * (6 <= h < 20)) * r.uniform(0.3, 1.7)
            total += flow * self.water_period_s / 60
            payload = {"boot": 1, "seq": i, "flow": round(flow, 2), "total": round(total, 1)}
            out.append((T0 + s + r.uniform(0.2, 2.0), f"barn/water/{sid}",
                        json.dumps(payload, separators=(",", ":"))))
        return out

    def _label(self) -> None:
        assert self.fault is not None and self.fault_sensor is not None
        assert self.fault_at is not None
        start = T0 + self.fault_at
        length = {"spike": 0.0, "range_spike": 0.0, "range": 2 * HOUR, "dropout": 3 * HOUR,
                  "stuck": self.days * DAY, "drift": self.days * DAY}[self.fault]
        if self.fault == "dropout" and self.fault_sensor.startswith("tank"):
            length = 2 * HOUR
        self.episodes.append((RULE_OF[self.fault], self.fault_sensor, start,
                              min(start + length, T0 + self.days * DAY)))
