"""A deterministic barn: every firmware's messages, with realistic values.

Barn air follows the day; the bulk tank warms at each milking and cools back
to 3.5 degC, is emptied and washed every second morning; each cow has her own
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
        raise ValueError(f"the simulator knows no firmware kind {kind!r}")

    def _tank(self, dev: _Device, ts: float) -> dict[str, Any]:
        st = dev.state
        dt_s = dev.spec.sampling_period_s
        temp = st.get("temp", 3.6)
        volume = st.get("volume", 6000.0 + 500.0 * dev.index)
        h = _hour(ts)
        day = int(ts // 86400)
        pickup_day = day % 2 == 0
        washing = pickup_day and PICKUP_H <= h < PICKUP_H + 0.5
        if pickup_day and PICKUP_H - 0.5 <= h < PICKUP_H:
            volume = max(volume - 20000.0 * dt_s / 1800.0, 0.0)  # the tanker pumps out
        if washing:
            volume, temp = 0.0, 45.0 + self._rng.gauss(0, 1.0)
        elif volume < 50.0:
            temp += (12.0 - temp) * (1 - math.exp(-dt_s / 1800.0))  # empty: drifts to room
        if _in_milking(ts) and not washing:
            inflow = len(self._cows) * 14.0 / SESSION_S * dt_s / self._tanks
            temp = (volume * temp + inflow * 35.0) / (volume + inflow)
            volume += inflow
        cooling = volume >= 50.0 and not washing
        if cooling:
            temp += (3.5 - temp) * (1 - math.exp(-dt_s / 2700.0))
        agitator = cooling and (_in_milking(ts) or temp > 4.5 or (ts % 1800.0) < 120.0)
        st["temp"], st["volume"] = temp, volume
        return {
            "msg_id": f"{0xA81F + dev.index:04x}-{dev.seq:06d}",
            "ts": int(ts),
            "temp": round(temp + self._rng.gauss(0, 0.05), 2),
            "agitator": "on" if agitator else "off",
            "level_l": round(volume),
            "wash": washing,
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
