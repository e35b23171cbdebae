"""The agent daemon: one reading's way through the parts.

    paho thread:        MqttSource callback -> bounded hand-off queue (backpressure)
    processing thread:  parse + calibrate -> detect -> StoreWriter.submit(on_commit=ack)
                        (detect.worker: process - parse a batch, send it to the
                        detection worker process, parse the next; its store
                        thread stores each batch with its scores and alerts, in
                        order, and its reader thread takes the worker's answers
                        whatever the store does: agent/runtime/detect_worker.py)
    writer thread:      group COMMIT (synchronous=FULL) -> MQTT PUBACK
    event loop:         Uploader (sync), web server, watchdog, periodic ticks
    camera threads and one vision worker (agent.runtime.vision): frames ->
                        models -> identifications -> StoreWriter.submit

Nothing slow runs on the paho network thread, and the PUBACK for a message is
sent only after the record (or its quarantine entry) is durably committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY

from agent import __version__
from agent.clock import Clock, SystemClock, boot_id
from agent.config.model import Config
from agent.config.secrets import read_secret
from agent.detect.farm_events import FarmEventError, parse_payload
from agent.detect.rules.body_condition import BcsLossParams, MilkParams
from agent.errors import InvalidPayload, StorageFault
from agent.ingest.pipeline import Ingestor
from agent.records.types import (
    Alert,
    BodyCondition,
    Event,
    MilkCheck,
    Quarantined,
    Reading,
    Record,
    Stamp,
    stable_id,
)
from agent.runtime.detect_worker import OP_FARM, OP_REJECTED, DetectionWorker
from agent.runtime.detection import (
    Detection,
    calibration_check,
    farm_event_record,
    farm_events_topic,
)
from agent.runtime.notify import Notifier
from agent.runtime.novision import NoVision
from agent.runtime.preflight import check_config, raise_for_failures
from agent.runtime.profiles import STATE_KEY as PROFILE_STATE_KEY
from agent.runtime.profiles import Profile, ProfileManager, Switch, UnknownProfile
from agent.runtime.review import ReviewItems
from agent.sources.mqtt import MqttSource
from agent.store.reader import StoreReader
from agent.store.state import load_states, save_states
from agent.store.writer import StoreWriter
from agent.sync.transport import AiohttpTransport
from agent.sync.uploader import Uploader
from agent.web.access import WebAccess
from agent.web.app import make_web_app, start_web
from agent.web.history import TRACKED as HISTORY_TRACKED
from agent.web.history import History, bucket_means
from agent.web.homeassistant import Discovery
from agent.web.status import (
    BrokerStatus,
    SensorStatus,
    StatusSnapshot,
    SyncStatus,
    health_reasons,
)
from agent.web.wiring import build_access, tls_context

if TYPE_CHECKING:
    from agent.runtime.vision import Vision

log = logging.getLogger(__name__)

# How many received messages may wait for parsing. When full the paho thread
# blocks, paho stops reading the socket, and the broker holds the rest.
HANDOFF_CAPACITY = 2000
# Alerts shown on the status page (newest first); /api/alerts has more.
STATUS_ALERTS = 10
# Ear-tag identifications shown on the status page (newest first).
STATUS_IDENTIFICATIONS = 10
# Without a systemd watchdog, still prove the store is writable this often.
WATCHDOG_PROBE_S = 10.0
# Until ready (subscribed), ask systemd for more start time this often.
START_EXTEND_EVERY_S = 10.0
# At stop, detection (the processing thread's last batches, a worker's last state
# save, its exit or kill) shares one deadline this far off, well inside systemd's
# TimeoutStopSec=30 (each step had its own before: up to about 34 s with a hung
# worker). Of it, the save and the worker's close are kept these at the least;
# they get what a step before them leaves.
STOP_DETECTION_S = 20.0
STOP_SAVE_S = 5.0
STOP_WORKER_S = 5.0
START_RECORD_WAIT_S = 5.0
UPDATES_EVERY_S = 60.0  # import update events the CLI wrote; report versions when changed
_STOP = object()
# Messages parsed and sent to the detection worker at once (detect.worker: process).
BATCH = 256
# What a batch entry stores once detection answered.
_E_READING, _E_STORE, _E_NEEDS, _E_ALERT = range(4)


@dataclass
class RuntimeState:
    started_mono: float
    web_port: int | None = None
    storage_fault: StorageFault | None = None


class Agent:
    """The whole agent; ``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        config: Config,
        clock: Clock | None = None,
        hmac_key: bytes | None = None,
        mqtt_password: str | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.boot = boot_id()
        key = hmac_key or _secret_bytes("hmac_key")
        # The checks of `dairy-edge config check` (secrets, folders, firmware and
        # calibration files, TLS files): a ConfigError naming each failure and its fix.
        raise_for_failures(check_config(config, hmac_key=key, mqtt_password=mqtt_password))
        self._key = key or b""
        config.gateway.data_dir.mkdir(parents=True, exist_ok=True)
        self.state = RuntimeState(started_mono=self.clock.monotonic())
        self.ingestor = Ingestor(
            config.gateway.firmware_dir,
            config.gateway.calibration_dir,
            config.ingest,
            self.clock,
            self.boot,
        )
        self.writer = StoreWriter(
            config.store_path, config.store, self.clock, on_fault=self._on_storage_fault
        )
        self.reader = StoreReader(config.store_path)
        due = {c.sensor_id: c.due_ts for c in self.ingestor.calibrations.entries()}
        self._worker: DetectionWorker | None = None
        self.detection: Detection | DetectionWorker
        if config.detect.enabled and config.detect.worker == "process" and isinstance(
                self.clock, SystemClock):
            # Detection on the other core (agent/runtime/detect_worker.py); a test's
            # own clock cannot cross into another process, so it keeps it here.
            self._worker = DetectionWorker(
                config.detect, config.logging, self.clock, config.store_path, due,
                self.ingestor.value_range, self._deliver, store_alerts=self._store_alerts)
            self.detection = self._worker
        else:
            self.detection = Detection(
                config.detect,
                self.clock,
                calibration=calibration_check(due, self.clock),
                value_range=self.ingestor.value_range,
            )
        self._farm_topic = farm_events_topic(config)
        # Runtime profiles (agent/runtime/profiles.py): switched by schedule, by the
        # command topic below (the broker's ACL decides who may publish there) or
        # from the page; with none configured, nothing is subscribed.
        self.profiles = ProfileManager(config, self.clock, self._apply_profile,
                                       self._on_profile_switch, self._on_profile_refused)
        mqtt_config = config.mqtt
        self._profile_topic: str | None = None
        if self.profiles.enabled:
            self._profile_topic = f"{config.mqtt.status_prefix}/{config.gateway.id}/profile/set"
            mqtt_config = config.mqtt.model_copy(
                update={"topics": [*config.mqtt.topics, self._profile_topic]})
        self._handoff: queue.Queue[Any] = queue.Queue(maxsize=HANDOFF_CAPACITY)
        self._start_recorded = threading.Event()  # the agent_started event committed
        self._start_submitted = 0.0
        self._processor = threading.Thread(
            target=self._process_loop if self._worker is None else self._batch_loop,
            name="dairy-edge-process", daemon=True
        )
        self.mqtt = MqttSource(
            mqtt_config,
            client_id=config.mqtt_client_id,
            gateway_id=config.gateway.id,
            handler=self._on_message,
            clock=self.clock,
            password=mqtt_password or read_secret("mqtt_password"),
            on_session_gap=self._on_session_gap,
        )
        if config.homeassistant.enabled:
            self.mqtt.allow_prefix(config.homeassistant.discovery_prefix)
        self.uploader: Uploader | None = None
        self._sync_alert_id: str | None = None  # the open sync_refused alert
        self.web_access: WebAccess | None = None  # set when the page starts
        self.history = History()
        self.notifier = Notifier()
        self._stopping = threading.Event()
        self._stop_deadline = float("inf")  # detection's, on time.monotonic(), once stopping
        self.tick_failures = 0  # ticks or periodic saves that raised (the loop went on)
        self._tick_failure_logged: float | None = None
        self._versions_sent: dict[str, Any] | None = None
        self.vision: Vision | NoVision = NoVision()
        if config.vision.enabled and config.cameras:
            # Imported only here: OpenCV and the models cost ~34 MiB resident.
            from agent.runtime.vision import Vision

            self.vision = Vision(config, self.clock, self.boot, self._store_vision,
                                 self._stamp, ingest_busy=self._ingest_busy)
        self.detection.configure_vision(
            BcsLossParams(loss=config.vision.bcs.loss_alert,
                          window_days=config.vision.bcs.loss_window_days),
            MilkParams(min_confidence=config.vision.milk.min_confidence))

    # -- paho thread --------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        # Blocks while the processing thread is behind: paho stops reading the
        # socket and the broker holds the rest (backpressure, not loss).
        while True:
            try:
                self._handoff.put(("message", topic, payload, ack), timeout=0.5)
                return
            except queue.Full:
                if self._stopping.is_set():
                    return  # not acknowledged: the broker redelivers it next session

    # -- processing thread --------------------------------------------------
    def _process_loop(self) -> None:
        while True:
            item = self._handoff.get()
            if item is _STOP:
                return
            try:
                if item[0] == "alert":
                    self._store(item[1], partial(self._publish_alert, item[1]))
                else:
                    self._process(*item[1:])
            except Exception:
                log.exception("processing %s failed", item[0])

    def _parse(self, topic: str, payload: bytes
               ) -> Reading | tuple[Quarantined, Exception]:
        """The reading, or its quarantine record and the error: a bad payload and
        an ingest bug are quarantined alike."""
        try:
            return self.ingestor.parse(topic, payload)
        except Exception as err:  # InvalidPayload, or a bug: quarantine either way
            if not isinstance(err, InvalidPayload):
                log.exception("ingest bug on %r; quarantined as 'internal'", topic[:200])
            return self.ingestor.quarantine(topic, payload, err), err

    def _process(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        if topic == self._farm_topic:
            self._farm_event(topic, payload, ack)
            return
        if topic == self._profile_topic:
            self._profile_command(payload, ack)
            return
        reading = self._parse(topic, payload)
        if isinstance(reading, tuple):
            quarantined, failure = reading
            self._store(quarantined, ack)
            if isinstance(failure, InvalidPayload):  # an impossible value is a sensor alert
                for alert in self._inline.on_rejected(self.ingestor.source_of(topic), failure):
                    self._store(alert, partial(self._publish_alert, alert))
            return
        alerts = self._inline.on_reading(reading)
        self.vision.note_reading(reading)  # RFID reads: cross-checked with ear tags
        self.history.note(reading.sensor_id, reading.firmware, reading.values,
                          reading.stamp.wall_ts)  # the page's tank and climate sparklines
        self._store(reading, ack)
        for alert in alerts:
            self._store(alert, partial(self._publish_alert, alert))

    # -- processing thread, detection in a worker process ---------------------
    def _batch_loop(self) -> None:
        """Parse what waits (up to BATCH messages) and send it to the detection
        worker; the worker's store thread stores each batch, in order, when its
        scores come back (``_deliver``). The next batch is parsed meanwhile."""
        worker = self._worker
        assert worker is not None
        handoff = self._handoff
        while True:
            items = [handoff.get()]
            while len(items) < BATCH:
                try:
                    items.append(handoff.get_nowait())
                except queue.Empty:
                    break
            stop = False
            ops: list[tuple[Any, ...]] = []
            entries: list[tuple[int, Any, Callable[[], None] | None, int]] = []
            for item in items:
                if item is _STOP:
                    stop = True
                    break
                try:
                    if item[0] == "alert":
                        entries.append((_E_ALERT, item[1], None, -1))
                    else:
                        self._batch_message(item[1], item[2], item[3], ops, entries)
                except Exception:
                    log.exception("processing %s failed", item[0])
            if entries:
                try:
                    worker.send(ops, entries)
                except Exception:
                    log.exception("detection of a batch failed; not stored, not acknowledged")
            if stop:
                if not worker.flush(self._stop_left(STOP_SAVE_S + STOP_WORKER_S)):
                    log.warning("stopping with detection batches unanswered; the broker "
                                "still has their messages")
                return

    def _batch_message(self, topic: str, payload: bytes, ack: Callable[[], None],
                       ops: list[tuple[Any, ...]],
                       entries: list[tuple[int, Any, Callable[[], None] | None, int]]) -> None:
        """One message into the batch: its op for the worker, and what to store
        when the results are back (in this order)."""
        if topic == self._farm_topic:
            try:
                event = parse_payload(payload)
            except FarmEventError as err:
                bad = InvalidPayload("bad_farm_event", str(err))
                entries.append((_E_STORE, self.ingestor.quarantine(topic, payload, bad), ack, -1))
                return
            ops.append((OP_FARM, event))
            entries.append((_E_NEEDS, farm_event_record(event, self._stamp()), ack,
                            len(ops) - 1))
            return
        if topic == self._profile_topic:
            self._profile_command(payload, ack)
            return
        reading = self._parse(topic, payload)
        if isinstance(reading, tuple):
            quarantined, failure = reading
            source = self.ingestor.source_of(topic)
            if isinstance(failure, InvalidPayload) and source is not None:
                # An impossible value is a sensor alert.
                ops.append((OP_REJECTED, source, failure.reason, failure.detail))
                entries.append((_E_STORE, quarantined, ack, len(ops) - 1))
            else:
                entries.append((_E_STORE, quarantined, ack, -1))
            return
        assert self._worker is not None
        ops.append(self._worker.reading_op(reading))
        self.vision.note_reading(reading)  # RFID reads: cross-checked with ear tags
        self.history.note(reading.sensor_id, reading.firmware, reading.values,
                          reading.stamp.wall_ts)  # the page's tank and climate sparklines
        entries.append((_E_READING, reading, ack, len(ops) - 1))

    def _deliver(self, entries: list[tuple[int, Any, Callable[[], None] | None, int]],
                 results: list[Any], alerts: dict[int, list[Alert]]) -> None:
        """A batch back from detection (the worker's store thread): each record
        to the writer in the order received, a reading with its scores, each
        alert after the record that raised it."""
        for kind, record, ack, index in entries:
            if kind == _E_ALERT:
                self._store(record, partial(self._publish_alert, record))
                continue
            result = results[index] if index >= 0 else None
            if result is False and kind != _E_STORE:
                # Detection failed on it (logged by the worker): as in process,
                # not stored and not acknowledged; the broker redelivers it.
                log.error("detection failed on %s; not stored", record.record_id)
                continue
            if kind == _E_READING and result is not None:
                record.attributes["anomaly"] = result
            assert ack is not None
            self._store(record, ack)
            for alert in alerts.get(index, ()) if index >= 0 else ():
                self._store(alert, partial(self._publish_alert, alert))

    def _store_alerts(self, alerts: list[Alert]) -> None:
        """Alerts of a tick or a vision record, from the detection worker's store
        thread (after the batches sent before them)."""
        for alert in alerts:
            self._store(alert, partial(self._publish_alert, alert))

    @property
    def _inline(self) -> Detection:
        """Detection on this thread (``_process``: no worker process)."""
        assert isinstance(self.detection, Detection)
        return self.detection

    def _farm_event(self, topic: str, payload: bytes, ack: Callable[[], None]) -> None:
        """A herd-system event: to the rules, and stored (so synced) as an Event;
        acknowledged after commit like a reading. A bad one is quarantined."""
        try:
            event = parse_payload(payload)
        except FarmEventError as err:
            bad = InvalidPayload("bad_farm_event", str(err))
            self._store(self.ingestor.quarantine(topic, payload, bad), ack)
            return
        alerts = self.detection.on_farm_event(event)
        self._store(farm_event_record(event, self._stamp()), ack)
        for alert in alerts:
            self._store(alert, partial(self._publish_alert, alert))

    def _profile_command(self, payload: bytes, ack: Callable[[], None]) -> None:
        """The profile command topic: the payload is a profile name. Acknowledged
        once handled (applied, or refused with an event): a command redelivered
        after a restart would undo later switches."""
        name = payload.decode("utf-8", "replace").strip()
        try:
            self.profiles.request(name, "mqtt")
        except UnknownProfile:
            pass  # logged and stored as a profile_refused event
        ack()

    def _store(self, item: Record | Quarantined, on_commit: Callable[[], None]) -> None:
        """Hand ``item`` to the writer, waiting as long as the store refuses (full
        or failing disk): nothing is acknowledged meanwhile, so nothing is lost."""
        while not self.writer.submit(item, on_commit=on_commit, timeout=1.0):
            if self._stopping.is_set():
                log.warning("stopping with %s not stored; the broker still has it",
                            item.record_id)
                return

    def _ingest_busy(self) -> bool:
        """Ingest has a backlog (after an outage or a restart): vision slows down."""
        return self._handoff.qsize() >= HANDOFF_CAPACITY // 10

    def _store_vision(self, record: Record) -> None:
        """From the vision worker: the same writer, outbox and sync as readings;
        body condition and milk checks also feed their rules (alerts are stored
        by the processing thread, like timed alerts)."""
        self._store(record, _nothing)
        if isinstance(record, BodyCondition | MilkCheck):
            for alert in self.detection.on_vision(record):
                self._submit_alert(alert)

    def _submit_alert(self, alert: Alert) -> None:
        """From the event loop (timed rules): stored by the processing thread."""
        self._handoff.put(("alert", alert))

    def _publish_alert(self, alert: Alert) -> None:
        # The topic is built from config only; ids from the wire go in the payload.
        try:
            self.mqtt.publish(self.mqtt.status_topic("alerts"), _alert_json(alert), qos=1)
        except Exception:
            log.warning("could not publish alert %s", alert.record_id, exc_info=True)

    # -- events -------------------------------------------------------------
    def _stamp(self) -> Stamp:
        return Stamp(
            self.clock.wall(), self.clock.monotonic_ns(), self.boot, self.clock.synced()
        )

    def _event(self, name: str, detail: str, **data: Any) -> Event:
        stamp = self._stamp()
        rid = stable_id("event", name, self.boot, str(stamp.mono_ns))
        return Event(record_id=rid, event=name, detail=detail, stamp=stamp, data=data)

    def _report_updates(self) -> None:
        """Update switches, refusals and rollbacks the CLI wrote to events.jsonl
        become stored (so synced) events, and a "versions" event tells central
        which model and config versions run whenever they change. Never raises."""
        from agent.runtime.updates import mark_sent, unsent_events, versions_report

        data_dir = self.config.gateway.data_dir
        try:
            for item in unsent_events(data_dir):
                fields = item.fields
                detail = " ".join(str(fields[k]) for k in ("kind", "event", "version",
                                                           "reason", "detail", "why")
                                  if fields.get(k) is not None)
                rid = stable_id("update-event", item.kind, str(item.end), item.line)
                event = Event(record_id=rid,
                              event=item.name, detail=detail[:1000], stamp=self._stamp(),
                              data=fields)
                self.writer.submit(event, on_commit=partial(
                    mark_sent, data_dir, item.kind, item.end))
            report = versions_report(data_dir, self.config.vision.models.dir)
            if report != self._versions_sent:
                self._versions_sent = report
                self.writer.submit(self._event(
                    "versions", f"models {report['models_bundle'] or 'shipped'}, config "
                    f"{report['config_bundle'] or 'local'}", **report))
        except Exception:
            log.warning("could not report update events and versions", exc_info=True)

    def _on_session_gap(self) -> None:
        self.writer.submit(
            self._event("session_gap", "broker connected without our persistent session")
        )

    def _on_storage_fault(self, fault: StorageFault) -> None:
        if self.state.storage_fault is None:
            log.error("storage fault (%s): acknowledging nothing until it clears", fault)
        self.state.storage_fault = fault

    # -- runtime profiles ------------------------------------------------------
    def _apply_profile(self, profile: Profile) -> None:
        """Thresholds to the rule engine (learnt state stays), sampling to the cameras."""
        self.detection.reconfigure_rules(profile.rules)
        if not isinstance(self.vision, NoVision):
            for cam in self.config.cameras:
                over = profile.cameras.get(cam.id)
                self.vision.scheduler.set_budget(
                    cam.id, over.infer_fps or cam.infer_fps if over else cam.infer_fps,
                    enabled=over.enabled if over else True)

    def _on_profile_switch(self, switch: Switch) -> None:
        self.writer.submit(
            self._event("profile_switch", switch.detail(),
                        **{"from": switch.old, "to": switch.new, "by": switch.by}),
            timeout=0.5)
        state = {PROFILE_STATE_KEY: self.profiles.to_state()}
        mono_ns = self.clock.monotonic_ns()
        self.writer.call(lambda conn: save_states(conn, state, mono_ns, self.boot))
        self._publish_profile(switch.new)

    def _publish_profile(self, name: str) -> None:
        """Retained on <prefix>/<gateway id>/profile: a farm system sees the mode."""
        if not self.mqtt.connected:
            return  # announced again on the next connect (the tick loop)
        try:
            self.mqtt.publish(self.mqtt.status_topic("profile"), name.encode(), qos=1,
                              retain=True)
        except Exception:
            log.warning("could not publish the active profile", exc_info=True)

    def _on_profile_refused(self, name: str, by: str, reason: str) -> None:
        self.writer.submit(
            self._event("profile_refused", f"profile {name!r} by {by} refused",
                        requested=name, by=by, reason=reason),
            timeout=0.5)

    def profile_status(self) -> dict[str, Any]:
        return self.profiles.status()

    def switch_profile(self, name: str, by: str) -> dict[str, Any]:
        """The page's switch (a worker thread); KeyError for an unknown name."""
        try:
            self.profiles.request(name, by)
        except UnknownProfile as err:
            raise KeyError(str(err)) from None
        return self.profiles.status()

    def _restore_profile(self) -> None:
        state = load_states(self.config.store_path, PROFILE_STATE_KEY).get(PROFILE_STATE_KEY)
        if isinstance(state, dict):
            self.profiles.from_state(state)
        self.profiles.tick()

    # -- alert feedback (the web API's backend) -------------------------------
    def recent_alerts(self, n: int) -> list[dict[str, Any]]:
        return self.reader.recent_alerts(n)

    def precision(self) -> dict[str, float | None]:
        return self.detection.precision()

    def feedback(self, alert_id: str, verdict: str) -> None:
        # Who said it is kept by the page as a user_action event (record_user_action).
        self.detection.feedback(alert_id, verdict)

    def snooze(self, alert_id: str, seconds: float) -> bool:
        return self.detection.snooze(alert_id, seconds)

    def acknowledge(self, alert_id: str) -> bool:
        return self.detection.acknowledge(alert_id)

    def record_user_action(self, action: dict[str, Any]) -> None:
        """A status page user's action (login, confirm, snooze, ...): kept and
        synced as a ``user_action`` event, so central sees who did what when."""
        what = " ".join(str(action.get(k)) for k in ("user", "action", "alert_id")
                        if action.get(k) is not None)
        event = self._event("user_action", what[:200], **action)  # stamped now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._keep_user_action(event)
            return
        # Called on the event loop: a busy writer (up to 0.5 s) must not stall the page.
        loop.run_in_executor(None, self._keep_user_action, event)

    def _keep_user_action(self, event: Event) -> None:
        try:
            kept = self.writer.submit(event, timeout=0.5)
        except Exception:
            log.exception("user action lost (not stored, not synced): %s", event.detail)
            return
        if not kept:
            log.error("user action lost: the store is busy or closed, so it is neither "
                      "stored nor synced: %s", event.detail)

    async def _homeassistant_loop(self, stop: asyncio.Event) -> None:
        """Home Assistant MQTT discovery and states (agent/web/homeassistant.py)."""
        cfg = self.config.homeassistant
        ha = Discovery(self.config.gateway.id, __version__, cfg.discovery_prefix,
                       self.mqtt.status_topic("homeassistant"), self.mqtt.availability_topic)
        connects = -1
        while not stop.is_set():
            try:
                if self.mqtt.connected:
                    if self.mqtt.stats.connects != connects:  # a new session: announce again
                        connects = self.mqtt.stats.connects
                        ha.forget()
                    await self._homeassistant_round(ha)
            except Exception:  # the status, a message: this round is lost, not the loop
                log.warning("home assistant: this round failed; next try in %.0f s",
                            cfg.interval_s, exc_info=True)
                ha.forget()  # announce everything again next round
            try:
                await asyncio.wait_for(stop.wait(), timeout=cfg.interval_s)
            except TimeoutError:
                pass

    async def _homeassistant_round(self, ha: Discovery) -> None:
        snap = (await asyncio.to_thread(self.status)).to_dict()
        for topic, payload in ha.messages(snap, health_reasons(snap)):
            try:
                self.mqtt.publish(topic, payload, qos=1, retain=True)
            except Exception:  # a full queue or a refused topic: try next round
                log.warning("home assistant: could not publish %s", topic, exc_info=True)
                ha.forget()
                break

    def sensor_history(self, sensor_id: str) -> dict[str, list[float]]:
        """One sensor's last 24 h from the buffer, field -> 15-minute means (the
        page's /sensor view; a worker thread: it scans the day's readings)."""
        now = self.clock.wall()
        points: dict[str, list[tuple[float, float]]] = {}
        for _sid, _fw, values, ts in self.reader.series((), now - 86400.0, now,
                                                        sensor_id=sensor_id):
            for name, value in values.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    points.setdefault(name, []).append((ts, float(value)))
        return {name: bucket_means(p, now) for name, p in points.items()}

    def _backfill_history(self, until_wall: float) -> None:
        """The page's sparklines after a restart: the last 24 h of bulk tank and
        barn climate readings from the buffer (a worker thread; a scan of the
        day's rows, about 0.4 s per million)."""
        try:
            self.history.load(self.reader.series(list(HISTORY_TRACKED), until_wall - 86400.0,
                                                 until_wall))
        except Exception:  # sparklines are a nicety: never stop the agent for them
            log.warning("could not read the sparklines' history from the buffer",
                        exc_info=True)

    # -- status ---------------------------------------------------------------
    def _problems(self) -> list[str]:
        problems: list[str] = []
        if self.writer.moved_aside is not None:
            problems.append(
                f"buffer was corrupt at start; moved to {self.writer.moved_aside.name}"
            )
        problems.extend(self.vision.problems)
        if self.uploader is not None and self.uploader.refusal:
            problems.append(f"sync: {self.uploader.refusal}")
        return problems

    def _on_sync_refusal(self, reason: str | None) -> None:
        """Central refused our key or sequence (reason), or accepts us again (None).

        The raise and its clear share one ``details.alert_id`` (the alert
        lifecycle's convention), so central and the page see one alert end."""
        stamp = self._stamp()
        if reason is not None and self._sync_alert_id is None:
            self._sync_alert_id = stable_id("sync_refused", self.boot, str(stamp.mono_ns))
        alert_id = self._sync_alert_id or stable_id("sync_refused", self.boot, "orphan")
        if reason is None:
            self._sync_alert_id = None
        rid = stable_id("alert", "sync_refused", self.boot, str(stamp.mono_ns))
        self._submit_alert(Alert(
            record_id=rid, rule="sync_refused", severity="critical" if reason else "info",
            state="raised" if reason else "cleared",
            message=reason or "central accepts this gateway's batches again", stamp=stamp,
            details={"alert_id": alert_id},
        ))

    def _open_alerts(self) -> list[dict[str, Any]]:
        """The rules' open alerts, and the gateway's own while central refuses it."""
        out = self.detection.open_alerts()
        refusal = self.uploader.refusal if self.uploader is not None else None
        if refusal and self._sync_alert_id is not None:
            out.append({"alert_id": self._sync_alert_id, "rule": "sync_refused",
                        "subject": self.config.gateway.id, "cause": None,
                        "severity": "critical", "message": refusal, "escalation": 0,
                        "snoozed": False, "acknowledged": False, "verdict": None})
        return out

    def _report_corrupt_buffer(self) -> None:
        """T21: a corrupt buffer was moved aside at start; say so everywhere."""
        moved = self.writer.moved_aside
        if moved is None:
            return
        detail = "; ".join(self.writer.corruption)[:500]
        log.error("buffer database was corrupt (%s); moved to %s, started fresh", detail, moved)
        self.writer.submit(
            self._event(
                "buffer_corrupt",
                f"corrupt buffer moved to {moved.name}; started a fresh one",
                moved_to=str(moved),
                problems=list(self.writer.corruption)[:10],
            )
        )

    def _aged(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows with their age (the page shows ages: the wall clock may be unsynced)."""
        now = self.clock.wall()
        for row in rows:
            if row.get("wall_ts") is not None:
                row["age_s"] = max(0.0, round(now - float(row["wall_ts"]), 1))
        return rows

    def status(self) -> StatusSnapshot:
        """What the status page shows (called from a worker thread, once a request)."""
        now_mono = self.clock.monotonic()
        counts = self.reader.status_counts()  # not counts(): that scans every row
        sensors = [
            SensorStatus(
                sensor_id=row["sensor_id"],
                values=row["values"],
                age_s=None if row["age_s"] is None else round(row["age_s"], 1),
                firmware=row["firmware"] or "",
                animal_id=row["animal_id"],
                seen_ts=row["wall_ts"],
            )
            for row in self.reader.sensor_latest(
                now_wall=self.clock.wall(), now_mono_ns=self.clock.monotonic_ns(), boot=self.boot
            )
        ]
        stats = self.mqtt.stats
        sync = SyncStatus(state="disabled")
        if self.uploader is not None:
            up = self.uploader.status()
            sync = SyncStatus(
                state=str(up["state"]),
                last_success_age_s=up["last_success_age_s"],  # type: ignore[arg-type]
                last_error=up["last_error"],  # type: ignore[arg-type]
            )
        fault = self.writer.last_fault
        return StatusSnapshot(
            version=__version__,
            uptime_s=round(now_mono - self.state.started_mono, 1),
            broker=BrokerStatus(
                connected=self.mqtt.connected,
                session_present=self.mqtt.session_present,
                protocol=stats.protocol,
                connects=stats.connects,
                session_gaps=stats.gaps,
                messages=stats.messages,
            ),
            sensors=sensors,
            quarantined=int(counts["quarantine"]),
            backlog=int(counts["backlog"]),
            dead_letters=int(counts["dead_letter"]),
            disk_free_bytes=shutil.disk_usage(self.config.gateway.data_dir).free,
            storage_health="ok" if self.writer.healthy else (fault.kind if fault else "fault"),
            sync=sync,
            alerts=[
                {k: a.get(k) for k in ("record_id", "rule", "severity", "state", "message",
                                       "sensor_id", "animal_id", "wall_ts")}
                for a in self.reader.recent_alerts(STATUS_ALERTS)
            ],
            open_alerts=self._open_alerts(),
            history=self.history.snapshot(self.clock.wall()),
            problems=self._problems(),
            cameras=self.vision.camera_status(),
            models=self.vision.model_status(),
            identifications=(
                self.reader.recent_identifications(STATUS_IDENTIFICATIONS)
                if self.vision.enabled else []
            ),
            body_conditions=self._aged(self.reader.recent_body_conditions(STATUS_IDENTIFICATIONS)
                                       if self.vision.enabled else []),
            profile=self.profiles.status() if self.profiles.enabled else None,
            milk_checks=self._aged(self.reader.recent_milk_checks(STATUS_IDENTIFICATIONS)
                                   if self.vision.enabled else []),
        )

    # -- lifecycle ------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self.writer.start()
        if self._worker is not None:
            self._worker.start()
        self._processor.start()
        self.detection.restore(self.config.store_path)
        if self.profiles.enabled:
            self._restore_profile()
        # READY waits (up to START_RECORD_WAIT_S) until this start is committed: a
        # kill right after READY must not lose the record that the agent started.
        started = self._start_recorded
        if not self.writer.submit(self._event("agent_started", f"dairy-edge {__version__} started"),
                                  on_commit=started.set):
            started.set()  # refused (a full store): readiness does not wait on it
        self._start_submitted = self.clock.monotonic()
        self._report_updates()
        threading.Thread(target=self._backfill_history, args=(self.clock.wall(),),
                         name="dairy-edge-history", daemon=True).start()
        self._report_corrupt_buffer()
        tasks: list[asyncio.Task[None]] = []
        web_runner = None
        transport: AiohttpTransport | None = None
        try:
            if self.config.web.enabled:
                self.web_access = build_access(
                    self.config.web, self.config.gateway.data_dir, self.record_user_action,
                    admin_password=read_secret("web_admin_password"))
                tag_cfg = self.config.vision.eartag
                review = (ReviewItems(tag_cfg.review_dir
                                      or self.config.gateway.data_dir / "review")
                          if any(c.role == "eartag" for c in self.config.cameras) else None)
                app = make_web_app(self.status, alerts=self, access=self.web_access,
                                   gateway=self.config.gateway.id,
                                   sensor_history=self.sensor_history, review=review,
                                   profiles=self if self.profiles.enabled else None)
                web_runner, self.state.web_port = await start_web(
                    app, self.config.web.host, self.config.web.port,
                    tls_context(self.config.web),
                )
            if self.config.sync.enabled:
                transport = AiohttpTransport(self.config.sync)
                self.uploader = Uploader(
                    self.config.sync,
                    device_id=self.config.gateway.id,
                    key=self._key,
                    writer=self.writer,
                    store_path=self.config.store_path,
                    transport=transport,
                    clock=self.clock,
                )
                self.uploader.on_refusal = self._on_sync_refusal
                self.writer.on_group_commit = self.uploader.records_committed
                tasks.append(asyncio.create_task(self.uploader.run(stop), name="sync"))
            tasks.append(asyncio.create_task(self._tick_loop(stop), name="ticks"))
            if self.config.homeassistant.enabled:
                tasks.append(asyncio.create_task(self._homeassistant_loop(stop),
                                                 name="homeassistant"))
            self.mqtt.start()
            if self.vision.enabled:
                # Models load and self-test off the loop; MQTT ingest is already running.
                await asyncio.to_thread(self.vision.start)
                tasks.append(asyncio.create_task(self.vision.watch(stop),
                                                 name="model-reload"))
            await stop.wait()
        finally:
            await self._shutdown(tasks, web_runner)
            if transport is not None:
                await transport.close()
        # Only a graceful stop gets here (not an exception): the update boot check
        # does not count the next start as one after a crash.
        from agent.runtime.updates import mark_clean_stop

        mark_clean_stop(self.config.gateway.data_dir)

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        """Once a second: readiness and watchdog, time-driven rules (silence,
        dropouts), and periodic detector checkpoints."""
        last_save = last_ping = last_extend = last_updates = self.clock.monotonic()
        ready = False
        clock_synced = False
        profile_announced = -1  # the connection the active profile was published on
        saving: asyncio.Future[None] | None = None  # a detection worker's periodic save
        ping_every = self.notifier.watchdog_interval_s or WATCHDOG_PROBE_S
        while not stop.is_set():
            try:
                # Until ready, look often: a restart should be ready as soon as
                # the broker granted our subscriptions, not a tick later.
                await asyncio.wait_for(stop.wait(), timeout=1.0 if ready else 0.05)
            except TimeoutError:
                pass
            if not ready and self.mqtt.connected and self.mqtt.subscriptions() and (
                    self._start_recorded.is_set()
                    or self.clock.monotonic() - self._start_submitted > START_RECORD_WAIT_S):
                ready = True
                self.notifier.ready()
                log.info("subscribed to %s; ready", ", ".join(self.mqtt.subscriptions()))
            elif not ready and self.clock.monotonic() - last_extend >= START_EXTEND_EVERY_S:
                # Alive but waiting for the broker: more start time, not a restart loop.
                last_extend = self.clock.monotonic()
                self.notifier.extend_timeout(3 * START_EXTEND_EVERY_S)
                self.notifier.status(f"waiting for the MQTT broker at "
                                     f"{self.config.mqtt.host}:{self.config.mqtt.port}")
            if self.clock.monotonic() - last_ping >= ping_every:
                last_ping = self.clock.monotonic()
                if await self._store_writable():
                    self.notifier.watchdog()
            if not clock_synced and self.clock.synced():
                clock_synced = True
                self._on_clock_synced()
            if self.profiles.enabled:
                self.profiles.tick()  # the schedule
                if self.mqtt.connected and self.mqtt.stats.connects != profile_announced:
                    profile_announced = self.mqtt.stats.connects
                    self._publish_profile(self.profiles.active)
            if self.clock.monotonic() - last_updates >= UPDATES_EVERY_S:
                last_updates = self.clock.monotonic()
                await asyncio.to_thread(self._report_updates)
            if not ready:
                continue  # time-driven rules start with ingest
            try:
                # With detection in a worker process the tick returns at once: its
                # alerts are stored by the worker's store thread.
                for alert in await asyncio.to_thread(self.detection.tick,
                                                     self.clock.monotonic()):
                    # A full hand-off queue must block a worker thread, not the loop.
                    await asyncio.to_thread(self._submit_alert, alert)
                if self.clock.monotonic() - last_save > self.config.detect.save_interval_s:
                    last_save = self.clock.monotonic()
                    if self._worker is not None:
                        # The worker's state call must not hold the ticks and the
                        # watchdog: it runs beside them, one at a time.
                        if saving is None or saving.done():
                            saving = asyncio.get_running_loop().run_in_executor(
                                None, self._worker.save, self.writer, self.boot)
                            saving.add_done_callback(_log_save_failure)
                    else:
                        await asyncio.to_thread(self.detection.save, self.writer, self.boot)
            except Exception:  # noqa: BLE001 - a failed tick or save: logged, counted, go on
                self._tick_failed()

    def _tick_failed(self) -> None:
        self.tick_failures += 1
        now = self.clock.monotonic()
        if self._tick_failure_logged is None or now - self._tick_failure_logged >= 60.0:
            self._tick_failure_logged = now
            log.exception("a detection tick or state save failed (%d so far); the ticks, "
                          "the watchdog and the next save go on", self.tick_failures)

    def _on_clock_synced(self) -> None:
        """R6: the wall clock is now right (NTP answered, or it already was at start):
        correct the wall time of this boot's records made before, from mono_ns."""
        log.info("wall clock is synced; correcting records stamped before the sync")
        self.writer.submit(self._event("clock_synced", "wall clock synced"))

        def done(future: Any) -> None:
            err = future.exception()
            if err is not None:
                log.warning("correcting pre-sync record times failed: %s", err)
            elif future.result():
                log.info("corrected the wall time of %d records made before sync",
                         future.result())

        self.writer.clock_synced().add_done_callback(done)

    async def _store_writable(self) -> bool:
        """The watchdog proof: the event loop turns and the writer can commit."""

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('heartbeat_mono_ns', ?)",
                (str(self.clock.monotonic_ns()),),
            )

        try:
            await asyncio.wait_for(asyncio.wrap_future(self.writer.call(probe)), WATCHDOG_PROBE_S)
        except Exception as err:  # noqa: BLE001 - any failure means: do not ping
            log.warning("watchdog probe failed: %s", err)
            return False
        return True

    def _stop_left(self, keep: float = 0.0) -> float:
        """Seconds left until detection's stop deadline, less ``keep`` for the steps
        after this one."""
        return max(0.0, self._stop_deadline - keep - time.monotonic())

    async def _shutdown(self, tasks: list[asyncio.Task[None]], web_runner: Any) -> None:
        log.info("stopping: draining received messages and committing")
        self.notifier.stopping()
        for task in tasks:
            if task.get_name() == "model-reload":
                task.cancel()
        # Cameras stop; open visits close and are stored while the writer still takes
        # everything (an identification has no broker to redeliver it).
        await asyncio.to_thread(self.vision.stop)
        self._stopping.set()
        # Stop taking messages first; unacknowledged ones stay with the broker.
        await asyncio.to_thread(self.mqtt.stop)
        self._stop_deadline = time.monotonic() + STOP_DETECTION_S
        killer = None
        if self._worker is not None:
            # A write blocked on a hung worker's full pipe has no timeout of its
            # own: at the deadline the worker is killed, which ends the write.
            killer = threading.Timer(self._stop_left(), self._worker.kill)
            killer.daemon = True
            killer.start()
        self._handoff.put(_STOP)
        await asyncio.to_thread(self._processor.join,
                                self._stop_left(STOP_SAVE_S + STOP_WORKER_S))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if self._worker is not None:  # a hung worker must not outlast TimeoutStopSec
                await asyncio.to_thread(self._worker.save, self.writer, self.boot,
                                        self._stop_left(STOP_WORKER_S))
            else:
                await asyncio.to_thread(self.detection.save, self.writer, self.boot)
        except Exception:
            log.exception("saving detection state at stop failed")
        if self._worker is not None:
            await asyncio.to_thread(self._worker.close, self._stop_left())
        if killer is not None:
            killer.cancel()
        await asyncio.to_thread(self.writer.close)
        if web_runner is not None:
            await web_runner.cleanup()
        stats = self.mqtt.stats
        dedup = REGISTRY.get_sample_value("dairy_edge_dedup_hits_total") or 0.0
        log.info(
            "stopped: %d messages received, %d acknowledged after commit, %d acks withheld "
            "(connection gone; the broker redelivers them), %d redeliveries already stored",
            stats.messages,
            stats.acks,
            stats.stale_acks,
            int(dedup),
        )


def _log_save_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("saving detection state failed: %s", future.exception())


def _nothing() -> None:
    """On commit of a record no broker waits for (identifications)."""


def _secret_bytes(name: str) -> bytes | None:
    value = read_secret(name)
    return value.encode() if value else None


def _alert_json(alert: Alert) -> bytes:
    import json

    return json.dumps(alert.to_dict(), separators=(",", ":"), default=str).encode()
