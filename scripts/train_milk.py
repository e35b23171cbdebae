#!/usr/bin/env python3
"""Train the milk classifier (``milk_cls``) on synthetic samples and ship it.

Data: ``agent.sources.camera.synth.milkcup`` with the ``train`` look only
(seeds 0.., never the held-out seeds >= 900000 or the held-out look). Every
image goes through the live code (``agent.vision.milk.classify.prepare``:
white balance from the card, find the milk, features); images where no milk
is found are left out of training and counted.

Model: a small MLP (features standardised, 32 ReLU units, softmax over
``agent.records.MILK_CLASSES``) trained with numpy (full-batch Adam, L2),
exported with the ``onnx`` package (dev extra; only this script imports it).
int8: onnxruntime static QDQ is built and measured against float32 on the dev
set (seeds 500000..) and at one thread; the faster one that keeps accuracy
is shipped, and the manifest's ``quantization`` says which and why.

Writes models/milk_cls.onnx, models/selftest/milk_cls-VERSION.npz and the
manifest entry. Seeded: a rerun gives the same model.

    .venv/bin/python scripts/train_milk.py            # about 4 minutes on 1 core
    .venv/bin/python scripts/train_milk.py --per-class 60 --out /tmp/m  # quick try
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.models.manifest import selftest_name, upsert_entry
from agent.models.selftest import write_self_test
from agent.records import MILK_CLASSES
from agent.sources.camera.synth.milkcup import MILK_TRAIN, render_milk, station_roi
from agent.vision.milk.classify import MODEL_NAME, prepare
from agent.vision.milk.features import FEATURE_NAMES
from agent.vision.preprocess import roi_rect

SEED = 20260801
VERSION = "1.1.0"
DEV_SEED0 = 500_000
HIDDEN = 32


AUG_SEED = 20260802


def augment(img: np.ndarray, label: dict, rng: np.random.Generator) -> np.ndarray:
    """A training frame seen differently, for shape and framing variety beyond the
    training look's cups (the look itself is unchanged): squashed along a random
    axis (a cup seen more obliquely, a narrower sight glass), sometimes turned a
    quarter, sometimes cropped to the station's region of interest (cup and card
    filling the frame, as with ``CameraConfig.roi``)."""
    if rng.random() < 0.35:
        x, y, w, h = roi_rect((img.shape[1], img.shape[0]),
                              station_roi(label, float(rng.uniform(0.05, 0.4))))
        img = img[y:y + h, x:x + w]
    f = float(rng.uniform(0.5, 0.9))
    h, w = img.shape[:2]
    size = (max(32, round(w * f)), h) if rng.random() < 0.5 else (w, max(32, round(h * f)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:
        img = cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    return np.ascontiguousarray(img)


def dataset(seed0: int, per_class: int, look=MILK_TRAIN, progress: str = "",
            augmented: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(features N x F, labels N, images where no milk was found); ``augmented``:
    each frame through ``augment`` (seeded by the frame) instead."""
    xs, ys, missed = [], [], 0
    for i in range(per_class):
        for c, cls in enumerate(MILK_CLASSES):
            img, label = render_milk(seed0 + i, cls, look)
            if augmented:
                img = augment(img, label, np.random.default_rng([AUG_SEED, seed0 + i, c]))
            prep = prepare(img)
            if prep.vector is None:
                missed += 1
                continue
            xs.append(prep.vector)
            ys.append(c)
        if progress and (i + 1) % 20 == 0:
            print(f"  {progress}: {i + 1}/{per_class} per class", file=sys.stderr, flush=True)
    return np.asarray(xs, np.float32), np.asarray(ys, np.int64), missed


def train_mlp(x: np.ndarray, y: np.ndarray, seed: int, epochs: int = 1500,
              l2: float = 1e-3, lr: float = 0.01) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-3
    z = (x - mean) / std
    k = len(MILK_CLASSES)
    params = {
        "w1": rng.normal(0, np.sqrt(2 / z.shape[1]), (z.shape[1], HIDDEN)),
        "b1": np.zeros(HIDDEN),
        "w2": rng.normal(0, np.sqrt(1 / HIDDEN), (HIDDEN, k)),
        "b2": np.zeros(k),
    }
    m = {n: np.zeros_like(v) for n, v in params.items()}
    v = {n: np.zeros_like(p) for n, p in params.items()}
    onehot = np.eye(k)[y]
    for t in range(1, epochs + 1):
        h_pre = z @ params["w1"] + params["b1"]
        h = np.maximum(h_pre, 0)
        logits = h @ params["w2"] + params["b2"]
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        d = (p - onehot) / len(z)
        grads = {"w2": h.T @ d + l2 * params["w2"], "b2": d.sum(axis=0)}
        dh = d @ params["w2"].T * (h_pre > 0)
        grads["w1"] = z.T @ dh + l2 * params["w1"]
        grads["b1"] = dh.sum(axis=0)
        for n in params:
            m[n] = 0.9 * m[n] + 0.1 * grads[n]
            v[n] = 0.999 * v[n] + 0.001 * grads[n] ** 2
            params[n] -= lr * (m[n] / (1 - 0.9 ** t)) / (np.sqrt(v[n] / (1 - 0.999 ** t)) + 1e-8)
    return {"mean": mean, "std": std, **{n: p.astype(np.float32) for n, p in params.items()}}


def export_onnx(params: dict[str, np.ndarray], path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f = len(FEATURE_NAMES)
    inits = [
        numpy_helper.from_array(params["mean"].astype(np.float32), "mean"),
        numpy_helper.from_array((1.0 / params["std"]).astype(np.float32), "inv_std"),
        numpy_helper.from_array(params["w1"], "w1"), numpy_helper.from_array(params["b1"], "b1"),
        numpy_helper.from_array(params["w2"], "w2"), numpy_helper.from_array(params["b2"], "b2"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_std"], ["z"]),
        helper.make_node("Gemm", ["z", "w1", "b1"], ["h_pre"]),
        helper.make_node("Relu", ["h_pre"], ["h"]),
        helper.make_node("Gemm", ["h", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "milk_cls",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", f])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", len(MILK_CLASSES)])],
        inits)
    model = helper.make_model(graph, producer_name="dairy-edge scripts/train_milk.py",
                              opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def quantize(src: Path, dst: Path, calib: np.ndarray) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"features": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def accuracy(sess, x: np.ndarray, y: np.ndarray) -> float:
    probs = sess.run(["probs"], {"features": x})[0]
    return float((probs.argmax(axis=1) == y).mean())


def p95_ms(sess, x: np.ndarray, calls: int = 2000) -> float:
    times = []
    for i in range(calls):
        row = x[i % len(x)][None]
        t0 = time.perf_counter()
        sess.run(["probs"], {"features": row})
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 95))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=200, help="training images per class")
    ap.add_argument("--dev-per-class", type=int, default=40, help="dev images per class")
    ap.add_argument("--augment", type=int, default=1, choices=[0, 1],
                    help="also train on each training frame squashed, turned or cropped to "
                    "its ROI (default 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "models",
                    help="models folder with manifest.json (default models/)")
    ap.add_argument("--metrics", type=Path,
                    help="JSON of held-out figures from scripts/eval_milk.py --json, to record")
    ap.add_argument("--cache", type=Path, default=None, metavar="DIR",
                    help="keep the computed features in DIR and reuse them (for trying "
                    "model changes; delete DIR after changing the generator or features)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    cache = args.cache / f"train-{args.per_class}-{args.dev_per_class}.npz" if args.cache else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            x, y, xd, yd = z["x"], z["y"], z["xd"], z["yd"]
            missed, missed_dev = int(z["missed"]), int(z["missed_dev"])
    else:
        x, y, missed = dataset(0, args.per_class, progress="train")
        xd, yd, missed_dev = dataset(DEV_SEED0, args.dev_per_class, progress="dev")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, x=x, y=y, xd=xd, yd=yd, missed=missed, missed_dev=missed_dev)
    n_plain = len(x)
    if args.augment:
        cache_aug = (args.cache / f"train-aug-{args.per_class}.npz" if args.cache else None)
        if cache_aug is not None and cache_aug.exists():
            with np.load(cache_aug) as z:
                xa, ya, missed_aug = z["x"], z["y"], int(z["missed"])
        else:
            xa, ya, missed_aug = dataset(0, args.per_class, progress="augmented", augmented=True)
            if cache_aug is not None:
                np.savez(cache_aug, x=xa, y=ya, missed=missed_aug)
        x, y, missed = np.concatenate([x, xa]), np.concatenate([y, ya]), missed + missed_aug
    print(f"features: train {len(x)} ({n_plain} as drawn; no milk found in {missed}), dev "
          f"{len(xd)} (no milk found in {missed_dev}), {time.time() - t0:.0f} s",
          file=sys.stderr)
    params = train_mlp(x, y, SEED)

    with tempfile.TemporaryDirectory() as tmp:
        f32, i8 = Path(tmp) / "f32.onnx", Path(tmp) / "i8.onnx"
        export_onnx(params, f32)
        quantize(f32, i8, x[np.random.default_rng(SEED).permutation(len(x))[:300]])
        s32, s8 = session(f32), session(i8)
        acc32, acc8 = accuracy(s32, xd, yd), accuracy(s8, xd, yd)
        ms32, ms8 = p95_ms(s32, xd), p95_ms(s8, xd)
        print(f"dev accuracy float32 {acc32:.4f} int8 {acc8:.4f}; p95 ms at 1 thread "
              f"float32 {ms32:.4f} int8 {ms8:.4f}", file=sys.stderr)
        if acc8 >= acc32 - 0.005 and ms8 <= ms32:
            chosen, quant = i8, (f"int8 static QDQ (onnxruntime): dev accuracy {acc8:.4f} vs "
                                 f"float32 {acc32:.4f}, p95 {ms8:.3f} vs {ms32:.3f} ms")
        else:
            why = ("slower" if ms8 > ms32 else "less accurate")
            chosen, quant = f32, (
                f"none (float32): int8 static QDQ was measured {why} at one thread "
                f"(p95 {ms8:.3f} vs {ms32:.3f} ms; dev accuracy {acc8:.4f} vs {acc32:.4f}): "
                f"a {len(FEATURE_NAMES)}-{HIDDEN}-{len(MILK_CLASSES)} MLP on raw features: one "
                "per-tensor input scale for features of very different ranges loses accuracy, "
                "and the model is too small for int8 kernels to pay for the Q/DQ nodes")
        dst = args.out / f"{MODEL_NAME}.onnx"
        shutil.copyfile(chosen, dst)
        sample = xd[:8].astype(np.float32)
        out = session(dst).run(["probs"], {"features": sample})[0]
    st = selftest_name(MODEL_NAME, VERSION)
    write_self_test(args.out / st, [sample], [out])
    metrics: dict[str, float | int | str] = {
        "dev_accuracy": round(acc32 if chosen == f32 else acc8, 4),
        "dev_images": len(xd),
        "model_p95_ms_1thread": round(ms32 if chosen == f32 else ms8, 4),
    }
    if args.metrics:
        metrics.update(json.loads(args.metrics.read_text()))
    entry = {
        "name": MODEL_NAME,
        "task": "milk colour and consistency from a white-balanced sample cup or sight glass",
        "version": VERSION, "runtime": "onnxruntime", "file": dst.name,
        "sha256": hashlib.sha256(dst.read_bytes()).hexdigest(), "bytes": dst.stat().st_size,
        "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, len(FEATURE_NAMES)],
                    "meaning": "agent.vision.milk.features.FEATURE_NAMES, raw (the model "
                    "standardises)"}],
        "outputs": [{"name": "probs", "dtype": "float32", "shape": [-1, len(MILK_CLASSES)],
                     "meaning": "probability of each class, in labels order"}],
        "quantization": quant, "labels": list(MILK_CLASSES), "licence": "Apache-2.0",
        "source": "built by scripts/train_milk.py (this project)",
        "training": {"script": "scripts/train_milk.py", "seed": SEED,
                     "data": f"synthetic only: agent/sources/camera/synth/milkcup.py, train look, "
                     f"seeds 0..{args.per_class - 1} x {len(MILK_CLASSES)} classes"
                     + (", each also squashed 0.5-0.9 along one axis, 30 % turned a quarter, "
                        "35 % cropped to its station ROI (scripts/train_milk.py augment)"
                        if args.augment else "")
                     + f" ({len(x)} used; no milk found in {missed})",
                     "numpy": np.__version__},
        "metrics": metrics,
        "self_test": {"file": st, "atol": 1e-4},
    }
    upsert_entry(args.out, entry)
    print(f"wrote {dst} and the manifest entry {MODEL_NAME} {VERSION}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
