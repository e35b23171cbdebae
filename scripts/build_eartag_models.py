"""Build the ear-tag models from the PP-OCRv4 ONNX files inside rapidocr-onnxruntime.

A BUILD step, never run by the agent: the agent only loads what this writes.

1. Obtain the wheel (``--wheel`` or ``pip download rapidocr-onnxruntime==1.4.4
   --no-deps`` into the build folder) and check its pinned sha256.
2. Extract ``ch_PP-OCRv4_det_infer.onnx`` (text detector, DB) and
   ``ch_PP-OCRv4_rec_infer.onnx`` (text recogniser, CTC over 6625 classes; the
   character list is in the model's metadata ``character``).
3. Recogniser: append one constant MatMul after its softmax that folds the 6625
   class probabilities into 13: blank, the digits 0-9, space, and "other" (the sum
   of every other character). Exact (sums of probabilities), tiny, and it keeps the
   one thing the reader needs beyond digits: how much a position looks like a letter
   or any non-digit, so sign text is refused instead of forced into digits.
4. Optionally quantise (``--quantize``); the default is chosen from measurements
   (see docs/vision.md and the report of scripts/eval_eartag.py).
5. Write ``models/eartag_det.onnx``, ``models/eartag_rec.onnx``, their self-tests
   under ``models/selftest/`` and their manifest entries.

Deterministic: the same wheel gives byte-identical files (checked with
``--check-deterministic``, which builds twice).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PACKAGE = "rapidocr-onnxruntime"
VERSION = "1.4.4"
WHEEL_NAME = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
DET_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
REC_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
MODEL_VERSION = "ppocrv4-1.4.4-d1"  # bump the suffix when this script changes the output

# Folded recogniser classes, in output order.
REC_LABELS = ["blank", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "space", "other"]


def log(msg: str) -> None:
    print(f"[build_eartag_models] {msg}", file=sys.stderr, flush=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def obtain_wheel(wheel: Path | None, build_dir: Path) -> Path:
    """The wheel file, downloaded with pip when not given; its sha256 must match the pin."""
    if wheel is None:
        wheel = build_dir / WHEEL_NAME
        if not wheel.exists():
            log(f"downloading {PACKAGE}=={VERSION} (no dependencies) into {build_dir}")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={VERSION}", "--no-deps",
                 "--only-binary", ":all:", "-d", str(build_dir)],
                check=True,
            )
    digest = sha256_bytes(wheel.read_bytes())
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the pinned {WHEEL_SHA256}; "
                         f"use the {PACKAGE} {VERSION} wheel from PyPI")
    log(f"wheel {wheel.name} sha256 OK")
    return wheel


def fold_recogniser(model: Any) -> Any:
    """Append probs(N,T,6625) @ M(6625,13) -> (N,T,13) and drop the character metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    chars = next(p.value for p in model.metadata_props if p.key == "character").split("\n")
    # CTC classes as the upstream decoder builds them: blank, the list, then space.
    classes = ["blank", *chars, " "]
    fold = np.zeros((len(classes), len(REC_LABELS)), dtype=np.float32)
    for i, ch in enumerate(classes):
        if i == 0:
            fold[i, 0] = 1.0
        elif ch in "0123456789" and len(ch) == 1:
            fold[i, 1 + int(ch)] = 1.0
        elif ch == " ":
            fold[i, 11] = 1.0
        else:
            fold[i, 12] = 1.0
    assert fold.sum() == len(classes) and fold[:, 1:11].sum() == 10, "digits not found once each"
    graph = model.graph
    old_out = graph.output[0]
    graph.initializer.append(numpy_helper.from_array(fold, "eartag_fold"))
    graph.node.append(helper.make_node("MatMul", [old_out.name, "eartag_fold"], ["probs"],
                                       name="eartag_fold_matmul"))
    new_out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [-1, -1, len(REC_LABELS)])
    new_out.type.tensor_type.shape.dim[0].dim_param = "batch"
    new_out.type.tensor_type.shape.dim[1].dim_param = "steps"
    graph.output.remove(old_out)
    graph.output.append(new_out)
    del model.metadata_props[:]
    onnx.checker.check_model(model)
    return model


def rename_io(model: Any, old: str, new: str) -> None:
    """Give a tensor a readable name (graph inputs/outputs keep Paddle's otherwise)."""
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name == old:
            vi.name = new


def sample_tag(text: str = "2386", height: int = 48) -> np.ndarray:
    """A plain yellow tag with black digits (BGR), drawn with OpenCV: deterministic."""
    w = 40 + 26 * len(text)
    img = np.full((height + 16, w, 3), (40, 200, 235), np.uint8)
    cv2.putText(img, text, (14, height + 2), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (10, 10, 10), 4,
                cv2.LINE_AA)
    return img


def det_input(img: np.ndarray) -> np.ndarray:
    x = (img.astype(np.float32) / 255.0 - 0.5) / 0.5
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def quantize_static(src: Path, dst: Path, samples: list[np.ndarray]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"x": s} for s in samples])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    # per_channel needs opset >= 13; the upstream models are opset 12.
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=False)


def calibration_det(n: int) -> list[np.ndarray]:
    """Det calibration inputs: generated barn scenes (seeds 700000+, never eval seeds)."""
    from agent.sources.camera.synth import TRAIN, render_scene

    out = []
    for i in range(n):
        scene, _ = render_scene(700000 + i, TRAIN)
        img = cv2.resize(scene, (960, 544), interpolation=cv2.INTER_AREA)
        out.append(det_input(img))
    return out


def build(wheel: Path, build_dir: Path, out_dir: Path, quantize: str) -> dict[str, Path]:
    import onnx

    with zipfile.ZipFile(wheel) as zf:
        det_bytes, rec_bytes = zf.read(DET_MEMBER), zf.read(REC_MEMBER)
    log(f"extracted det ({len(det_bytes)} B) and rec ({len(rec_bytes)} B)")
    det = onnx.load_from_string(det_bytes)
    rename_io(det, det.graph.output[0].name, "prob_map")
    rec = fold_recogniser(onnx.load_from_string(rec_bytes))
    log(f"recogniser folded to {len(REC_LABELS)} classes: {' '.join(REC_LABELS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"eartag_det": out_dir / "eartag_det.onnx", "eartag_rec": out_dir / "eartag_rec.onnx"}
    if quantize == "none":
        onnx.save(det, str(paths["eartag_det"]))
        onnx.save(rec, str(paths["eartag_rec"]))
    else:
        with tempfile.TemporaryDirectory(dir=build_dir) as tmp:
            onnx.save(det, f"{tmp}/det.onnx")
            onnx.save(rec, f"{tmp}/rec.onnx")
            log("quantising the detector (static, QDQ, calibration on generated scenes)")
            quantize_static(Path(f"{tmp}/det.onnx"), paths["eartag_det"], calibration_det(16))
            onnx.save(rec, str(paths["eartag_rec"]))
    for p in paths.values():
        log(f"wrote {p} ({p.stat().st_size} B, sha256 {sha256_bytes(p.read_bytes())[:12]}...)")
    return paths


def entries(paths: dict[str, Path], out_dir: Path, quantize: str,
            metrics: dict[str, dict[str, Any]]) -> None:
    import onnxruntime as ort

    from agent.models.manifest import selftest_name, upsert_entry
    from agent.models.selftest import write_self_test

    source = (f"PyPI {PACKAGE} {VERSION} (wheel sha256 {WHEEL_SHA256}), file "
              "{member}; PP-OCRv4 by PaddlePaddle, Apache-2.0")
    tag = sample_tag()
    specs = {
        "eartag_det": {
            "task": "text detection (DB probability map) for ear tags",
            "member": DET_MEMBER,
            "quant": "int8 static QDQ (per tensor)" if quantize == "int8" else "none (float32)",
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 3, -1, -1],
                         "meaning": "BGR, (x/255 - 0.5)/0.5, NCHW, sides multiples of 32"}],
            "outputs": [{"name": "prob_map", "dtype": "float32", "shape": [1, 1, -1, -1],
                          "meaning": "text probability per input pixel"}],
            "labels": None,
            "sample": [det_input(cv2.copyMakeBorder(tag, 0, 64 - tag.shape[0], 0,
                                                 160 - tag.shape[1], cv2.BORDER_CONSTANT))],
            "data": "none: pretrained PP-OCRv4 detector, used as shipped",
        },
        "eartag_rec": {
            "task": "text line recognition, folded to digits (CTC)",
            "member": REC_MEMBER,
            "quant": "none (float32)",
            "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 3, 48, -1],
                         "meaning": "BGR text line, height 48, (x/255 - 0.5)/0.5, NCHW"}],
            "outputs": [{"name": "probs", "dtype": "float32", "shape": [-1, -1, len(REC_LABELS)],
                          "meaning": "per time step: P(blank), P(0..9), P(space), P(any other "
                          "character)"}],
            "labels": REC_LABELS,
            "sample": [det_input(cv2.resize(tag, (int(48 * tag.shape[1] / tag.shape[0]), 48),
                                         interpolation=cv2.INTER_LINEAR))],
            "data": "none: pretrained PP-OCRv4 recogniser; its 6625 classes summed into "
                 "blank, digits, space and other by an appended constant MatMul",
        },
    }
    for name, path in paths.items():
        s = specs[name]
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {"x": s["sample"][0]})
        st = selftest_name(name, MODEL_VERSION)
        write_self_test(out_dir / st, s["sample"], [np.asarray(o) for o in outs])
        entry = {
            "name": name, "task": s["task"], "version": MODEL_VERSION, "runtime": "onnxruntime",
            "file": path.name, "sha256": sha256_bytes(path.read_bytes()),
            "bytes": path.stat().st_size,
            "inputs": s["inputs"], "outputs": s["outputs"], "quantization": s["quant"],
            "labels": s["labels"], "licence": "Apache-2.0",
            "source": source.format(member=s["member"]),
            "training": {"script": "scripts/build_eartag_models.py", "data": s["data"]},
            "metrics": metrics.get(name, {}),
            "self_test": {"file": st, "atol": 1e-3},
        }
        upsert_entry(out_dir, entry)
        log(f"manifest entry {name} {MODEL_VERSION} written; self-test {st}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} (else pip downloads it)")
    ap.add_argument("--build-dir", type=Path, default=ROOT / "build" / "eartag",
                    help="download and scratch folder (default build/eartag)")
    ap.add_argument("--out", type=Path, default=ROOT / "models",
                    help="models folder with manifest.json (default models/)")
    ap.add_argument("--quantize", choices=["none", "int8"], default="none",
                    help="none: float32 as shipped (default); int8: static QDQ (per tensor) "
                    "on the detector. Measured at one thread: int8 detector 84 ms vs float 78 ms "
                    "at 640x384 (no gain on AVX2 without VNNI), so float is shipped. The "
                    "recogniser gains nothing either: static QDQ 13.8 ms, dynamic (MatMul) "
                    "14.0 ms vs float 13.6 ms p50 at 48x128 (dev crop reads identical for "
                    "dynamic)")
    ap.add_argument("--metrics", type=Path,
                    help="JSON {model name: {metric: value}} to record in the manifest "
                    "(e.g. from scripts/eval_eartag.py)")
    ap.add_argument("--check-deterministic", action="store_true",
                    help="build twice into scratch folders and compare the sha256s")
    args = ap.parse_args(argv)
    args.build_dir.mkdir(parents=True, exist_ok=True)
    wheel = obtain_wheel(args.wheel, args.build_dir)
    if args.check_deterministic:
        digests = []
        for _i in range(2):
            with tempfile.TemporaryDirectory(dir=args.build_dir) as tmp:
                paths = build(wheel, args.build_dir, Path(tmp), args.quantize)
                digests.append({n: sha256_bytes(p.read_bytes()) for n, p in paths.items()})
        same = digests[0] == digests[1]
        log(f"deterministic: {same} {digests[0]}")
        return 0 if same else 1
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    paths = build(wheel, args.build_dir, args.out, args.quantize)
    entries(paths, args.out, args.quantize, metrics)
    return 0


if __name__ == "__main__":
    sys.exit(main())
