"""The vision half of the agent: cameras -> scheduler -> models -> visits -> writer.

    camera threads:   CameraWorker reads frames, offers them to the scheduler
                      (never blocks: a one-slot mailbox per camera)
    vision worker:    InferenceScheduler takes frames within each camera's
                      budget and presence gate -> preprocess -> ear-tag reader
                      -> visit voter -> identification -> review queue, crop
                      budget -> StoreWriter (the same writer and outbox as
                      every reading)
    processing thread (MQTT): RFID reads are handed over through a bounded
                      queue and cross-checked on the vision worker

Nothing here runs on the MQTT path: a camera or model that fails shows in the
status and the metrics, and ingest, the store and sync go on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.clock import Clock
from agent.config.model import CameraConfig, Config
from agent.errors import ConfigError
from agent.metrics import FRAMES_DROPPED
from agent.models.errors import ModelError
from agent.models.registry import ModelRegistry
from agent.records.types import (
    MILK_CLASSES,
    BodyCondition,
    Identification,
    MilkCheck,
    Reading,
    Record,
    Stamp,
    stable_id,
)
from agent.sources.camera.base import Frame
from agent.sources.camera.worker import CameraWorker
from agent.vision.bcs.export import MODEL_NAME as BCS_MODEL
from agent.vision.bcs.export import MODEL_NAMES as BCS_MODELS
from agent.vision.bcs.model import BcsEstimate, BcsEstimator, pool
from agent.vision.bcs.segment import NoCow
from agent.vision.calibrate import CameraCalibration, resolve_calibration
from agent.vision.eartag.frame import EartagReader
from agent.vision.eartag.models import MODEL_NAMES, runners_from_registry
from agent.vision.eartag.register import HerdRegister
from agent.vision.eartag.review import CropBudget, ReviewQueue, attach_crop
from agent.vision.eartag.static import StaticTextFilter
from agent.vision.eartag.types import TagReading
from agent.vision.eartag.visit import VisitResult, VisitTracker
from agent.vision.milk.classify import MODEL_NAME as MILK_MODEL
from agent.vision.milk.classify import MilkClassifier, MilkResult
from agent.vision.pool import Visit, VisitPool
from agent.vision.preprocess import Preprocessor
from agent.vision.scheduler import InferenceScheduler

log = logging.getLogger(__name__)

# RFID reads waiting for the vision worker; a reader repeats its reads, so
# dropping beyond this (logged) loses no cow.
RFID_QUEUE = 1000
# Identifications kept per station to name the cow of a BCS or milk visit.
IDENT_KEEP = 64


class Vision:
    """Every camera and the models they feed; ``start`` / ``stop`` from the daemon.

    ``submit`` hands a finished identification to the store (it may block while
    the store is full: it runs on the vision worker, never on the MQTT path).
    """

    def __init__(
        self,
        config: Config,
        clock: Clock,
        boot: str,
        submit: Callable[[Record], None],
        stamp: Callable[[], Stamp],
        ingest_busy: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._submit = submit
        self.problems: list[str] = []
        cameras = list(config.cameras) if config.vision.enabled else []
        eartag = [c for c in cameras if c.role == "eartag"]
        bcs = [c for c in cameras if c.role == "bcs"]
        milk = [c for c in cameras if c.role == "milk"]
        bcs_cfg = config.vision.bcs
        # Only the models vision runs (the anomaly forecaster is detection's). A
        # farm-fitted BCS model lives in its own folder, with its own registry
        # (the same verification, self-test, hot load and rollback).
        wanted = [*(MODEL_NAMES if eartag else ()),
                  *([BCS_MODEL] if bcs and bcs_cfg.model_dir is None else ()),
                  *([MILK_MODEL] if milk else ())]
        # The shipped models for the kinds of frames a farm's fit (model_dir) may
        # not cover: a colour fit leaves depth frames to the shipped bcs_depth.
        optional = ([m for m in BCS_MODELS if bcs_cfg.model_dir is None or m != BCS_MODEL]
                    if bcs else [])
        self.registry = ModelRegistry(config.vision.models, required=wanted,
                                      only=[*wanted, *optional])
        self.registries = [self.registry]
        self.bcs_registry = self.registry
        if bcs and bcs_cfg.model_dir is not None:
            self.bcs_registry = ModelRegistry(
                config.vision.models.model_copy(update={"dir": bcs_cfg.model_dir}),
                required=[BCS_MODEL], only=[BCS_MODEL])
            self.registries.append(self.bcs_registry)
        self.bcs = BcsEstimator(lambda name: self.bcs_registry.get(name) if name == BCS_MODEL
                                else self.registry.get(name),
                                rear=None if bcs_cfg.rear == "auto" else bcs_cfg.rear,
                                min_quality=bcs_cfg.min_quality)
        self.pools: dict[str, VisitPool[BcsEstimate]] = {
            cam.id: VisitPool(cam.id, boot, gap_s=bcs_cfg.visit_gap_s) for cam in bcs}
        self.milk = MilkClassifier(lambda: self.registry.get(MILK_MODEL))
        self.milk_pools: dict[str, VisitPool[MilkResult]] = {
            cam.id: VisitPool(cam.id, boot, gap_s=config.vision.milk.visit_gap_s)
            for cam in milk}
        # Finished visits held for the join window, oldest first: (due on the
        # monotonic clock in ns, visit, camera); a wall clock stepping back must
        # not hold them.
        self._pending: deque[tuple[int, Visit[Any], CameraConfig]] = deque()
        self._model_errors_logged: set[str] = set()
        self._idents: dict[str, deque[Identification]] = {}
        # RFID reads at BCS and milk stations (EID, wall time), for the same join.
        self._join_stations = {c.station for c in [*bcs, *milk] if c.station}
        self._station_reads: dict[str, deque[tuple[float, str]]] = {
            st: deque(maxlen=IDENT_KEEP) for st in self._join_stations}
        self._stamp = stamp
        register = self._load_register() if eartag or bcs or milk else None
        self.register = register
        self.preprocessors: dict[str, Preprocessor] = {}
        for cam in cameras:
            self.preprocessors[cam.id] = Preprocessor(cam, self._calibration(cam))
        tag_cfg = config.vision.eartag
        self.trackers: dict[str, VisitTracker] = {
            cam.id: VisitTracker(
                tag_cfg,
                cam.id,
                boot_id=boot,
                stamp=stamp,
                station=cam.station,
                register=register,
                model_versions=self.registry.versions,
                # A camera with a station has a reader there: hold each visit for
                # the reader's window from the first visit on, not from its first read.
                expect_rfid=cam.station is not None,
            )
            for cam in eartag
        }
        # Stall numbers and signs stand still; ear tags never do.
        self.static = {cam.id: StaticTextFilter() for cam in eartag}
        self._stations = {cam.station: cam.id for cam in eartag if cam.station}
        self.review = ReviewQueue(
            tag_cfg.review_dir or config.gateway.data_dir / "review", tag_cfg.review_max_bytes
        )
        self.budget = CropBudget(tag_cfg.upload_crop_bytes_per_day)
        self._reader: EartagReader | None = None
        self._rfid: queue.Queue[Reading] = queue.Queue(maxsize=RFID_QUEUE)
        self._rfid_firmware = set(config.detect.rules.mapping.rfid)
        background = config.vision.background_priority
        self.scheduler: InferenceScheduler[Frame] = InferenceScheduler(
            cameras, self._process, background=background, ingest_busy=ingest_busy,
            busy_factor=config.vision.busy_infer_factor, on_empty=self._empty)
        self.scheduler.close_idle(self._tick)
        self.workers = [CameraWorker(cam, self._offer, clock=clock, background=background)
                        for cam in cameras]
        self._unsupported_logged: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.workers)

    def _load_register(self) -> HerdRegister | None:
        path = self.config.vision.eartag.herd_register
        if path is None:
            return None
        try:
            return HerdRegister.load(path)
        except ConfigError as err:
            # Without the register every visit would go out unchecked: say so and
            # run without it rather than stop ingest over a spreadsheet typo.
            self.problems.append(f"herd register not loaded: {err}")
            log.error("herd register not loaded (%s); visits are not checked against it", err)
            return None

    def _calibration(self, cam: CameraConfig) -> CameraCalibration | None:
        try:
            return resolve_calibration(cam, self.config.gateway.calibration_dir)
        except ConfigError as err:
            self.problems.append(f"camera {cam.id}: calibration not used: {err}")
            log.error("camera %s: calibration not used: %s", cam.id, err)
            return None

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Load and self-test the models, then start the worker and the cameras."""
        if not self.enabled:
            return
        for registry in self.registries:
            for name, st in registry.load_all().items():
                if st["state"] != "active":
                    log.error("model %s is %s: %s", name, st["state"], st.get("error"))
        self.scheduler.start()
        for worker in self.workers:
            worker.start()
        log.info("vision: %d camera(s) started", len(self.workers))

    def stop(self) -> None:
        """Stop the cameras and the worker, then close every open visit and store it."""
        if not self.enabled:
            return
        for worker in self.workers:
            worker.stop(2.0)
        if not self.scheduler.stop(10.0):
            log.warning("vision worker did not stop in time; open visits may be lost")
            return
        self._drain_rfid()
        for tracker in self.trackers.values():
            self._emit(tracker.flush())
        for camera_id, bcs_pool in self.pools.items():
            self._visits_done(camera_id, bcs_pool.end())
        for camera_id, milk_pool in self.milk_pools.items():
            self._visits_done(camera_id, milk_pool.end())
        self._flush_pending(None)
        for registry in self.registries:
            registry.close()

    def _offer(self, frame: Frame) -> None:
        """On a camera thread: hand the frame over; drops are counted by the scheduler."""
        self.scheduler.offer(frame)

    # -- from the MQTT processing thread -----------------------------------------
    def note_reading(self, reading: Reading) -> None:
        """An RFID read for a station with a camera: queue it (never blocks)."""
        if reading.firmware not in self._rfid_firmware:
            return
        eid = reading.attributes.get("eid")
        if reading.sensor_id in self._join_stations and eid:
            # deque.append is atomic: the vision worker reads these without a lock.
            self._station_reads[reading.sensor_id].append((reading.stamp.wall_ts, str(eid)))
        if reading.sensor_id not in self._stations:
            return
        try:
            self._rfid.put_nowait(reading)
        except queue.Full:
            log.warning("RFID queue full; read from %s not cross-checked", reading.sensor_id)

    # -- the vision worker ---------------------------------------------------------
    def _process(self, camera_id: str, frame: Frame) -> None:
        if camera_id in self.pools:
            self._process_bcs(camera_id, frame)
            return
        if camera_id in self.milk_pools:
            self._process_milk(camera_id, frame)
            return
        tracker = self.trackers.get(camera_id)
        if tracker is None:
            if camera_id not in self._unsupported_logged:
                self._unsupported_logged.add(camera_id)
                log.warning("camera %s: no models for its role yet; frames are not analysed",
                            camera_id)
            return
        reader = self._current_reader()
        if reader is None:
            FRAMES_DROPPED.labels(camera=camera_id, reason="error").inc()
            self._emit(tracker.tick(frame.mono_ns))
            return
        processed = self.preprocessors[camera_id].process(frame.image)
        readings = [
            TagReading(
                r.number, r.confidence,
                _int_box(processed.geometry.to_original(r.box)),
                r.crop, r.digit_confidences,
            )
            for r in reader.read(processed.image)
        ]
        readings = self.static[camera_id].filter(readings, frame.mono_ns)
        self._emit(tracker.add(frame.mono_ns, frame.wall_ts, frame.index, readings))

    def _process_bcs(self, camera_id: str, frame: Frame) -> None:
        """Score the cow's back; frames without a usable cow are skipped."""
        image = self.preprocessors[camera_id].process(frame.image).image
        depth = image if image.dtype.kind == "u" and image.ndim == 2 and \
            image.dtype.itemsize == 2 else None
        try:
            est = self.bcs.estimate(None if depth is not None else image, depth)
        except NoCow:
            self._visits_done(camera_id, self.pools[camera_id].tick(frame.mono_ns))
            return
        except ModelError as err:
            FRAMES_DROPPED.labels(camera=camera_id, reason="error").inc()
            self._model_error(camera_id, err)
            return
        self._visits_done(camera_id, self.pools[camera_id].add(frame.mono_ns, frame.wall_ts, est))

    def _process_milk(self, camera_id: str, frame: Frame) -> None:
        """Classify the sample; frames without milk in view are skipped."""
        image = self.preprocessors[camera_id].process(frame.image).image
        pool_ = self.milk_pools[camera_id]
        try:
            result = self.milk.check(image)
        except (LookupError, ValueError, ModelError) as err:
            FRAMES_DROPPED.labels(camera=camera_id, reason="error").inc()
            self._model_error(camera_id, err)
            return
        if result.result is None:
            self._visits_done(camera_id, pool_.tick(frame.mono_ns))
            return
        self._visits_done(camera_id, pool_.add(frame.mono_ns, frame.wall_ts, result))

    def _model_error(self, camera_id: str, err: Exception) -> None:
        """Log a model problem once per camera (it repeats every frame); counted always."""
        if camera_id not in self._model_errors_logged:
            self._model_errors_logged.add(camera_id)
            log.error("camera %s: frames not scored: %s", camera_id, err)
        else:
            log.debug("camera %s: %s", camera_id, err)

    def _visits_done(self, camera_id: str, visits: list[Visit[Any]]) -> None:
        """Hold finished visits for the join window: the ear-tag visit that names
        the cow may end after the back or the sample has left its camera."""
        cam = self._camera(camera_id)
        # Without a station nothing can name the cow: no reason to wait.
        hold_ns = int(self._join_window(cam) * 1e9) if cam.station else 0
        for v in visits:
            self._pending.append((v.last_mono_ns + hold_ns, v, cam))

    def _join_window(self, cam: CameraConfig) -> float:
        vision = self.config.vision
        return vision.milk.join_window_s if cam.role == "milk" else vision.bcs.join_window_s

    def _flush_pending(self, mono_now_ns: int | None) -> None:
        """Store the held visits that are due (all of them when ``None``: stopping)."""
        while self._pending and (mono_now_ns is None or self._pending[0][0] <= mono_now_ns):
            _, visit, cam = self._pending.popleft()
            if cam.role == "milk":
                self._submit(self._milk_check(visit, cam))
            else:
                self._submit(self._body_condition(visit, cam))

    def _milk_check(self, visit: Visit[MilkResult], cam: CameraConfig) -> MilkCheck:
        """One sample's check: the class with the highest mean probability over
        its frames; frames without the reference card count half."""
        totals = dict.fromkeys(MILK_CLASSES, 0.0)
        weight = 0.0
        for r in visit.items:
            w = 1.0 if r.details.get("patch_found", True) else 0.5
            weight += w
            for c in MILK_CLASSES:
                totals[c] += w * r.scores.get(c, 0.0)
        scores = {c: round(v / weight, 4) for c, v in totals.items()}
        result = max(scores, key=lambda c: scores[c])
        # The frames' own caps (no card, clipped white) bound the pooled confidence.
        confidence = min(scores[result], max(r.confidence for r in visit.items))
        ident = self._who(cam, visit.started_wall_ts, visit.ended_wall_ts)
        record = MilkCheck(
            record_id=stable_id("milk_check", cam.id, visit.visit_id),
            camera_id=cam.id, result=result, confidence=round(confidence, 4),
            stamp=self._stamp(), model=MILK_MODEL,
            model_version=str(visit.items[-1].details.get("model_version", "")),
            animal_id=ident.animal_id if ident else None, quarter=cam.quarter,
            scores=scores,
            details={"frames": len(visit.items), "visit_id": visit.visit_id,
                     "patch_found": any(r.details.get("patch_found", True)
                                        for r in visit.items),
                     "started_wall_ts": visit.started_wall_ts,
                     "ended_wall_ts": visit.ended_wall_ts,
                     "identification": ident.record_id if ident else None})
        log.info("sample %s on %s: milk %s (%.2f) cow %s", visit.visit_id, cam.id, result,
                 confidence, record.animal_id or "-")
        return record

    def _body_condition(self, visit: Visit[BcsEstimate], cam: CameraConfig) -> BodyCondition:
        est = pool(visit.items)
        ident = self._who(cam, visit.started_wall_ts, visit.ended_wall_ts)
        record = BodyCondition(
            record_id=stable_id("body_condition", cam.id, visit.visit_id),
            camera_id=cam.id, visit_id=visit.visit_id, bcs=est.bcs, low=est.low,
            high=est.high, quality=round(est.quality, 3), stamp=self._stamp(),
            model=BCS_MODEL, model_version=est.model_version, frames=len(visit.items),
            animal_id=ident.animal_id if ident else None,
            details={"raw": round(est.raw, 3), "rear": est.rear,
                     "started_wall_ts": visit.started_wall_ts,
                     "ended_wall_ts": visit.ended_wall_ts,
                     "identification": ident.record_id if ident else None,
                     "tag_number": ident.tag_number if ident else None})
        log.info("visit %s on %s: BCS %.2f (%.2f-%.2f) cow %s", visit.visit_id, cam.id,
                 record.bcs, record.low, record.high, record.animal_id or "-")
        return record

    def _who(self, cam: CameraConfig, start: float, end: float) -> _Who | None:
        """The cow at the camera's station closest in time to the visit: an
        identified ear-tag visit, else an RFID read found in the herd register."""
        if cam.station is None:
            return None
        window = self._join_window(cam)
        best: tuple[float, _Who] | None = None
        for ident in self._idents.get(cam.station, ()):
            gap = max(0.0, ident.started_wall_ts - end, start - ident.ended_wall_ts)
            if gap <= window and (best is None or gap < best[0]):
                best = (gap, _Who(ident.animal_id, ident.tag_number, ident.record_id))
        if best is None and self.register is not None:
            for wall_ts, eid in list(self._station_reads.get(cam.station, ())):
                gap = max(0.0, wall_ts - end, start - wall_ts)
                animal = self.register.by_eid(eid)
                if animal is not None and gap <= window and (best is None or gap < best[0]):
                    best = (gap, _Who(animal.animal_id, animal.tag_number,
                                      f"rfid:{animal.eid or eid}"))
        return best[1] if best else None

    def _camera(self, camera_id: str) -> CameraConfig:
        return next(c for c in self.config.cameras if c.id == camera_id)

    def _empty(self, camera_id: str, frame: Frame) -> None:
        """The presence gate sees the empty scene: the cow in view has gone."""
        tracker = self.trackers.get(camera_id)
        if tracker is not None:
            self._emit(tracker.end_visit(frame.mono_ns))
        if camera_id in self.pools:
            self._visits_done(camera_id, self.pools[camera_id].end())
        if camera_id in self.milk_pools:
            self._visits_done(camera_id, self.milk_pools[camera_id].end())

    def _tick(self) -> None:
        self._drain_rfid()
        now = self.clock.monotonic_ns()
        for tracker in self.trackers.values():
            self._emit(tracker.tick(now))
        for camera_id, bcs_pool in self.pools.items():
            self._visits_done(camera_id, bcs_pool.tick(now))
        for camera_id, milk_pool in self.milk_pools.items():
            self._visits_done(camera_id, milk_pool.tick(now))
        self._flush_pending(now)

    async def watch(self, stop: asyncio.Event) -> None:
        """Hot-load new model versions in every registry until ``stop``."""
        await asyncio.gather(*(r.watch(stop) for r in self.registries))

    def _drain_rfid(self) -> None:
        while True:
            try:
                reading = self._rfid.get_nowait()
            except queue.Empty:
                return
            eid = reading.attributes.get("eid")
            tracker = self.trackers.get(self._stations.get(reading.sensor_id, ""))
            if tracker is not None and eid:
                self._emit(tracker.note_rfid(str(eid), reading.stamp.mono_ns,
                                             reading.stamp.wall_ts))

    def _current_reader(self) -> EartagReader | None:
        """The reader on the registry's active runners (a hot-loaded version is
        picked up at the next frame)."""
        runners = runners_from_registry(self.registry)
        if runners is None:
            return None
        det, rec = runners
        if self._reader is None:
            self._reader = EartagReader(det, rec, self.config.vision.eartag.tag_pattern)
        else:
            self._reader.det, self._reader.rec = det, rec
        return self._reader

    def _emit(self, results: list[VisitResult]) -> None:
        for result in results:
            ident = result.identification
            if ident.status != "identified":
                self.review.save(ident, result.crops)
                attach_crop(ident, result.crops[0] if result.crops else None, self.budget)
            log.info("visit %s on %s: %s %s (%.2f)", ident.visit_id, ident.camera_id,
                     ident.status, ident.tag_number or "-", ident.confidence)
            if ident.status == "identified" and ident.station:
                self._idents.setdefault(ident.station, deque(maxlen=IDENT_KEEP)).append(ident)
            self._submit(ident)

    # -- status -------------------------------------------------------------------
    def camera_status(self) -> list[dict[str, Any]]:
        stats = self.scheduler.stats() if self.enabled else {}
        out = []
        for worker in self.workers:
            st = worker.status().to_dict()
            st["scheduler"] = stats.get(worker.id, {})
            problem = self.preprocessors[worker.id].problem
            if problem:
                st["calibration_problem"] = problem
            if worker.id in self.static:
                st["static_text_dropped"] = self.static[worker.id].dropped
            out.append(st)
        return out

    def model_status(self) -> dict[str, dict[str, Any]]:
        if not self.enabled:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for registry in self.registries:
            out.update(registry.status())
        return out


@dataclass(frozen=True)
class _Who:
    """The cow a BCS or milk visit is joined to, and by what."""

    animal_id: str | None
    tag_number: str | None
    record_id: str  # the identification's record id, or rfid:EID


def _int_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    return round(x), round(y), max(1, round(w)), max(1, round(h))
