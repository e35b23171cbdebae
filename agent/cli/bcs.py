"""``dairy-edge vision bcs``: score photos, and fit a farm's own model.

    dairy-edge vision bcs [--model DIR] IMAGE...
    dairy-edge vision bcs fit --labels LABELS.csv --out DIR

Both run the live agent's code (``agent.vision.bcs``): the same segmentation,
features and model loading (verified, self-tested) as the camera pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.cli.vision import ImageRefused, load_image
from agent.config.model import ModelsConfig
from agent.errors import ConfigError
from agent.models.errors import ModelError
from agent.models.registry import ModelRegistry
from agent.vision.bcs.export import MODEL_NAME, MODEL_NAMES, describe, write_model_dir
from agent.vision.bcs.fit import Label, LabelsError, fit, labels_digest, measure_all, read_labels
from agent.vision.bcs.model import BcsEstimator
from agent.vision.bcs.segment import NoCow

REARS = ("auto", "left", "right", "top", "bottom")


def load_bcs_image(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(colour, None) for a photo, (None, depth) for a 16-bit single-channel PNG
    (millimetres from the camera, 0 = no data)."""
    if path.suffix.lower() == ".png":
        data = np.fromfile(str(path), np.uint8) if path.is_file() else None
        if data is not None and data.size:
            raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
            if raw is not None and raw.dtype == np.uint16 and raw.ndim == 2:
                return None, raw
    return load_image(path), None


def _registry(model_dir: Path | None, threads: int) -> ModelRegistry:
    cfg = ModelsConfig(dir=model_dir or ModelsConfig().dir, threads=threads,
                       reload_interval_s=0)
    registry = ModelRegistry(cfg, required=[MODEL_NAME], only=MODEL_NAMES)
    registry.load_all()
    return registry


def run_score(args: argparse.Namespace) -> int:
    """One JSON line per image. 0 all scored, 1 some failed, 2 no usable model."""
    registry = _registry(args.model, args.threads)
    if all(registry.get(name) is None for name in MODEL_NAMES):
        state = registry.status().get(MODEL_NAME, {})
        where = args.model or "the bundled models"
        print(f"dairy-edge vision bcs: no usable bcs model in {where}: "
              f"{registry.manifest_error or state.get('error')}", file=sys.stderr)
        return 2
    estimator = BcsEstimator(registry.get, rear=args.rear,
                             min_quality=args.min_quality)
    failed = False
    for name in args.images:
        line: dict[str, Any] = {"image": str(name)}
        try:
            colour, depth = load_bcs_image(Path(name))
            est = estimator.estimate(colour, depth)
        except (ImageRefused, NoCow) as err:
            line["error"] = str(err)
            failed = True
        except (ModelError, cv2.error) as err:
            line["error"] = f"could not score: {err}"
            failed = True
        else:
            line.update(est.as_json())
            if args.verbose:
                line.update(raw=round(est.raw, 3), quality=round(est.quality, 3),
                            rear=est.rear, model_version=est.model_version)
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def _progress(items: Iterable[Label]) -> Iterable[Label]:
    if not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="measuring photos", unit="photo", file=sys.stderr)


def run_fit(args: argparse.Namespace) -> int:
    """Fit, report, write. 0 written, 2 unusable labels (nothing written)."""
    try:
        import onnx  # noqa: F401  (writes the model; the 'fit' extra, not the base install)
    except ImportError:
        print("dairy-edge vision bcs fit: needs the onnx package, which the base install "
              "leaves out: pip install 'dairy-edge[fit]' (into the same environment)",
              file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        labels = read_labels(args.labels)
        measured = measure_all(labels, load_bcs_image, rear=args.rear, progress=_progress)
        result = fit(measured, seed=args.seed)
    except (LabelsError, ConfigError) as err:
        print(f"dairy-edge vision bcs fit: {err}; no model written", file=sys.stderr)
        return 2
    print(result.report())
    write_model_dir(
        args.out, result.model, result.half_width, samples=result.samples,
        metrics=result.metrics(),
        data=f"{args.labels.name} (sha256 {labels_digest(args.labels)}): {result.photos} "
             f"photos of {result.animals} cows",
        source=f"fitted on this farm's labelled photos with `dairy-edge vision bcs fit` "
               f"from {args.labels.name}",
        licence="the farm's own", script="dairy-edge vision bcs fit", seed=args.seed,
        version=args.version)
    print(f"wrote {describe(args.out)} in {time.monotonic() - start:.1f} s; use it with "
          f"`dairy-edge vision bcs --model {args.out} IMAGE...` or point the agent's "
          "vision.bcs.model_dir at it")
    return 0


_SCORE_HELP = """\
Score the body condition (1-5, quarter points) of the cow in each top-view
photo, with the live agent's segmentation, features and model. One JSON line
per image:

  {"image": "PATH", "bcs": 3.25, "low": 3.0, "high": 3.5}

low/high bound the score (about 80 % of held-out photos fall inside; wider
when the cow's outline is poor). A file that is not an image, or a photo with
no cow seen well enough, gets {"image": "PATH", "error": "..."} and the exit
status is 1. 16-bit single-channel PNGs are read as depth frames (mm).

Fit a farm's own model from labelled photos first (`dairy-edge vision bcs fit
--help`), then score with it:
  dairy-edge vision bcs fit --labels labels.csv --out farm-bcs
  dairy-edge vision bcs --model farm-bcs photos/*.jpg
"""

_FIT_HELP = """\
Fit a body condition model from the farm's own labelled top-view photos and
write it as a model directory (bcs.onnx, its self-test and manifest.json).

LABELS.csv has columns image,bcs and optionally animal; image paths are
relative to the CSV. With animal, the report is cross-validated grouped by
cow (no cow's photos on both sides), next to always predicting the herd mean.
About 150-250 photos of 25-40 cows scored by one technician is the aim; at
least 30 photos of 5 cows are needed. Photos with no usable cow are listed
and left out; a missing image or a score outside 1-5 stops the fit with the
file and line, and no model is written.
"""


def add_bcs_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bcs = sub.add_parser("bcs", help="body condition scores from top-view photos; "
                         "`bcs fit` fits a farm model", description=_SCORE_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    bcs.add_argument("images", nargs=argparse.REMAINDER, metavar="IMAGE",
                     help="JPEG/PNG/BMP/WebP photos, or `fit ...` (see `vision bcs fit --help`)")
    _common(bcs)
    bcs.add_argument("--model", type=Path, metavar="DIR",
                     help="model directory written by `vision bcs fit` (default: the shipped "
                     "model)")
    bcs.add_argument("--min-quality", type=float, default=0.25, metavar="Q",
                     help="refuse photos whose outline quality is below Q (0-1, default "
                     "%(default)s)")
    bcs.add_argument("-v", "--verbose", action="store_true",
                     help="add raw score, outline quality, rump side and model version")
    bcs.set_defaults(func=_dispatch)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rear", choices=REARS, default="auto",
                   help="which side of the frame the rump is on (default: found per photo)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="threads per model (default 1, like the gateway)")


def _fit_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dairy-edge vision bcs fit", description=_FIT_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", type=Path, required=True, metavar="LABELS.csv",
                   help="CSV with columns image,bcs[,animal]")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="where to write the model directory (created; an older bcs model "
                   "there is replaced)")
    p.add_argument("--seed", type=int, default=20261202, metavar="N",
                   help="seed of the cross-validation folds (default %(default)s)")
    p.add_argument("--version", default=None, metavar="TEXT",
                   help="model version (default: date and hash of the model)")
    _common(p)
    return p


def _dispatch(args: argparse.Namespace) -> int:
    rest = list(args.images)
    if rest and rest[0] == "fit":
        fit_args = _fit_parser().parse_args(rest[1:])
        return run_fit(fit_args)
    if not rest:
        print("dairy-edge vision bcs: give one or more images, or `fit --labels ... --out "
              "...`; see --help", file=sys.stderr)
        return 2
    # Options after the first image land in ``rest``: parse them too (values
    # given before the images stay, argparse keeps what the namespace has).
    score = argparse.ArgumentParser(prog="dairy-edge vision bcs")
    score.add_argument("images", nargs="+")
    _common(score)
    score.add_argument("--model", type=Path)
    score.add_argument("--min-quality", type=float)
    score.add_argument("-v", "--verbose", action="store_true")
    given = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "images"})
    return run_score(score.parse_args(rest, namespace=given))
