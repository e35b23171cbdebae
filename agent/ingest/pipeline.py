"""The ingestor: MQTT topic and payload -> a calibrated Reading, or a quarantine entry.

``parse`` runs on the paho network thread, so it only checks, decodes and
calibrates; it never blocks and never raises anything but ``InvalidPayload``
for bad input. ``quarantine`` turns any failure into a record and never raises.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.clock import Clock
from agent.config.model import IngestConfig
from agent.errors import ConfigError, InvalidPayload
from agent.ingest.calibration import Calibration, CalibrationTable, load_calibration_dir
from agent.ingest.decode import Decoder, binary_decoder, csv_decoder, json_decoder
from agent.ingest.extract import FieldPlan, compile_fields, extract, field_names, units_of
from agent.ingest.firmware import (
    SAFE_ID_RE,
    SENSOR_PLACEHOLDER,
    FirmwareSpec,
    compose_msg_id,
    load_firmware_dir,
)
from agent.records.types import Quarantined, Reading, Stamp, stable_id

log = logging.getLogger(__name__)

REASONS = (
    "too_large",
    "unknown_topic",
    "bad_encoding",
    "bad_json",
    "too_deep",
    "duplicate_key",
    "non_finite",
    "bad_type",
    "missing_field",
    "bad_id",
    "out_of_range",
    "bad_frame",
)
"""Every reason ``parse`` can give; ``internal`` is added by ``quarantine`` for bugs."""

_MAX_DETAIL = 300
_MAX_ID_PREFIXES = 4096  # sensors whose record-id hash prefix is kept
_MAX_TOPICS = 4096  # topics whose route is kept


def record_id_for(kind: str, sensor_id: str, msg_id: str) -> str:
    """The record id of a reading that carries a device message id (R1).

    The kind is part of it because sensor ids are only unique within a kind:
    climate node "01" and water meter "01" may both send sequence 5.
    """
    return stable_id(kind, sensor_id, msg_id)


@dataclass(frozen=True, slots=True)
class _Route:
    spec: FirmwareSpec
    head: str  # topic text before the sensor id
    tail: str  # topic text after it
    decode: Decoder
    plan: list[FieldPlan]
    units: dict[str, str]


class Ingestor:
    """Parses, validates and calibrates sensor messages for every firmware."""

    def __init__(
        self,
        firmware_dir: Path,
        calibration_dir: Path,
        config: IngestConfig,
        clock: Clock,
        boot: str,
    ) -> None:
        self._config = config
        self._clock = clock
        self._boot = boot
        self._max_bytes = config.max_payload_bytes
        self.specs = load_firmware_dir(Path(firmware_dir))
        self._ranges = {
            (spec.firmware, f.name): f.range for spec in self.specs for f in spec.fields
        }
        self.calibrations = load_calibration_dir(Path(calibration_dir))
        self._check_calibrations(self.calibrations)
        self._routes: list[_Route] = []
        self._by_head: dict[str, _Route] = {}
        # Per (kind, sensor id): the SHA-256 state after those two parts of
        # ``record_id_for``; each message then hashes its message id only.
        self._id_prefix: dict[tuple[str, str], Any] = {}
        # Topics already routed by the sensor's own level (the common case): the
        # route and the id, without splitting and checking the topic again.
        self._by_topic: dict[str, tuple[_Route, str]] = {}
        for spec in self.specs:
            pattern = spec.topic_for(config.topic_prefix)
            head, _, tail = pattern.partition(SENSOR_PLACEHOLDER)
            route = _Route(
                spec=spec,
                head=head,
                tail=tail,
                decode=self._decoder(spec),
                plan=compile_fields(spec),
                units=units_of(spec),
            )
            self._routes.append(route)
            if not tail:
                self._by_head[head] = route

    def _decoder(self, spec: FirmwareSpec) -> Decoder:
        if spec.format == "json":
            return json_decoder(self._config.max_json_depth)
        if spec.format == "csv":
            assert spec.csv is not None
            return csv_decoder(spec.csv, spec.fields)
        assert spec.binary is not None
        return binary_decoder(spec.binary)

    def _check_calibrations(self, table: CalibrationTable) -> None:
        specs = {s.firmware: s for s in self.specs}
        for entry in table.entries():
            spec = specs.get(entry.firmware)
            if spec is None:
                raise ConfigError(f"{entry.source}: firmware: unknown firmware {entry.firmware!r}")
            unknown = set(entry.fields) - field_names(spec)
            if unknown:
                raise ConfigError(
                    f"{entry.source}: fields: {sorted(unknown)} are not numeric value fields "
                    f"of {entry.firmware}"
                )

    def value_range(self, firmware: str, sensor_id: str, name: str) -> tuple[float, float] | None:
        """The valid [min, max] of a value field after this sensor's calibration
        (the firmware's ``range`` pushed through the correction; sampled, so a
        non-linear correction is covered too), or None when the firmware gives
        no range. What the anomaly detectors that bin values are told."""
        rng = self._ranges.get((firmware, name))
        if rng is None:
            return None
        lo, hi = rng
        cal = self.calibrations.get(firmware, sensor_id)
        if cal is None:
            return (float(lo), float(hi))
        points = [cal.apply(name, lo + (hi - lo) * k / 8) for k in range(9)]
        return (min(points), max(points))

    def subscriptions(self) -> list[str]:
        """MQTT topic filters covering every firmware, one per firmware."""
        return [spec.subscription(self._config.topic_prefix) for spec in self.specs]

    def overdue(self, now_wall: float) -> list[Calibration]:
        """Calibrations due at or before ``now_wall``; for plausibility rules."""
        return self.calibrations.overdue(now_wall)

    def _stamp(self) -> Stamp:
        clock = self._clock
        return Stamp(
            wall_ts=clock.wall(),
            mono_ns=clock.monotonic_ns(),
            boot_id=self._boot,
            clock_synced=clock.synced(),
        )

    def _route(self, topic: str) -> tuple[_Route, str]:
        known = self._by_topic.get(topic)
        if known is not None:
            return known
        head, sep, sensor_id = topic.rpartition("/")
        route = self._by_head.get(head + sep) if sep else None
        if route is not None and SAFE_ID_RE.fullmatch(sensor_id):
            if len(self._by_topic) >= _MAX_TOPICS:
                self._by_topic.clear()  # bounded, whatever topics arrive
            self._by_topic[topic] = (route, sensor_id)
            return route, sensor_id
        for route in self._routes:
            if (
                len(topic) >= len(route.head) + len(route.tail)
                and topic.startswith(route.head)
                and topic.endswith(route.tail)
            ):
                end = len(topic) - len(route.tail)
                sensor_id = topic[len(route.head) : end]
                if SAFE_ID_RE.fullmatch(sensor_id):
                    return route, sensor_id
                raise InvalidPayload("bad_id", "sensor id in the topic fails the id allowlist")
        raise InvalidPayload("unknown_topic", "no firmware matches the topic")

    def source_of(self, topic: str) -> tuple[str, str] | None:
        """(firmware, sensor id) a topic belongs to, or None: for a refused message,
        so the sensor checks learn that this sensor sends impossible values."""
        if not isinstance(topic, str):
            return None
        try:
            route, sensor_id = self._route(topic)
        except InvalidPayload:
            return None
        return route.spec.firmware, sensor_id

    def parse(self, topic: str, payload: bytes) -> Reading:
        """One message as a Reading; raises InvalidPayload(reason, detail) for bad input."""
        try:
            size = len(payload)
        except TypeError:
            raise InvalidPayload("bad_type", "payload is not bytes") from None
        if size > self._max_bytes:
            raise InvalidPayload("too_large", f"{size} bytes > {self._max_bytes}")
        if not isinstance(payload, bytes):
            try:
                payload = bytes(payload)
            except (TypeError, ValueError):
                raise InvalidPayload("bad_type", "payload is not bytes") from None
        if not isinstance(topic, str):
            raise InvalidPayload("unknown_topic", "topic is not text")
        route, sensor_id = self._route(topic)
        spec = route.spec
        got = extract(route.plan, route.decode(payload))
        if got.msg_parts:
            device_msg_id = compose_msg_id(got.msg_parts)
            msg_id: str | None = device_msg_id
            record_id = self._record_id(spec.kind, sensor_id, device_msg_id)
        else:
            msg_id = None
            record_id = stable_id(topic, payload)
        raw = values = got.raw
        calibration = self.calibrations.get(spec.firmware, sensor_id)
        if calibration is not None:
            values = {name: calibration.apply(name, v) for name, v in raw.items()}
            got.attributes["calibration_due_ts"] = calibration.due_ts
        units = route.units
        # Every value field present (the usual message): the same keys in the same order.
        units = dict(units) if len(raw) == len(units) else {name: units[name] for name in raw}
        clock = self._clock
        stamp = Stamp(clock.wall(), clock.monotonic_ns(), self._boot, clock.synced())
        return Reading(record_id, sensor_id, spec.firmware, topic, values, raw, units, stamp,
                       got.animal_id, got.source_ts, msg_id, got.attributes)

    def _record_id(self, kind: str, sensor_id: str, msg_id: str) -> str:
        """``record_id_for(kind, sensor_id, msg_id)``, from the sensor's hashed prefix."""
        prefix = self._id_prefix.get((kind, sensor_id))
        if prefix is None:
            if len(self._id_prefix) >= _MAX_ID_PREFIXES:
                self._id_prefix.clear()  # bounded, whatever sensor ids arrive
            prefix = hashlib.sha256()
            for part in (kind.encode(), sensor_id.encode()):
                prefix.update(len(part).to_bytes(8, "big") + part)
            self._id_prefix[(kind, sensor_id)] = prefix
        h = prefix.copy()
        data = msg_id.encode()
        h.update(len(data).to_bytes(8, "big") + data)
        return h.hexdigest()[:32]

    def quarantine(self, topic: str, payload: bytes, error: Exception) -> Quarantined:
        """The quarantine entry for a message ``parse`` refused; never raises.

        A payload over the size limit is kept only up to the limit, so one huge
        message cannot fill the buffer.
        """
        try:
            if isinstance(error, InvalidPayload):
                reason, detail = error.reason, error.detail
            else:
                reason, detail = "internal", f"{type(error).__name__}: {error}"
            try:
                data = bytes(payload)
            except Exception:  # noqa: BLE001 - whatever it is, keep an empty marker
                data = b""
            if len(data) > self._max_bytes:
                detail = f"{detail} (kept the first {self._max_bytes} of {len(data)} bytes)"
            topic_text = topic if isinstance(topic, str) else repr(topic)
            record_id = stable_id(topic_text.encode("utf-8", "surrogatepass"), data)
            entry = Quarantined(
                record_id=record_id,
                topic=topic_text,
                payload=data[: self._max_bytes],
                reason=reason,
                detail=detail[:_MAX_DETAIL],
                stamp=self._stamp(),
            )
        except Exception as err:  # quarantine must never raise
            log.exception("quarantine failed")
            entry = Quarantined(
                record_id=stable_id("quarantine-failed", repr(err)[:200]),
                topic="",
                payload=b"",
                reason="internal",
                detail=f"quarantine failed: {type(err).__name__}",
                stamp=Stamp(0.0, 0, self._boot, False),
            )
        # Not counted here: the store writer counts rejected_total once the entry
        # is committed (and not for a redelivered duplicate).
        return entry
