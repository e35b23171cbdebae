"""A generated exit lane seen from above, as a camera: for the demo and tests.

Cows of the herd register walk under the camera one at a time, each with her
own body (drawn from her animal id, so she looks the same every pass) and her
own body condition score (drawn once per cow, 2.25-4.0), with an empty lane
between them so the presence gate ends each visit. Each pass has its own look
(light, floor, bars) from the generator's training ranges. Frames are
rendered on the camera thread (about 0.1 s each at 720 x 600), paced at
``cfg.fps_cap``. ``shown`` keeps, per pass, which cow and score was shown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import deque
from pathlib import Path

import numpy as np

from agent.clock import Clock, SystemClock
from agent.config.model import CameraConfig
from agent.sources.camera.base import CameraError, Pacer
from agent.sources.camera.synth.topview import CowBody, render, sample_body, sample_look
from agent.sources.camera.synthetic import DEFAULT_HERD, DEFAULT_SEED, load_herd

KEEP = 10_000  # passes remembered for tests (bounded)
EMPTY_FRAMES = 4  # frames of empty lane between cows


@dataclasses.dataclass(frozen=True)
class Shown:
    animal_id: str
    bcs: float
    first_frame: int
    last_frame: int


class SyntheticTopViewSource:
    """Generated top-view frames. Implements the FrameSource protocol."""

    def __init__(self, cfg: CameraConfig, *, herd: Path | None = None,
                 clock: Clock | None = None, paced: bool = True, frames_per_pass: int = 5
                 ) -> None:
        self._cfg = cfg
        self._herd_path = herd or DEFAULT_HERD
        self._clock = clock or SystemClock()
        self._paced = paced
        self._per_pass = max(2, frames_per_pass)
        self.width = cfg.width or 720
        self.height = cfg.height or 600
        self.shown: deque[Shown] = deque(maxlen=KEEP)
        self.source_ts: float | None = None
        self._open = False
        self._pacer = Pacer(self._clock)

    @property
    def nominal_fps(self) -> float | None:
        return self._cfg.fps_cap

    def open(self) -> None:
        uri = self._cfg.uri.strip()
        try:
            seed = int(uri) if uri else DEFAULT_SEED
        except ValueError:
            raise CameraError(f"camera {self._cfg.id}: a synthetic camera's uri is its seed, "
                              f"a whole number (or empty); got {uri!r}") from None
        self._rng = np.random.default_rng(seed)
        self._herd = load_herd(self._herd_path)
        self._index = 0
        self._pass: list[np.ndarray] = []
        self._open = True

    @staticmethod
    def _cow(animal_id: str) -> tuple[CowBody, float]:
        """The same body and score for the same cow, every pass."""
        digest = int.from_bytes(hashlib.sha256(animal_id.encode()).digest()[:8], "big")
        rng = np.random.default_rng(digest)
        return sample_body(rng), float(rng.choice(np.arange(2.25, 4.25, 0.25)))

    def _next_pass(self) -> None:
        entry = self._herd[int(self._rng.integers(len(self._herd)))]
        body, bcs = self._cow(entry.animal_id)
        look = sample_look(self._rng, "train")
        # The cow walks along her heading through the middle of the frame.
        rad = math.radians(look.heading_deg)
        frames = []
        for k in range(self._per_pass):
            step = (k / (self._per_pass - 1) - 0.5) * 0.5  # metres either side of centre
            moved = dataclasses.replace(look, offset_x=look.offset_x + step * math.cos(rad),
                                        offset_y=look.offset_y + step * math.sin(rad))
            frames.append(render(body, bcs, moved, width=self.width, height=self.height,
                                 rng=self._rng).colour)
        # The same lane, light and floor with the cow gone: what lies between cows.
        gone = dataclasses.replace(look, offset_x=look.offset_x + 40.0)
        empty = render(body, bcs, gone, width=self.width, height=self.height,
                       rng=self._rng).colour
        first = self._index + EMPTY_FRAMES
        self.shown.append(Shown(entry.animal_id, bcs, first, first + len(frames) - 1))
        self._pass = [empty] * EMPTY_FRAMES + frames

    def read(self) -> np.ndarray | None:
        if not self._open:
            raise CameraError(f"camera {self._cfg.id}: read() before open()")
        self._pace()
        if not self._pass:
            self._next_pass()
        frame = self._pass.pop(0)
        self.source_ts = self._index / self._cfg.fps_cap
        self._index += 1
        return frame

    def _pace(self) -> None:
        if not self._paced:
            return
        self._pacer.wait(self._cfg.fps_cap)

    def close(self) -> None:
        self._open = False
        self._pass = []
