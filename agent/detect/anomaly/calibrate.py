"""Turn raw deviations into one score in [0, 1] that means the same everywhere.

Six robust sigmas are routine on a bursty counter and alarming on a tank
thermometer, so each deviation channel (level, step, seasonal, ...) is
compared with its own recent history: ``excess`` is the deviation over the
largest deviation of that channel in the last ``window`` readings (floored at
``floor_z``). The channels' excesses are combined by their maximum and mapped
to [0, 1] by ``excess / (1 + excess)``: 0.5 means "as unusual as the most
unusual reading of the recent past", which is what staff want to hear about.

A deviation that persists (a level shift, a stuck sensor) should alarm once,
not for every reading until the baseline catches up: a channel that does not
beat its own largest value of the last ``refractory`` readings by ``margin``
has its excess damped by ``damp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.detect.anomaly.robust import SlidingMax


@dataclass(frozen=True)
class CalibratorConfig:
    window: int = 4096  # readings a channel's reference maximum spans
    floor_z: float = 4.0  # reference never below this many robust sigmas
    refractory: int = 100  # readings a past deviation suppresses repeats for
    margin: float = 1.0  # must beat the recent maximum by this factor
    damp: float = 0.5  # excess multiplier for a repeat
    min_history: int = 8  # readings of a channel before its reference is used
    decay: float = 0.0  # if > 0: reference is a max decaying by this factor per reading


class Calibrator:
    """Online (raw channel deviations) -> [0, 1] with bounded memory."""

    def __init__(self, channels: int, config: CalibratorConfig | None = None) -> None:
        self.config = cfg = config or CalibratorConfig()
        self.channels = channels
        self.ref = [SlidingMax(cfg.window) for _ in range(channels)]
        self.recent = [SlidingMax(cfg.refractory) for _ in range(channels)]
        self.dmax = [0.0] * channels
        self.n = 0

    def update(self, raws: list[float]) -> float:
        # The hot loop of every reading: SlidingMax.max/add inlined (same
        # arithmetic, same results), attributes read once.
        cfg = self.config
        floor_z, margin, damp, decay = cfg.floor_z, cfg.margin, cfg.damp, cfg.decay
        use_ref = self.n >= cfg.min_history
        best = 0.0
        refs, recents, dmax = self.ref, self.recent, self.dmax
        for c, r in enumerate(raws):
            ref = floor_z
            if use_ref:
                if decay > 0:
                    ref = max(ref, dmax[c])
                else:
                    q = refs[c]._q
                    if q and q[0][1] > ref:
                        ref = q[0][1]
            e = r / ref
            rq = recents[c]._q
            if r <= (rq[0][1] if rq else 0.0) * margin:
                e *= damp
            best = max(best, e)
            if decay > 0:
                d = dmax[c] * decay
                dmax[c] = max(d, r)
            else:
                refs[c].add(r)
            recents[c].add(r)
        self.n += 1
        return best / (1.0 + best)

    def to_state(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "dmax": list(self.dmax),
            "ref": [m.to_state() for m in self.ref],
            "recent": [m.to_state() for m in self.recent],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], config: CalibratorConfig) -> Calibrator:
        cal = cls(len(state["ref"]), config)
        cal.n = int(state["n"])
        cal.dmax = [float(v) for v in state["dmax"]]
        cal.ref = [SlidingMax.from_state(s) for s in state["ref"]]
        cal.recent = [SlidingMax.from_state(s) for s in state["recent"]]
        return cal
