#!/usr/bin/env python3
"""Per-reading CPU time and memory per sensor of the anomaly engine.

    .venv/bin/python scripts/bench_detect.py            # default detector set
    .venv/bin/python scripts/bench_detect.py --model    # plus the int8 TFLite channel
    .venv/bin/python scripts/bench_detect.py --no-context  # without the context channel
    .venv/bin/python scripts/bench_detect.py --cad      # context crossing instead (cad.py)
    .venv/bin/python scripts/bench_detect.py --cad-ose  # CAD OSE (cad_ose.py), daemon settings
    .venv/bin/python scripts/bench_detect.py --seq-lik  # sequence likelihood (seq_lik.py), daemon settings

CPU time is process CPU time (time.process_time) for scoring N readings of
one stream after its windows are full, divided by N; run it pinned to one
core (``taskset -c 0``) for a one-core figure. Memory per sensor is what
tracemalloc sees allocated by 100 detectors with full windows, divided by
100, plus the size of one persisted state (JSON) for the SQLite estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.detect.anomaly.context import ContextConfig
from agent.detect.anomaly.detector import DetectorConfig, SensorDetector
from agent.detect.anomaly.engine import AnomalyEngine, DetectorKind


def _stream(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [
        (1.7e9 + 300.0 * i, 4 + 2 * math.sin(i / 45.8) + rng.gauss(0, 0.3)
         + (15 if rng.random() < 0.002 else 0))
        for i in range(n)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", action="store_true", help="enable the TFLite forecaster channel")
    ap.add_argument("--no-context", action="store_true", help="disable the context channel")
    ap.add_argument("--cad", action="store_true", help="context channel in crossing mode")
    ap.add_argument("--cad-ose", action="store_true",
                    help="CAD OSE as the daemon runs it (firmware range, capped memory)")
    ap.add_argument("--seq-lik", action="store_true",
                    help="the sequence likelihood detector as the daemon runs it")
    ap.add_argument("--readings", type=int, default=50_000)
    args = ap.parse_args()
    if args.cad_ose:
        return _bench_cad_ose(args.readings)
    if args.seq_lik:
        return _bench_seq_lik(args.readings)
    cfg = DetectorConfig(w_model=1.0 if args.model else 0.0,
                         w_ctx=0.0 if args.no_context else DetectorConfig().w_ctx,
                         context=ContextConfig(mode="cad" if args.cad else "kgram"))

    warm = cfg.window + 8192  # every window and calibrator reference full
    data = _stream(warm + args.readings, 1)
    det = SensorDetector(cfg)
    for ts, v in data[:warm]:
        det.update(ts, v)
    t0 = time.process_time()
    for ts, v in data[warm:]:
        det.update(ts, v)
    per_reading_us = (time.process_time() - t0) / args.readings * 1e6

    # Through the engine (dict lookup + dirty tracking), 50 streams interleaved.
    eng = AnomalyEngine(cfg)
    keys = [(f"s{i}", "m") for i in range(50)]
    for ts, v in data[:warm]:
        for k in keys[:1]:
            eng.score(k, ts, v)
    t0 = time.process_time()
    m = 0
    for ts, v in data[warm : warm + 20_000]:
        eng.score(keys[m % 50], ts, v)
        m += 1
    engine_us = (time.process_time() - t0) / m * 1e6

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    dets = []
    for _ in range(100):
        d = SensorDetector(cfg)
        for ts, v in data[: cfg.window + 200]:
            d.update(ts, v)
        dets.append(d)
    per_sensor = (tracemalloc.get_traced_memory()[0] - before) / 100
    tracemalloc.stop()
    state_bytes = len(json.dumps(det.to_state()))

    print(json.dumps({
        "detector_set": ("default + tflite forecaster" if args.model else "default")
        + (" - context channel" if args.no_context else "")
        + (" (context crossing)" if args.cad else ""),
        "readings": args.readings,
        "cpu_us_per_reading": round(per_reading_us, 2),
        "cpu_us_per_reading_via_engine_50_streams": round(engine_us, 2),
        "memory_bytes_per_sensor": int(per_sensor),
        "state_json_bytes_per_sensor": state_bytes,
        "python": sys.version.split()[0],
    }, indent=2))
    return 0


def _time_tank_stream(detector: DetectorKind, key: tuple[str, str], readings: int
                      ) -> tuple[list[tuple[float, float]], AnomalyEngine, float]:
    """A tank-like stream through the engine on the bulk tank firmware's range
    (-5..90 degC): 20,000 readings to fill every buffer, then ``readings``
    timed; the data, the engine and the process CPU per timed reading (µs)."""
    data = _stream(20_000 + readings, 1)
    eng = AnomalyEngine(detector=detector)
    for ts, v in data[:20_000]:
        eng.score(key, ts, v, value_range=(-5.0, 90.0))
    t0 = time.process_time()
    for ts, v in data[20_000:]:
        eng.score(key, ts, v, value_range=(-5.0, 90.0))
    return data, eng, (time.process_time() - t0) / readings * 1e6


def _bench_cad_ose(readings: int) -> int:
    """CAD OSE through the engine with the daemon's settings: a tank-like
    stream, the bulk tank firmware's valid range (-5..90 degC), memory capped
    at CAD_OSE_MAX_CONTEXTS. Memory is measured once the cap is reached."""
    from agent.detect.anomaly.engine import CAD_OSE_MAX_CONTEXTS

    key = ("tank", "milk_temp_c")
    _, eng, per_reading_us = _time_tank_stream("cad_ose", key, readings)
    # Worst case for memory: a noisy stream on a tight range fills the cap.
    rng = random.Random(2)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    noisy = AnomalyEngine(detector="cad_ose")
    n = 0
    while len(noisy._detectors.get(("n", "v"), None).cad.memory.contexts  # type: ignore[union-attr]
              if n else []) < CAD_OSE_MAX_CONTEXTS and n < 200_000:
        noisy.score(("n", "v"), float(n), rng.random(), value_range=(0.0, 1.0))
        n += 1
    full_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(json.dumps({
        "detector_set": "cad_ose (daemon: firmware range, memory capped)",
        "readings": readings,
        "cpu_us_per_reading_tank_stream": round(per_reading_us, 2),
        "contexts_tank_stream": len(eng._detectors[key].cad.memory.contexts),  # type: ignore[union-attr]
        "memory_bytes_per_sensor_at_cap": full_bytes,
        "readings_to_fill_cap_noisy_stream": n,
        "python": sys.version.split()[0],
    }, indent=2))
    return 0


def _bench_seq_lik(readings: int) -> int:
    """seq_lik through the engine with the daemon's settings (bulk tank range
    -5..90 degC, probation 750, rest 150), after 20,000 readings (every ring
    buffer full); memory: 100 streams after 10,000 readings of a noisy
    stream on a tight range (every transition bin used), state as JSON."""
    key = ("tank", "milk_temp_c")
    data, _, per_reading_us = _time_tank_stream("seq_lik", key, readings)
    learn = AnomalyEngine(detector="seq_lik")  # no range: learnt, bins remapped as it grows
    for ts, v in data[:20_000]:
        learn.score(key, ts, v)
    t0 = time.process_time()
    for ts, v in data[20_000:]:
        learn.score(key, ts, v)
    learn_us = (time.process_time() - t0) / readings * 1e6
    rng = random.Random(2)
    noisy = [rng.random() for _ in range(10_000)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    many = AnomalyEngine(detector="seq_lik")
    for i in range(100):
        for j, v in enumerate(noisy):
            many.score((f"s{i}", "v"), float(j), v, value_range=(0.0, 1.0))
    per_stream = (tracemalloc.get_traced_memory()[0] - before) / 100
    tracemalloc.stop()
    state = many.export_state(("s0", "v"))
    print(json.dumps({
        "detector_set": "seq_lik (daemon: firmware range, probation 750, rest 150)",
        "readings": readings,
        "cpu_us_per_reading_tank_stream": round(per_reading_us, 2),
        "cpu_us_per_reading_learnt_range": round(learn_us, 2),
        "memory_bytes_per_stream_noisy": int(per_stream),
        "state_json_bytes_per_stream": len(json.dumps(state)),
        "python": sys.version.split()[0],
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
