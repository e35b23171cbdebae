#!/usr/bin/env python3
"""Train the window forecaster and export it as an int8 TFLite model.

Training-only dependency: TensorFlow (never needed at runtime; the agent runs
the .tflite with ai-edge-litert). Use a separate environment:

    python3 -m venv build/train-venv
    build/train-venv/bin/pip install tensorflow-cpu
    build/train-venv/bin/python scripts/train_forecaster.py

Data: synthetic series only (daily/weekly seasonality, trends, random walks,
steps, spikes, bursty counts, square waves, noise), never the NAB files. Each
example is a window of WINDOW values normalised by the window's median and
robust scale (the same normalisation as ``agent.detect.anomaly.forecast``);
the target is the next value, normalised the same way and clipped.

Writes models/forecaster_w32.tflite and updates models/manifest.json.
Everything is seeded, so a rerun gives the same weights on the same TF build.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.detect.anomaly.forecast import CLIP, WINDOW, normalise_window
from agent.models.manifest import selftest_name, upsert_entry
from agent.models.selftest import write_self_test

SEED = 20240401
NAME = "forecaster_w32"
VERSION = "1.0.0"
N_SERIES = 600
SERIES_LEN = 1200


def synth_series(rng: np.random.Generator, n: int) -> np.ndarray:
    """One random synthetic sensor-like series."""
    t = np.arange(n, dtype=np.float64)
    kind = rng.integers(0, 6)
    period = float(rng.choice([24, 48, 96, 144, 288]))
    level = rng.normal(0, 10)
    amp = abs(rng.normal(1, 1))
    noise = abs(rng.normal(0.2, 0.2)) + 1e-3
    if kind == 0:  # smooth seasonal
        y = level + amp * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
    elif kind == 1:  # square-ish seasonal
        y = level + amp * np.sign(np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3)))
    elif kind == 2:  # random walk
        y = level + np.cumsum(rng.normal(0, noise, n))
    elif kind == 3:  # AR(1)
        phi = rng.uniform(0.5, 0.99)
        e = rng.normal(0, noise, n)
        y = np.empty(n)
        y[0] = level
        for i in range(1, n):
            y[i] = level + phi * (y[i - 1] - level) + e[i]
    elif kind == 4:  # bursty counts
        lam = np.exp(rng.normal(1.5, 1.0)) * (1.2 + np.sin(2 * np.pi * t / period))
        y = rng.poisson(lam).astype(np.float64)
    else:  # trend + seasonal
        y = level + rng.normal(0, 0.01) * t + amp * np.sin(2 * np.pi * t / period)
    y = y + rng.normal(0, noise, n)
    # Occasional steps and spikes so the model sees (and does not chase) them.
    for _ in range(rng.integers(0, 3)):
        i = rng.integers(0, n)
        y[i:] += rng.normal(0, 3 * amp + 1)
    for _ in range(rng.integers(0, 6)):
        y[rng.integers(0, n)] += rng.normal(0, 6 * amp + 2)
    return y


def make_dataset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _ in range(N_SERIES):
        y = synth_series(rng, SERIES_LEN)
        for i in range(WINDOW, SERIES_LEN, 3):
            w = y[i - WINDOW : i]
            norm, med, scale = normalise_window(list(w))
            xs.append(norm)
            ys.append(float(np.clip((y[i] - med) / scale, -CLIP, CLIP)))
    return np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32)[:, None]


def main() -> int:
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    tf.keras.utils.set_random_seed(SEED)
    x, y = make_dataset(rng)
    idx = rng.permutation(len(x))
    x, y = x[idx], y[idx]
    n_val = len(x) // 10
    x_val, y_val, x_tr, y_tr = x[:n_val], y[:n_val], x[n_val:], y[n_val:]

    model = tf.keras.Sequential([
        tf.keras.layers.Input(shape=(WINDOW,), name="window"),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(1, name="next"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(2e-3), loss=tf.keras.losses.Huber())
    model.fit(x_tr, y_tr, epochs=6, batch_size=512, validation_data=(x_val, y_val), verbose=2)

    def representative():
        for i in range(0, 2000, 10):
            yield [x_tr[i : i + 10]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    blob = conv.convert()

    out_dir = ROOT / "models"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{NAME}.tflite"
    path.write_bytes(blob)

    # Metrics of the int8 model on the held-out synthetic windows.
    interp = tf.lite.Interpreter(model_content=blob)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    preds = []
    for row in x_val[:5000]:
        q = np.clip(np.round(row / s_in + z_in), -128, 127).astype(np.int8)[None, :]
        interp.set_tensor(inp["index"], q)
        interp.invoke()
        preds.append((float(interp.get_tensor(out["index"])[0, 0]) - z_out) * s_out)
    p = np.asarray(preds)
    t = y_val[:5000, 0]
    mae_int8 = float(np.mean(np.abs(p - t)))
    mae_last = float(np.mean(np.abs(x_val[:5000, -1] - t)))  # naive: repeat last value
    mae_float = float(np.mean(np.abs(model.predict(x_val[:5000], verbose=0)[:, 0] - t)))

    # Self-test bundled with the model: eight held-out windows and what this
    # int8 build answers. The agent refuses a build (and keeps the one it
    # runs) whose answers differ by more than one int8 step.
    q_test = np.clip(np.round(x_val[:8] / s_in + z_in), -128, 127).astype(np.int8)
    interp.resize_tensor_input(inp["index"], list(q_test.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], q_test)
    interp.invoke()
    selftest = selftest_name(NAME, VERSION)
    write_self_test(out_dir / selftest, [q_test], [interp.get_tensor(out["index"])])

    entry = upsert_entry(out_dir, {
        "name": NAME,
        "task": "one-step forecast of a robustly normalised window (anomaly channel)",
        "version": VERSION,
        "runtime": "litert",
        "file": path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        "inputs": [{"name": "window", "dtype": "int8", "shape": [-1, WINDOW],
                    "quantization": {"scale": float(s_in), "zero_point": int(z_in)},
                    "meaning": "last WINDOW values, (x - median) / robust scale, clipped"}],
        "outputs": [{"name": "next", "dtype": "int8", "shape": [-1, 1],
                     "quantization": {"scale": float(s_out), "zero_point": int(z_out)},
                     "meaning": "next value in the same normalised units"}],
        "quantization": "int8 full (weights and activations, int8 input and output)",
        "labels": None,
        "licence": "Apache-2.0",
        "source": "built by scripts/train_forecaster.py (this project)",
        "training": {
            "script": "scripts/train_forecaster.py",
            "seed": SEED,
            "data": f"synthetic only: {N_SERIES} series x {SERIES_LEN} points (seasonal, square, "
                    "random walk, AR(1), Poisson counts, trend; steps and spikes injected)",
            "tensorflow": tf.__version__,
        },
        "metrics": {
            "val_windows": int(min(5000, n_val)),
            "mae_int8": round(mae_int8, 4),
            "mae_float": round(mae_float, 4),
            "mae_naive_last_value": round(mae_last, 4),
        },
        "self_test": {"file": selftest, "atol": 1.0},
    })
    print(json.dumps(entry.metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
