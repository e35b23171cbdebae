#!/usr/bin/env python3
"""Score variants of the seq_lik detector on the NAB development set, in process.

Each variant is a JSON object of ``SeqLikConfig`` fields, plus optionally
``"rest_div"`` (the rest after an alarm is NAB's probationary period divided
by this; the product uses 5), ``"range"`` (``"auto"`` or ``"learn"``) and
``"cad"``, a combination with CAD OSE (``cad_ose.CadOse``, run beside
seq_lik on the same range with NAB's rest, memory unbounded as offline):

* ``{"mode": "max"}``: the larger of the two detectors' reported scores, each
  with its own rest; ``{"mode": "softor"}``: 1 - (1 - a)(1 - b);
* ``{"mode": "joint", "level": L}``: one rest for both: a CAD OSE raw score
  of at least ``L`` is an alarm of the combined detector (reported as
  0.5 + 0.5 (raw - L) / (1 - L), exempt from the re-arm wait like a new
  extreme) and starts seq_lik's rest; seq_lik's own alarms as usual.

Every file is scored row by row as ``dairy-edge anomaly score`` does, then
scored with ../shared/tools/nab_score.py's own functions (same threshold
optimisation), for the three profiles and the four CV halves of
``nab_eval.py --cv``:

    .venv/bin/python scripts/seq_lik_sweep.py '{}' '{"bins": 32, "tolerance": 1}' \\
        '{"range": "learn", "learn_margin": 0}' '{"cad": {"mode": "joint", "level": 0.85}}'

The product configuration (``'{}'``) reproduces ``nab_eval.py --cv``.
Development experiments only (docs/anomaly.md); nothing here reads labels
except the scorer.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from nab_eval import cv_halves

from agent.detect.anomaly.cad_ose import BASE_THRESHOLD, CadOse
from agent.detect.anomaly.evaluate import input_files, read_series
from agent.detect.anomaly.seq_lik import SeqLik, SeqLikConfig

NAB = ROOT.parent / "shared" / "data" / "nab-dev"
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _scorer() -> Any:
    spec = importlib.util.spec_from_file_location("nab_score", ROOT.parent / "shared/tools/nab_score.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _score(job: tuple[str, str, dict[str, Any]]) -> tuple[str, list[str], list[float]]:
    src, key, variant = job
    variant = dict(variant)
    rest_div = float(variant.pop("rest_div", 5))
    value_range = variant.pop("range", "auto")
    series = read_series(Path(src))
    values = [p[1] for p in series.parsed if p is not None]
    probation = min(math.floor(0.15 * len(series.rows)), 750)
    rng = (min(values), max(values)) if value_range == "auto" else None
    cad = variant.pop("cad", None)
    det = SeqLik(rng, probation / rest_div, probation // 2, probation - probation // 2,
                 SeqLikConfig(**variant))
    if cad is None:
        scores = [det.score(p[1]) if p is not None else math.nan for p in series.parsed]
    else:
        combined = iter(_with_cad(det, CadOse(*(rng or (None, None)), probation / 5),
                                  values, cad))
        scores = [next(combined) if p is not None else math.nan for p in series.parsed]
    return key, [ts for ts, _ in series.rows], scores


def _with_cad(det: SeqLik, cad: CadOse, values: list[float], how: dict[str, Any]) -> list[float]:
    """seq_lik combined with CAD OSE (the ``"cad"`` variant key; module doc)."""
    mode = how["mode"]
    if mode in ("max", "softor"):
        out = []
        for v in values:
            a, b = det.score(v), cad.score(v)
            out.append(max(a, b) if mode == "max" else 1.0 - (1.0 - a) * (1.0 - b))
        return out
    if mode != "joint":
        raise ValueError(f"unknown cad mode {mode!r}")
    level = float(how.get("level", BASE_THRESHOLD))
    cfg, out = det.cfg, []
    for i, v in enumerate(values):
        # SeqLik.score with CAD OSE's raw score as a third source of alarms.
        if det.learn_range and not det.lo <= v <= det.hi:
            det._widen(v)
        o = det.likelihood.update(v, det.memory.step(det.bin(v)))
        if det.likelihood.n <= det.likelihood.probation:
            o = 0.0
        lo, hi = det.seen_lo, det.seen_hi
        spatial = hi > lo and (v > hi + (hi - lo) * cfg.spatial_tol
                               or v < lo - (hi - lo) * cfg.spatial_tol)
        det.seen_lo, det.seen_hi = min(lo, v), max(hi, v)
        if spatial:
            o = 1.0
        c = cad.raw(v)
        cad_alarm = i > 0 and c >= level
        if cad_alarm:
            o = max(o, 0.5 + 0.5 * (c - level) / (1.0 - level))
        calm = det.calm
        det.calm = calm + 1 if o < cfg.alarm else 0
        if det.quiet > 0:
            det.quiet -= 1
            out.append(0.0)
            continue
        if o >= cfg.alarm and not (spatial or cad_alarm) and calm < cfg.rearm * det.rest:
            out.append(0.0)
            continue
        if o >= cfg.alarm:
            det.quiet = det.rest
        out.append(min(max(o, 0.0), 1.0))
    return out


def main() -> int:
    variants = [json.loads(a) for a in sys.argv[1:]] or [{}]
    ns = _scorer()
    windows = json.loads((NAB / "labels/combined_windows.json").read_text())
    profiles = ns.load_profiles(str(NAB / "config/profiles.json"))
    files = [(str(src), rel.as_posix()) for src, rel in input_files(NAB / "data")]
    halves = cv_halves([Path(key) for _, key in files])
    with ProcessPoolExecutor() as pool:
        for variant in variants:
            prepared = {}
            for key, stamps, scores in pool.map(_score, [(s, k, variant) for s, k in files]):
                t = ns.to_seconds(stamps)
                wts = [(ns.stamp_seconds(str(a)), ns.stamp_seconds(str(b))) for a, b in windows[key]]
                prepared[key] = ns.prepare_file(key, stamps, ns.np.array(scores, dtype=float),
                                                ns.windows_to_rows(t, wts), ns.PROBATION_FRACTION)
            out = ns.evaluate(prepared, {p: profiles[p] for p in PROFILES}, None)["profiles"]
            ev = out["standard"]["event"]
            parts = [f"{p} {out[p]['score']:.2f}" for p in PROFILES]
            parts.append(f"windows {ev['tp_windows']}/{ev['tp_windows'] + ev['fn_windows']} "
                         f"fp-runs {ev['fp_runs']} precision {ev['precision']:.3f}")
            for half, keys in halves.items():
                sub = {k: prepared[k] for k in keys}
                r = ns.evaluate(sub, {"standard": profiles["standard"]}, None)["profiles"]
                parts.append(f"{half} {r['standard']['score']:.2f}")
            print(json.dumps(variant), " | ".join(parts), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
