"""Fit a farm's own BCS model from its labelled photos.

``LABELS.csv`` has columns ``image,bcs`` and optionally ``animal``; image paths
are relative to the CSV. Every photo goes through the same segmentation and
features as the live agent; photos without a usable cow are listed and left
out. The report is cross-validated grouped by cow (no cow's photos are both
fitted and scored), beside the always-the-herd-mean baseline, so the figures
say what the model will do on cows it has not seen.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agent.errors import ConfigError
from agent.vision.bcs.features import BackFeatures
from agent.vision.bcs.model import measure
from agent.vision.bcs.ridge import CvReport, Ridge, fit_final, nested_cv
from agent.vision.bcs.segment import NoCow

MIN_PHOTOS = 30  # fewer cannot both fit and cross-validate a model honestly
MIN_ANIMALS = 5
FOLDS = 5
SEED = 20261202

Loader = Callable[[Path], tuple[np.ndarray | None, np.ndarray | None]]


class LabelsError(ConfigError):
    """The labels CSV cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Label:
    image: Path
    bcs: float
    animal: str
    line: int


def read_labels(path: Path) -> list[Label]:
    """Every row of the labels CSV, checked; ``LabelsError`` names file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise LabelsError(f"{path}: cannot read the labels: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise LabelsError(f"{path}: not UTF-8 text (byte {err.start}); save the CSV as "
                          "UTF-8 (in Excel: CSV UTF-8)") from err
    rows = csv.DictReader(text.splitlines(keepends=True))
    cols = [c.strip() for c in (rows.fieldnames or [])]
    if "image" not in cols or "bcs" not in cols:
        raise LabelsError(f"{path}:1: the header must name the columns image and bcs (and "
                          f"optionally animal); found {', '.join(cols) or 'nothing'}")
    has_animal = "animal" in cols
    out: list[Label] = []
    for raw in rows:
        i = rows.line_num  # the physical line (blank lines and quoted breaks counted)
        where = f"{path}:{i}"
        if None in raw:
            raise LabelsError(f"{where}: more fields than the header names")
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue
        if not row.get("image"):
            raise LabelsError(f"{where}: no image path")
        image = (path.parent / row["image"]).resolve()
        if not image.is_file():
            raise LabelsError(f"{where}: image {row['image']} not found (looked for {image}; "
                              "paths are relative to the CSV)")
        try:
            bcs = float(row.get("bcs", ""))
        except ValueError:
            raise LabelsError(f"{where}: bcs {row.get('bcs')!r} is not a number") from None
        if not 1.0 <= bcs <= 5.0:
            raise LabelsError(f"{where}: bcs {bcs} is outside 1 to 5")
        animal = row.get("animal", "") if has_animal else ""
        out.append(Label(image, bcs, animal or f"photo-{i}", i))
    if len(out) < MIN_PHOTOS:
        raise LabelsError(f"{path}: {len(out)} labelled photos; the fit needs at least "
                          f"{MIN_PHOTOS} (150-250 photos of 25-40 cows is the aim)")
    return out


@dataclass
class Measured:
    labels: list[Label] = field(default_factory=list)
    features: list[BackFeatures] = field(default_factory=list)
    skipped: list[tuple[Label, str]] = field(default_factory=list)

    def matrix(self) -> dict[str, np.ndarray]:
        """Group -> (photos, features); only groups every photo has."""
        groups = set.intersection(*(set(f.values) for f in self.features))
        return {g: np.stack([f.values[g] for f in self.features]).astype(np.float64)
                for g in groups}


def measure_all(labels: Iterable[Label], load: Loader, *, rear: str | None = None,
                progress: Callable[[Iterable[Label]], Iterable[Label]] | None = None
                ) -> Measured:
    out = Measured()
    items = progress(labels) if progress else labels
    for label in items:
        try:
            colour, depth = load(label.image)
            _, feats = measure(colour, depth, rear)
        except (NoCow, ValueError, cv2.error) as err:
            out.skipped.append((label, str(err)))
            continue
        out.labels.append(label)
        out.features.append(feats)
    return out


@dataclass(frozen=True)
class FitResult:
    model: Ridge
    cv: CvReport
    half_width: float
    photos: int
    animals: int
    grouped: bool
    skipped: list[tuple[Label, str]]
    samples: np.ndarray  # a few feature rows for the self-test

    def metrics(self) -> dict[str, Any]:
        m: dict[str, Any] = {"photos": self.photos, "animals": self.animals,
                             "cv": f"{self.cv.folds}-fold, grouped by "
                                   f"{'animal' if self.grouped else 'photo'}"}
        m.update(self.cv.model.as_dict("cv_"))
        m.update(self.cv.baseline.as_dict("mean_baseline_"))
        m["interval_half_width"] = round(self.half_width, 4)
        return m

    def report(self) -> str:
        cv, base = self.cv.model, self.cv.baseline
        unit = "cow" if self.grouped else "photo (no animal column: photos of one cow may " \
            "sit on both sides, so these figures flatter the model)"
        lines = [
            (f"photos used {self.photos} of {self.photos + len(self.skipped)}, "
            f"cows {self.animals}; feature groups {'+'.join(self.model.groups)}, "
            f"alpha {self.model.alpha:.3g}"),
            f"{self.cv.folds}-fold cross-validation grouped by {unit}:",
            "                     within 0.25   within 0.5   mean abs error",
            (f"  this model            {cv.within_025:6.1%}       {cv.within_05:6.1%}"
            f"        {cv.mae:.3f}"),
            (f"  always the mean       {base.within_025:6.1%}       {base.within_05:6.1%}"
            f"        {base.mae:.3f}"),
            f"interval: +/- {self.half_width:.2f} holds ~80 % of held-out photos",
        ]
        for label, why in self.skipped[:10]:
            lines.append(f"  left out {label.image.name} (line {label.line}): {why}")
        if len(self.skipped) > 10:
            lines.append(f"  ... and {len(self.skipped) - 10} more left out")
        return "\n".join(lines)


def fit(measured: Measured, *, seed: int = SEED) -> FitResult:
    """Cross-validate, then fit on every photo. ``LabelsError`` when too few
    usable photos or cows remain."""
    n = len(measured.features)
    if n < MIN_PHOTOS:
        raise LabelsError(f"only {n} photos had a usable cow (the fit needs {MIN_PHOTOS}); "
                          f"{len(measured.skipped)} were left out, for example: "
                          + "; ".join(f"{lab.image.name}: {why}"
                                      for lab, why in measured.skipped[:3]))
    animals = [lab.animal for lab in measured.labels]
    grouped = not all(a.startswith("photo-") for a in animals)
    if grouped and len(set(animals)) < MIN_ANIMALS:
        raise LabelsError(f"photos of {len(set(animals))} cows; the fit needs at least "
                          f"{MIN_ANIMALS} cows to cross-validate by cow")
    y = np.array([lab.bcs for lab in measured.labels])
    x = measured.matrix()
    cv = nested_cv(x, y, animals, folds=FOLDS, seed=seed)
    half = max(0.25, float(np.quantile(np.abs(cv.residuals), 0.8)))
    model = fit_final(x, y, animals, folds=FOLDS, seed=seed)
    rows = np.concatenate([x[g] for g in model.groups], axis=1)
    pick = np.linspace(0, n - 1, min(4, n)).astype(int)
    return FitResult(model, cv, half, n, len(set(animals)), grouped, measured.skipped,
                     rows[pick].astype(np.float32))


def labels_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
