"""A generated walk-through lane, as a camera: for the demo and for tests.

Cows from the herd register walk across the frame one at a time (a few
seconds each, left to right), with empty lane between them so the presence
gate has frames to skip. Each cow's tag can be read in several frames as she
passes; now and then she turns it away for part of the pass. Two cows per
pass through the herd carry numbers that are not in the register, so the
demo shows a flagged visit.

``cfg.uri`` is the seed ('' means a fixed default); frames are ``cfg.width`` x
``cfg.height`` (1280 x 720 by default) and come at ``cfg.fps_cap``, paced on
the monotonic clock like a replay. What was shown is kept for tests in
``truth`` (one entry per frame) and ``visits`` (one per cow).
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.clock import Clock, SystemClock
from agent.config.model import BUNDLED, CameraConfig
from agent.sources.camera.base import CameraError, Pacer
from agent.sources.camera.synth.lane import Lane, Sprite, build_lane, compose, cow_sprites

DEFAULT_SEED = 20261202
DEFAULT_HERD = BUNDLED / "examples" / "herd.csv"
TRUTH_KEEP = 100_000  # frames of ground truth kept (bounded: the demo runs for days)
STRANGERS_PER_PASS = 2


@dataclass(frozen=True)
class HerdEntry:
    animal_id: str
    tag_number: str
    eid: str


def load_herd(path: Path) -> list[HerdEntry]:
    """Read a herd register CSV (animal_id, tag_number, eid)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise CameraError(f"synthetic camera: cannot read herd register {path}: {err}") from err
    need = {"animal_id", "tag_number", "eid"}
    if not rows or not need <= set(rows[0]):
        raise CameraError(f"synthetic camera: {path} needs a header with columns "
                          "animal_id,tag_number,eid and at least one cow")
    return [HerdEntry(r["animal_id"].strip(), r["tag_number"].strip(), r["eid"].strip())
            for r in rows]


@dataclass(frozen=True)
class ShownTag:
    number: str
    box: tuple[int, int, int, int]  # tag body in frame pixels (clipped)
    readable: bool  # facing the camera, wholly in frame, legible by design


@dataclass(frozen=True)
class FrameTruth:
    index: int
    cow: str | None  # number of the cow in view (even if her tag cannot be read)
    tags: tuple[ShownTag, ...]

    @property
    def numbers(self) -> tuple[str, ...]:
        """Numbers a reader should be able to read in this frame."""
        return tuple(t.number for t in self.tags if t.readable)


@dataclass
class Visit:
    number: str
    eid: str | None  # None for a stranger (not in the register)
    in_herd: bool
    first_frame: int
    last_frame: int


@dataclass
class _Pass:
    """The cow now crossing (or about to): her sprites and her timetable."""

    visit: Visit
    sprites: tuple[Sprite, Sprite]
    turned: range  # frames (relative to her first) with the tag turned away
    y: int


class SyntheticSource:
    """Generated lane frames. Implements the FrameSource protocol."""

    def __init__(self, cfg: CameraConfig, *, herd: Path | None = None,
                 clock: Clock | None = None, paced: bool = True) -> None:
        self._cfg = cfg
        self._herd_path = herd or DEFAULT_HERD
        self._clock = clock or SystemClock()
        self._paced = paced
        self.width = cfg.width or 1280
        self.height = cfg.height or 720
        self.truth: deque[FrameTruth] = deque(maxlen=TRUTH_KEEP)
        self.visits: deque[Visit] = deque(maxlen=TRUTH_KEEP)
        self.source_ts: float | None = None
        self._lane: Lane | None = None
        self._index = 0
        self._pacer = Pacer(self._clock)

    @property
    def nominal_fps(self) -> float | None:
        return self._cfg.fps_cap

    def _seed(self) -> int:
        uri = self._cfg.uri.strip()
        if not uri:
            return DEFAULT_SEED
        try:
            return int(uri)
        except ValueError:
            raise CameraError(f"camera {self._cfg.id}: a synthetic camera's uri is its seed, "
                              f"a whole number (or empty); got {uri!r}") from None

    def open(self) -> None:
        seed = self._seed()
        herd = load_herd(self._herd_path)
        self._rng = np.random.default_rng(seed)
        self._lane = build_lane(self._rng, self.width, self.height)
        self._order = self._cows(herd)
        self._index = 0
        self._pacer.reset()
        self.truth.clear()
        self.visits.clear()
        self._current: _Pass | None = None
        self._plan_next(0)

    def _cows(self, herd: list[HerdEntry]) -> Iterator[tuple[str, str | None]]:
        """Cows in walking order, forever: the herd shuffled each pass, with a
        stranger early in every pass (so a demo shows one soon) and one later."""
        known = {h.tag_number for h in herd}
        strangers: list[str] = []
        while len(strangers) < STRANGERS_PER_PASS:
            n = str(int(self._rng.integers(3000, 10000)))
            if n not in known and n not in strangers:
                strangers.append(n)
        while True:
            order: list[tuple[str, str | None]] = [
                (herd[i].tag_number, herd[i].eid) for i in self._rng.permutation(len(herd))]
            order.insert(1, (strangers[0], None))
            order.insert(int(self._rng.integers(3, len(order) + 1)), (strangers[1], None))
            yield from order

    def _plan_next(self, now: int) -> None:
        """Draw the next cow (the costly part: her sprites) as soon as the lane is
        empty; she enters after an empty gap of a few seconds."""
        number, eid = next(self._order)
        fps = self._cfg.fps_cap
        cross = max(6, round(float(self._rng.uniform(3.0, 5.0)) * fps))
        gap = max(2, round(float(self._rng.uniform(1.5, 3.5)) * fps))
        turned = range(0)
        if self._rng.random() < 0.4:
            a = int(self._rng.integers(0, cross))
            turned = range(a, min(cross, a + max(1, cross // 4)))
        first = now + gap
        visit = Visit(number, eid, eid is not None, first, first + cross - 1)
        sprites = cow_sprites(self._rng, number, self.height)
        y = int(self.height * 0.12 + self._rng.uniform(-0.04, 0.04) * self.height)
        self._current = _Pass(visit, sprites, turned, y)
        self.visits.append(visit)

    def read(self) -> np.ndarray | None:
        if self._lane is None:
            raise CameraError(f"camera {self._cfg.id}: read() before open()")
        self._pace()
        cur = self._current
        assert cur is not None
        k = self._index - cur.visit.first_frame
        n = cur.visit.last_frame - cur.visit.first_frame + 1
        sprite: Sprite | None = None
        shown: tuple[ShownTag, ...] = ()
        cow: str | None = None
        x = 0
        if 0 <= k < n:
            sprite = cur.sprites[1 if k in cur.turned else 0]
            sw = sprite.image.shape[1]
            x = int(-sw + (self.width + sw) * (k + 0.5) / n)
            cow = cur.visit.number
            bx, by, bw, bh = sprite.tag_box
            fx, fy = bx + x, by + cur.y
            inside = fx >= 0 and fy >= 0 and fx + bw <= self.width and fy + bh <= self.height
            cx0, cy0 = max(0, fx), max(0, fy)
            cx1, cy1 = min(self.width, fx + bw), min(self.height, fy + bh)
            if cx1 > cx0 and cy1 > cy0:
                shown = (ShownTag(cow, (cx0, cy0, cx1 - cx0, cy1 - cy0),
                                  inside and sprite.readable),)
        frame = compose(self._lane, sprite, x, cur.y, self._index)
        self.truth.append(FrameTruth(self._index, cow, shown))
        self.source_ts = self._index / self._cfg.fps_cap
        self._index += 1
        if self._index > cur.visit.last_frame:
            self._plan_next(self._index)
        return frame

    def _pace(self) -> None:
        if not self._paced:
            return
        self._pacer.wait(self._cfg.fps_cap)

    def close(self) -> None:
        self._lane = None
