"""One sensor's streaming anomaly detector.

Each reading goes through four robust deviation measures, all against the
stream's own bounded past:

* level       |x - median| / robust scale of the last ``window`` values
* step        the same for the first difference (jumps, spikes)
* seasonal    x against an EWMA baseline per time-of-day bucket (daily shape)
* volatility  log of a fast EWMA of |step| against its own history (a stuck
              sensor or a burst of noise)
* mean        an EWMA of x against its own history (slow sustained shifts)
* range       how far x leaves the [min, max] of the level window, beyond a
              tolerance of ``range_tol`` x that range ("spatial anomaly" as in
              Numenta's NAB detector: a value never seen recently)
* context     share of the reading's facts no learnt left context predicted
              (``context.py``, after CAD-OSE): familiar values in a new order

The largest deviation is the raw score. It is then calibrated against the
stream's own history of raw scores (``calibrate.Calibrator``): a reading is
anomalous when it is unusual *for this stream*, which lets one fixed
configuration serve a tank thermometer and a tweet counter alike.

Scoring a reading uses only earlier readings; the reading then joins the
history. State is plain lists and floats (``to_state``) so the runtime can
keep it in SQLite across restarts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.detect.anomaly.cad import CadContext
from agent.detect.anomaly.calibrate import Calibrator, CalibratorConfig
from agent.detect.anomaly.context import ContextChannel, ContextConfig
from agent.detect.anomaly.forecast import ForecastChannel, shared_runner
from agent.detect.anomaly.robust import RollingSorted

STATE_VERSION = 3  # 2: range channel (7 channels); 3: context channel (8 channels)
_TINY = 1e-9
RANGE_FLOOR = 200.0  # scale >= (max - min) / this: a flat past is not infinitely precise
CHANNELS = 8  # level, step, seasonal, volatility, mean, model, range, context
Z_CAP = 1000.0  # one absurd reading must not blind the calibrator for long


@dataclass(frozen=True)
class DetectorConfig:
    """The one configuration every stream gets (no per-stream tuning)."""

    window: int = 1024  # values kept for median/quantiles
    warmup: int = 100  # readings before any score above 0
    season_s: float = 86400.0  # seasonal period (one day)
    season_buckets: int = 48  # time-of-day buckets in one period
    season_alpha: float = 0.25  # EWMA weight of a bucket's newest value
    season_min_count: int = 2  # bucket visits before it is trusted
    vol_alpha: float = 0.3  # fast EWMA of |step|
    mean_alpha: float = 0.02  # EWMA of the value: sustained shifts
    w_level: float = 1.0
    w_step: float = 1.0
    w_season: float = 1.0
    w_vol: float = 0.0  # measured on NAB: adds more false alarms than hits
    w_mean: float = 1.0
    w_model: float = 0.0  # int8 TFLite forecaster channel; 0 = not loaded at all
    w_range: float = 1.0  # new-range ("spatial") channel
    range_tol: float = 0.05  # fraction of the window's range x may exceed it freely
    w_ctx: float = 1.0  # contextual sequence channel (context.py)
    ctx_warmup: int = 400  # readings the context memory learns before it votes
    context: ContextConfig = field(default_factory=ContextConfig)
    calibrator: CalibratorConfig = field(default_factory=CalibratorConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        d = dict(d)
        cal = CalibratorConfig(**d.pop("calibrator", {}))
        ctx = ContextConfig(**d.pop("context", {}))
        return cls(calibrator=cal, context=ctx, **d)


def _robust_z(x: float, win: RollingSorted) -> float:
    """|x - median| over a quantile-based scale, with floors so a flat past
    does not turn float noise into infinity."""
    # RollingSorted.quantile inlined (nearest rank): six lookups per channel
    # on every reading.
    s = win._sorted
    n1 = len(s) - 1
    med = s[int(0.5 * n1 + 0.5)]
    iqr = s[int(0.75 * n1 + 0.5)] - s[int(0.25 * n1 + 0.5)]
    spread = s[int(0.99 * n1 + 0.5)] - s[int(0.01 * n1 + 0.5)]
    full = s[n1] - s[0]
    scale = max(iqr / 1.349, spread / 20.0, full / RANGE_FLOOR, _TINY * (1.0 + abs(med)))
    return min(abs(x - med) / scale, Z_CAP)


def _range_excess(x: float, win: RollingSorted, tol: float) -> float:
    """How far x lies outside the window's [min, max], in units of
    ``tol`` x (max - min), after a free margin of one such unit; 0 inside."""
    lo, hi = win.quantile(0.0), win.quantile(1.0)
    unit = tol * max(hi - lo, _TINY * (1.0 + abs(hi) + abs(lo)))
    out = max(x - hi, lo - x) / unit - 1.0
    return min(out, Z_CAP) if out > 0.0 else 0.0


class SensorDetector:
    """Streaming detector for one (sensor, metric) stream."""

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = cfg = config or DetectorConfig()
        self.n = 0
        self.prev: float | None = None
        self.vol: float | None = None
        self.mean: float | None = None
        self.means = RollingSorted(cfg.window)
        self.forecast = ForecastChannel(shared_runner() if cfg.w_model > 0 else None)
        self.values = RollingSorted(cfg.window)
        self.steps = RollingSorted(cfg.window)
        self.resid = RollingSorted(cfg.window)
        self.vols = RollingSorted(cfg.window)
        self.season_mean = [0.0] * cfg.season_buckets
        self.season_count = [0] * cfg.season_buckets
        self.calibrator = Calibrator(CHANNELS, cfg.calibrator)
        self.context: ContextChannel | CadContext = (
            CadContext(cfg.context) if cfg.context.mode == "cad" else ContextChannel(cfg.context)
        )
        self.last_components: tuple[float, ...] = ()

    def update(self, ts: float, value: float) -> float:
        """Score ``value`` (taken at epoch second ``ts``) and learn from it.

        Returns a score in [0, 1]; non-finite values score 0 and are not learnt.
        """
        if not math.isfinite(value) or not math.isfinite(ts):
            return 0.0
        cfg = self.config
        x = float(value)
        prev = self.prev if self.prev is not None else x
        step = x - prev
        vol_new = abs(step) if self.vol is None else (
            cfg.vol_alpha * abs(step) + (1.0 - cfg.vol_alpha) * self.vol
        )
        lvol = math.log(vol_new + _TINY)
        mean_new = x if self.mean is None else self.mean + cfg.mean_alpha * (x - self.mean)
        b = int((ts % cfg.season_s) / cfg.season_s * cfg.season_buckets) % cfg.season_buckets
        seasonal_ok = self.season_count[b] >= cfg.season_min_count
        resid = x - self.season_mean[b] if seasonal_ok else 0.0

        ctx_dev: float | None = None
        if self.n >= cfg.warmup:
            z_level = _robust_z(x, self.values)
            z_step = _robust_z(step, self.steps)
            z_season = _robust_z(resid, self.resid) if seasonal_ok and len(self.resid) > 8 else 0.0
            z_vol = _robust_z(lvol, self.vols) if cfg.w_vol > 0 else 0.0
            z_mean = _robust_z(mean_new, self.means)
            z_model = self.forecast.deviation(x) if cfg.w_model > 0 else 0.0
            z_range = _range_excess(x, self.values, cfg.range_tol) if cfg.w_range > 0 else 0.0
            z_ctx = 0.0
            if cfg.w_ctx > 0:
                ctx_dev = self.context.deviation(x, self.values)
                z_ctx = ctx_dev if self.n >= cfg.ctx_warmup else 0.0
            self.last_components = (
                z_level, z_step, z_season, z_vol, z_mean, z_model, z_range, z_ctx
            )
            raws = [
                cfg.w_level * z_level,
                cfg.w_step * z_step,
                cfg.w_season * z_season,
                cfg.w_vol * z_vol,
                cfg.w_mean * z_mean,
                cfg.w_model * z_model,
                cfg.w_range * z_range,
                cfg.w_ctx * z_ctx,
            ]
        score = self.calibrator.update(raws) if self.n >= cfg.warmup else 0.0

        # Learn only after scoring: the score of row i uses rows 0..i-1 plus x.
        if cfg.w_ctx > 0:  # before x joins the window its bin was taken from
            self.context.learn(x, self.values, ctx_dev)
        self.values.add(x)
        if self.prev is not None:
            self.steps.add(step)
            if cfg.w_vol > 0:
                self.vols.add(lvol)
        if seasonal_ok:
            self.resid.add(resid)
        if self.season_count[b] == 0:
            self.season_mean[b] = x
        else:
            self.season_mean[b] += cfg.season_alpha * (x - self.season_mean[b])
        self.season_count[b] += 1
        self.prev = x
        self.vol = vol_new
        self.mean = mean_new
        self.means.add(mean_new)
        if cfg.w_model > 0:
            self.forecast.learn(x)
        self.n += 1
        return score

    # -- persistence ---------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot; ``from_state`` restores it exactly."""
        return {
            "version": STATE_VERSION,
            "config": self.config.to_dict(),
            "n": self.n,
            "prev": self.prev,
            "vol": self.vol,
            "mean": self.mean,
            "means": self.means.to_state(),
            "forecast": self.forecast.to_state(),
            "values": self.values.to_state(),
            "steps": self.steps.to_state(),
            "resid": self.resid.to_state(),
            "vols": self.vols.to_state(),
            "season_mean": list(self.season_mean),
            "season_count": list(self.season_count),
            "calibrator": self.calibrator.to_state(),
            "context": self.context.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SensorDetector:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported detector state version {state.get('version')!r}")
        det = cls(DetectorConfig.from_dict(state["config"]))
        det.n = int(state["n"])
        det.prev = state["prev"]
        det.vol = state["vol"]
        det.mean = state["mean"]
        det.means = RollingSorted.from_state(state["means"])
        det.forecast.load_state(state.get("forecast", {}))
        det.values = RollingSorted.from_state(state["values"])
        det.steps = RollingSorted.from_state(state["steps"])
        det.resid = RollingSorted.from_state(state["resid"])
        det.vols = RollingSorted.from_state(state["vols"])
        det.season_mean = [float(v) for v in state["season_mean"]]
        det.season_count = [int(v) for v in state["season_count"]]
        det.calibrator = Calibrator.from_state(state["calibrator"], det.config.calibrator)
        ctx_cls = CadContext if det.config.context.mode == "cad" else ContextChannel
        det.context = ctx_cls.from_state(state["context"], det.config.context)
        return det
