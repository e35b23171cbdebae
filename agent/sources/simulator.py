"""A deterministic barn: every firmware's messages, with realistic values.

Barn air follows the day. The bulk tank is a direct-expansion cooler sized
for the herd as an EN 13732 tank for 4 milkings: warm milk flows in through
each milking while the compressor runs, a thermostat holds 3.5-4 degC in
storage, the tanker empties it every second morning and it is washed right
after, so the next milking is a first milking into an empty tank
(``compressor_fails_at`` injects a failed compressor into tank-01); each cow has her own
yield and per-quarter conductivity (a few with a subclinical quarter); collars
count activity and rumination per 15 minutes (more activity around milking and
in heat, more rumination at night); water use peaks after milking.

``bad_ratio`` mixes in malformed messages, cycling through every reason code,
each tagged with the reason the ingestor must give. Each message carries the
``key`` the agent should store it under: the Reading's record id when valid,
the quarantine entry's id when not. That makes the publisher's PUBACK list an
oracle for exactly-once tests.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.ingest.decode import encode_binary
from agent.ingest.firmware import FirmwareSpec, compose_msg_id, load_firmware_dir
from agent.ingest.pipeline import REASONS, record_id_for
from agent.records.types import stable_id

DEFAULT_START = 1_748_753_880.0  # 2025-06-01 04:58 UTC: milking starts two minutes in
MILKINGS_H = (5.0, 17.0)  # session start, UTC hours
SESSION_S = 90 * 60
PICKUP_H = 10.0  # tanker every second day; the tank is washed right after
TANKER_LPS = 500.0 / 60  # the tanker's pump
MILK_KG_PER_L = 1.03
CUT_OUT_C, CUT_IN_C = 3.5, 4.0  # the tank thermostat
EVAP_C = -20.0  # effective evaporator temperature of the cooling model (see _tank)
# Circulation cleaning: (seconds, water degC) for pre-rinse, hot alkaline wash,
# rinse, acid wash, final cold rinse.
WASH_PROGRAM = ((300.0, 38.0), (720.0, 72.0), (240.0, 35.0), (480.0, 45.0), (240.0, 15.0))
_BAD_IDS = ("..", "<script>", "x" * 65, "dev.1", "a b", "id%2F..")


@dataclass(frozen=True, slots=True)
class SimMessage:
    topic: str
    payload: bytes
    valid: bool
    expected_reason: str | None
    key: str
    firmware: str = ""
    sim_ts: float = 0.0


@dataclass(slots=True)
class _Device:
    spec: FirmwareSpec
    sensor_id: str
    index: int
    boot: int
    seq: int
    state: dict[str, Any] = field(default_factory=dict)


def _hour(ts: float) -> float:
    return (ts % 86400.0) / 3600.0


def _ambient(ts: float) -> float:
    """Milk-room air: the barn's daily swing, a little warmer."""
    return 16.0 + 6.0 * math.sin(2 * math.pi * (_hour(ts) - 9.0) / 24.0)


def _wash_water(elapsed: float) -> float | None:
    """Water temperature ``elapsed`` seconds into the wash; None once it is over."""
    for length, water in WASH_PROGRAM:
        if elapsed < length:
            return water
        elapsed -= length
    return None


def _in_milking(ts: float) -> bool:
    h = _hour(ts)
    return any(start <= h < start + SESSION_S / 3600 for start in MILKINGS_H)


class BarnSimulator:
    """Endless, reproducible stream of SimMessage for every firmware in ``specs``."""

    def __init__(
        self,
        specs: Sequence[FirmwareSpec],
        seed: int = 0,
        herd_size: int = 60,
        sensors_per_kind: int = 2,
        bad_ratio: float = 0.0,
        *,
        topic_prefix: str = "barn",
        start_wall: float = DEFAULT_START,
        max_payload_bytes: int = 64 * 1024,
        max_json_depth: int = 8,
        compressor_fails_at: float | None = None,
        compressor_repaired_at: float | None = None,
    ) -> None:
        if not 0.0 <= bad_ratio <= 1.0:
            raise ValueError("bad_ratio must be within [0, 1]")
        if herd_size < 1 or sensors_per_kind < 1:
            raise ValueError("herd_size and sensors_per_kind must be >= 1")
        self.specs = {s.kind: s for s in specs}
        self._rng = random.Random(seed)
        self._prefix = topic_prefix
        self._bad_ratio = bad_ratio
        self._max_bytes = max_payload_bytes
        self._max_depth = max_json_depth
        self._bad_turn = 0
        # A fault to detect: from this simulated wall time tank-01's compressor
        # runs (the controller calls, the agitator turns) but cools nothing.
        self._fail_at = compressor_fails_at
        self._repair_at = compressor_repaired_at
        self._now = start_wall
        self._cows = self._make_herd(herd_size)
        self._meters = sensors_per_kind
        self._tanks = sensors_per_kind
        self._devices: list[_Device] = []
        self._heap: list[tuple[float, int]] = []
        for kind, spec in sorted(self.specs.items()):
            count = herd_size if kind == "collar" else sensors_per_kind
            for i in range(count):
                dev = _Device(
                    spec=spec,
                    sensor_id=f"{kind}-{i + 1:04d}" if kind == "collar" else f"{kind}-{i + 1:02d}",
                    index=i,
                    boot=self._rng.randint(1, 40),
                    seq=self._rng.randint(0, 5000),
                )
                self._devices.append(dev)
                first = start_wall + self._rng.uniform(0, min(spec.sampling_period_s, 900.0))
                if kind == "milk":
                    first = self._next_milking_slot(dev, start_wall)
                heapq.heappush(self._heap, (first, len(self._devices) - 1))

    @classmethod
    def from_dir(cls, firmware_dir: Path, **kwargs: Any) -> BarnSimulator:
        return cls(load_firmware_dir(firmware_dir), **kwargs)

    def __iter__(self) -> Iterator[SimMessage]:
        while True:
            yield self.next()

    def take(self, count: int) -> list[SimMessage]:
        return [self.next() for _ in range(count)]

    def next(self) -> SimMessage:
        """The next message: a malformed one with probability ``bad_ratio``."""
        if self._bad_ratio and self._rng.random() < self._bad_ratio:
            return self._bad_message()
        due, index = heapq.heappop(self._heap)
        dev = self._devices[index]
        self._now = due
        wire = self._wire_values(dev, due)
        nxt = due + dev.spec.sampling_period_s
        if dev.spec.kind == "milk":
            nxt = self._next_milking_slot(dev, due)
        heapq.heappush(self._heap, (nxt, index))
        return self._valid(dev, wire)

    # -- the herd and the barn ------------------------------------------------

    def _make_herd(self, size: int) -> list[dict[str, Any]]:
        rng = self._rng
        herd = []
        sick = set(rng.sample(range(size), max(1, size // 20)))  # ~5 % subclinical
        for i in range(size):
            herd.append(
                {
                    "number": 1001 + i,
                    "yield": min(max(rng.gauss(14.0, 3.0), 5.0), 28.0),
                    "ec": [rng.uniform(4.5, 5.4) for _ in range(4)],
                    "sick_quarter": rng.randrange(4) if i in sick else None,
                    "activity": rng.uniform(0.8, 1.2),
                    "heat_day": rng.randrange(21),
                }
            )
        return herd

    def _next_milking_slot(self, dev: _Device, after: float) -> float:
        """When the next cow at this meter comes off, after ``after``."""
        meters = self._meters
        cows = [c for i, c in enumerate(self._cows) if i % meters == dev.index] or self._cows[:1]
        slot = SESSION_S / (len(cows) + 1)
        day = math.floor(after / 86400.0) * 86400.0
        for d in (day, day + 86400.0, day + 2 * 86400.0):
            for start_h in MILKINGS_H:
                start = d + start_h * 3600
                for j, cow in enumerate(cows):
                    t = start + (j + 1) * slot
                    if t > after:
                        dev.state["cow"] = cow
                        return t
        raise AssertionError("no milking slot within two days")

    def _wire_values(self, dev: _Device, ts: float) -> dict[str, Any]:
        kind = dev.spec.kind
        rng = self._rng
        if rng.random() < 1e-4:  # a node reboots now and then: new boot, seq from 0
            dev.boot += 1
            if any(f.name == "boot" for f in dev.spec.msg_id_fields):
                dev.seq = 0  # only nodes with a boot counter lose their sequence
        dev.seq += 1
        ids = {"boot": dev.boot, "seq": dev.seq}
        h = _hour(ts)
        if kind == "climate":
            temp = 14.0 + 6.0 * math.sin(2 * math.pi * (h - 9.0) / 24.0) + dev.index * 0.3
            temp += rng.gauss(0, 0.2)
            rh = min(max(75.0 - 2.0 * (temp - 14.0) + rng.gauss(0, 1.5), 20.0), 100.0)
            return {
                **ids,
                "ts": int(ts),
                "t": round(temp, 2),
                "rh": round(rh, 1),
                "bat": round(3.1 - dev.seq * 1e-6, 3),
            }
        if kind == "tank":
            return self._tank(dev, ts)
        if kind == "milk":
            cow = dev.state["cow"]
            kg = max(cow["yield"] * rng.gauss(1.0, 0.08), 1.0)
            ec = [v + rng.gauss(0, 0.15) for v in cow["ec"]]
            if cow["sick_quarter"] is not None:
                ec[cow["sick_quarter"]] += 2.0
            duration = kg / 2.2 * 60 + rng.uniform(30, 90)
            return {
                **ids,
                "ts": int(ts),
                "cow": str(cow["number"]),
                "yield": round(kg * 100),
                "ec_lf": round(ec[0] * 100),
                "ec_rf": round(ec[1] * 100),
                "ec_lr": round(ec[2] * 100),
                "ec_rr": round(ec[3] * 100),
                "duration": round(duration),
            }
        if kind == "collar":
            cow = self._cows[dev.index % len(self._cows)]
            base = 150 + 80 * math.sin(2 * math.pi * (h - 8.0) / 24.0)
            if _in_milking(ts):
                base += 200
            if int(ts // 86400) % 21 == cow["heat_day"]:
                base *= 2.5
            night = h < 6 or h >= 21
            p_rum = 0.45 if night else 0.3
            rumination = sum(1 for _ in range(15) if rng.random() < p_rum)
            return {
                "flags": 0,
                "boot": dev.boot % 65536,
                "seq": dev.seq,
                "cow": cow["number"],
                "activity": max(0, round(base * cow["activity"] * rng.gauss(1.0, 0.15))),
                "rumination": rumination,
                "battery": max(3000, 3600 - dev.seq // 100),
            }
        if kind == "water":
            after_milking = any(s + 1 <= h < s + 3 for s in MILKINGS_H)
            flow = (25.0 if after_milking else 3.0 + 6.0 * (7 <= h < 20)) * rng.uniform(0.6, 1.4)
            total = dev.state.get("total", 100_000.0 * (dev.index + 1))
            total += flow * dev.spec.sampling_period_s / 60.0
            dev.state["total"] = total
            return {**ids, "flow": round(flow, 2), "total": round(total, 1)}
        if kind == "rfid":
            # An EID reader at a station: a cow of the herd walks past its antenna.
            cow = self._cows[(dev.seq * 7 + dev.index) % len(self._cows)]
            return {
                **ids,
                "ts": int(ts),
                "eid": f"982000{cow['number']:09d}",
                "ant": 1 + dev.seq % 2,
                "rssi": -40 - rng.randrange(40),
            }
        raise ValueError(f"the simulator knows no firmware kind {kind!r}")

    def _tank_setup(self, dev: _Device, ts: float) -> dict[str, Any]:
        """A direct-expansion cooler sized for this herd (EN 13732, 4 milkings)."""
        rng = self._rng
        per_milking = sum(c["yield"] for c in self._cows) / MILK_KG_PER_L / self._tanks
        nominal = math.ceil(4 * per_milking * 1.2 / 250.0) * 250.0
        first = nominal / 4  # EN 13732 test volume of a 4-milking tank: 25 %
        # The time constant at the test volume: the first milking cools from
        # 35 to 4 degC in tau * ln(55/24) = 0.83 tau, 1.6-2.0 h (class I: <= 2.5 h).
        tau = rng.uniform(1.9, 2.4) * 3600
        st = {
            "per_milking": per_milking,
            "first": first,
            "ua": first / tau,  # litres cooled by 1 K per K of driving difference, per s
            "leak": nominal * 0.003 / 3600,  # insulation: ~0.05-0.2 degC/h in storage
            "cover": max(20.0, 0.02 * nominal),  # milk covers the evaporator plate
            "t_in": rng.uniform(33.0, 35.0),  # milk arriving from the milking line
            "compressor": False,
            "mode": "store",
            "wash_t0": 0.0,
        }
        volume = self._milkings_since_pickup(ts) * per_milking
        st["volume"] = volume
        st["temp"] = rng.uniform(3.5, 3.9) if volume > 0 else _ambient(ts)
        day = int(ts // 86400)
        st["picked"] = day if _hour(ts) >= PICKUP_H else day - 1
        return st

    @staticmethod
    def _milkings_since_pickup(ts: float) -> float:
        """How many milkings (fractions for one in progress) went in since the tanker."""
        day = math.floor(ts / 86400.0)
        pickups = [d * 86400.0 + PICKUP_H * 3600 for d in range(day - 3, day + 1) if d % 2 == 0]
        last = max(p for p in pickups if p <= ts)
        count = 0.0
        for d in range(day - 3, day + 1):
            for start_h in MILKINGS_H:
                start = d * 86400.0 + start_h * 3600
                if start >= last:
                    count += min(max((ts - start) / SESSION_S, 0.0), 1.0)
        return count

    def _compressor_ok(self, dev: _Device, ts: float) -> bool:
        if dev.index != 0 or self._fail_at is None or ts < self._fail_at:
            return True
        return self._repair_at is not None and ts >= self._repair_at

    def _tank(self, dev: _Device, ts: float) -> dict[str, Any]:
        """One step of a mixed tank: milk in, DX cooling, heat leak, pickup, wash.

        The evaporator is colder than the milk by a margin that grows with the
        milk temperature, modelled as Newton cooling towards an effective
        -20 degC (capacity at 35 degC about twice that at 4 degC), scaled by the
        wetted share of the evaporator. The compressor runs all through a
        milking once milk covers the evaporator, then on a thermostat (on above
        4.0, off below 3.5 degC). The tanker comes every second morning; the
        tank is washed as soon as it is empty.
        """
        if "mode" not in dev.state:
            dev.state.update(self._tank_setup(dev, ts))
        st = dev.state
        dt = dev.spec.sampling_period_s
        temp, volume = st["temp"], st["volume"]
        amb = _ambient(ts)
        day = int(ts // 86400)
        if (st["mode"] == "store" and day % 2 == 0 and st["picked"] != day
                and _hour(ts) >= PICKUP_H):
            st["mode"], st["picked"] = "pickup", day
        agitator = False
        if st["mode"] == "pickup":  # stirred for the sample, then pumped out
            st["compressor"], agitator = False, True
            volume = max(volume - TANKER_LPS * dt, 0.0)
            if volume <= 0.0:
                st["mode"], st["wash_t0"] = "wash", ts
        elif st["mode"] == "wash":
            water = _wash_water(ts - st["wash_t0"])
            if water is None:
                st["mode"] = "store"
            else:  # the probe follows the circulating water within a minute or so
                temp += (water - temp) * (1 - math.exp(-dt / 60.0))
        if st["mode"] == "store":
            milking = _in_milking(ts)
            if milking:
                inflow = st["per_milking"] / SESSION_S * dt
                temp = (volume * temp + inflow * st["t_in"]) / (volume + inflow)
                volume += inflow
            covered = volume >= st["cover"]
            if not covered:
                st["compressor"] = False
            elif milking or temp > CUT_IN_C:
                st["compressor"] = True
            elif temp < CUT_OUT_C:
                st["compressor"] = False
            if st["compressor"] and self._compressor_ok(dev, ts):
                wet = min(1.0, volume / st["first"])
                temp = EVAP_C + (temp - EVAP_C) * math.exp(-st["ua"] * wet * dt / volume)
            if volume > 0.0:
                temp += (amb - temp) * (1 - math.exp(-st["leak"] * dt / max(volume, st["cover"])))
            else:  # an empty tank's probe reads the air in the tank
                temp += (amb - temp) * (1 - math.exp(-dt / 1800.0))
            # The agitator runs with the compressor and stirs 2 min each half hour.
            agitator = covered and (st["compressor"] or milking or ts % 1800.0 < 120.0)
        st["temp"], st["volume"] = temp, volume
        return {
            "msg_id": f"{0xA81F + dev.index:04x}-{dev.seq:06d}",
            "ts": int(ts),
            "temp": round(temp + self._rng.gauss(0, 0.05), 2),
            "agitator": "on" if agitator else "off",
            "level_l": round(volume),
            "wash": st["mode"] == "wash",
        }

    # -- encoding -------------------------------------------------------------

    def _topic(self, dev: _Device, sensor_id: str | None = None) -> str:
        pattern = dev.spec.topic_for(self._prefix)
        return pattern.replace("{sensor_id}", sensor_id or dev.sensor_id)

    def _encode(self, spec: FirmwareSpec, wire: dict[str, Any]) -> bytes:
        if spec.format == "json":
            return json.dumps(wire, separators=(",", ":")).encode()
        if spec.format == "csv":
            assert spec.csv is not None
            cols = [spec.csv.tag] + [str(wire.get(c, "")) for c in spec.csv.columns]
            return (spec.csv.delimiter.join(cols) + "\n").encode()
        assert spec.binary is not None
        return encode_binary(spec.binary, wire)

    def _valid(self, dev: _Device, wire: dict[str, Any]) -> SimMessage:
        spec = dev.spec
        parts = [str(wire[f.wire_key]) for f in spec.msg_id_fields]
        payload = self._encode(spec, wire)
        topic = self._topic(dev)
        key = (
            record_id_for(spec.kind, dev.sensor_id, compose_msg_id(parts))
            if parts
            else stable_id(topic, payload)
        )
        return SimMessage(topic, payload, True, None, key, spec.firmware, self._now)

    # -- malformed messages ---------------------------------------------------

    def _bad_message(self) -> SimMessage:
        reason = REASONS[self._bad_turn % len(REASONS)]
        self._bad_turn += 1
        topic, payload, firmware = getattr(self, f"_bad_{reason}")()
        return SimMessage(
            topic, payload, False, reason, stable_id(topic, payload), firmware, self._now
        )

    def _pick(self, *formats: str) -> tuple[_Device, dict[str, Any]]:
        """A device of one of ``formats`` and a fresh set of its wire values."""
        devices = [d for d in self._devices if d.spec.format in formats]
        if not devices:
            devices = self._devices
        dev = self._rng.choice(devices)
        return dev, self._wire_values(dev, self._now)

    def _value_key(self, dev: _Device, *types: str) -> str:
        keys = [f.wire_key for f in dev.spec.fields if f.role == "value" and f.type in types]
        return self._rng.choice(keys)

    def _bad_too_large(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json")
        wire["note"] = "x" * (self._max_bytes + 1)
        return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_unknown_topic(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json")
        topic = f"{self._prefix}/unknown-kind/{dev.sensor_id}"
        return topic, self._encode(dev.spec, wire), ""

    def _bad_bad_encoding(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json", "csv")
        good = self._encode(dev.spec, wire)
        if dev.spec.format == "json":
            payload = good[:-1] + b',"note":"caf\xe9"}'  # Latin-1, not UTF-8
        else:
            payload = good.rstrip(b"\n") + b"\xff\n"
        return self._topic(dev), payload, dev.spec.firmware

    def _bad_bad_json(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json")
        return self._topic(dev), self._encode(dev.spec, wire)[:-1], dev.spec.firmware

    def _bad_too_deep(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json")
        nested: Any = 1
        for _ in range(self._max_depth):
            nested = [nested]
        wire["extra"] = nested
        return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_duplicate_key(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json")
        key = self._value_key(dev, "number")
        text = json.dumps(wire, separators=(",", ":"))
        payload = (text[:-1] + f",{json.dumps(key)}:{json.dumps(wire[key])}}}").encode()
        return self._topic(dev), payload, dev.spec.firmware

    def _bad_non_finite(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json", "csv")
        key = self._value_key(dev, "number", "integer")
        if dev.spec.format == "json":
            wire[key] = self._rng.choice([math.nan, math.inf, -math.inf])
        else:
            wire[key] = self._rng.choice(["nan", "inf", "-Infinity"])
        return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_bad_type(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json", "csv")
        key = self._value_key(dev, "number", "integer")
        wire[key] = "twelve" if dev.spec.format == "csv" else str(wire[key])
        return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_missing_field(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json", "csv")
        required = [f.wire_key for f in dev.spec.fields if f.required]
        del wire[self._rng.choice(required)]
        return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_bad_id(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json", "csv", "binary")
        bad = self._rng.choice(_BAD_IDS)
        if dev.spec.kind == "milk" and self._rng.random() < 0.5:
            wire["cow"] = bad
            return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware
        return self._topic(dev, bad), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_out_of_range(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("json", "csv", "binary")
        ranged = [f for f in dev.spec.fields if f.role == "value" and f.range is not None]
        f = self._rng.choice(ranged)
        assert f.range is not None
        # Past the top of the range, as a wire value (before scaling).
        over = f.range[1] / f.scale + 1.0
        wire[f.wire_key] = math.ceil(over) if f.type == "integer" else round(over, 2)
        if dev.spec.format == "binary":
            wire[f.wire_key] = min(wire[f.wire_key], 65535)
        return self._topic(dev), self._encode(dev.spec, wire), dev.spec.firmware

    def _bad_bad_frame(self) -> tuple[str, bytes, str]:
        dev, wire = self._pick("binary", "csv")
        good = self._encode(dev.spec, wire)
        if dev.spec.format == "binary":
            how = self._rng.randrange(3)
            if how == 0:
                payload = good[:-1]
            elif how == 1:
                payload = good[:-2] + bytes([good[-2] ^ 0xFF, good[-1]])
            else:
                payload = good + b"\x00"
        else:
            payload = b"XX9" + good[3:] if self._rng.random() < 0.5 else good.rstrip() + b",1\n"
        return self._topic(dev), payload, dev.spec.firmware
