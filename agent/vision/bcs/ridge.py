"""Ridge regression with cross-validation grouped by cow: the BCS model's fit.

A farm brings 150-250 photos of 25-40 cows. That is too few for a CNN but
plenty for a regularised linear model on shape features, and the fit takes
milliseconds, so the choice of feature groups and regularisation can be made
honestly inside every cross-validation fold (nested), and the reported figures
are those of photos of cows the model never saw.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

ALPHAS = tuple(float(a) for a in np.logspace(-1, 4, 11))
STEP = 0.25  # BCS is scored in quarter points


@dataclass(frozen=True)
class Ridge:
    groups: tuple[str, ...]
    alpha: float
    mean: np.ndarray  # per feature
    scale: np.ndarray  # per feature (1 where constant)
    weights: np.ndarray
    bias: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.mean) / self.scale
        return np.asarray(np.clip(z @ self.weights + self.bias, 1.0, 5.0))


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float, groups: tuple[str, ...]) -> Ridge:
    return _Path(x, y, groups).at(alpha)


class _Path:
    """Ridge for every alpha from one SVD of the standardised training features
    (the model selection tries many alphas on the same folds)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, groups: tuple[str, ...]) -> None:
        self.groups = groups
        self.mean = x.mean(axis=0)
        scale = x.std(axis=0)
        self.scale = np.where(scale > 1e-9, scale, 1.0)
        z = (x - self.mean) / self.scale
        self.bias = float(y.mean())
        self.u, self.s, self.vt = np.linalg.svd(z, full_matrices=False)
        self.uty = self.u.T @ (y - self.bias)

    def at(self, alpha: float) -> Ridge:
        w = self.vt.T @ (self.s / (self.s ** 2 + alpha) * self.uty)
        return Ridge(self.groups, alpha, self.mean.astype(np.float32),
                     self.scale.astype(np.float32), w.astype(np.float32), self.bias)


def round_step(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.round(np.asarray(x) / STEP) * STEP, 1.0, 5.0))


def group_folds(groups: Sequence[str], k: int, seed: int) -> list[np.ndarray]:
    """Indices of the held-out part of each of ``k`` folds; one cow's photos are
    never split across folds. Cows are shuffled with ``seed`` then dealt out so
    the folds have about the same number of photos."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    k = max(2, min(k, len(names)))
    sizes = {n: 0 for n in names}
    for g in groups:
        sizes[g] += 1
    load = [0] * k
    fold_of: dict[str, int] = {}
    for n in sorted(names, key=lambda n: -sizes[n]):  # biggest cows first
        f = int(np.argmin(load))
        fold_of[n] = f
        load[f] += sizes[n]
    arr = np.array([fold_of[g] for g in groups])
    return [np.nonzero(arr == f)[0] for f in range(k)]


@dataclass(frozen=True)
class Scores:
    within_025: float
    within_05: float
    mae: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}within_0.25": round(self.within_025, 4),
                f"{prefix}within_0.5": round(self.within_05, 4),
                f"{prefix}mae": round(self.mae, 4)}


def score(pred: np.ndarray, truth: np.ndarray) -> Scores:
    """Shares within 0.25 and 0.5 of the truth (predictions rounded to quarter
    points, as the agent reports them) and the mean absolute error (unrounded)."""
    err = np.abs(round_step(pred) - truth)
    return Scores(float(np.mean(err <= 0.25 + 1e-9)), float(np.mean(err <= 0.5 + 1e-9)),
                  float(np.mean(np.abs(pred - truth))))


def candidates(available: Sequence[str]) -> list[tuple[str, ...]]:
    """Feature-group sets worth trying: shape always, plus any others available."""
    extra = [g for g in available if g != "shape"]
    out = []
    for r in range(len(extra) + 1):
        for combo in itertools.combinations(extra, r):
            out.append(("shape", *combo))
    return out


def _stack(features: dict[str, np.ndarray], groups: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([features[g] for g in groups], axis=1)


def select(features: dict[str, np.ndarray], y: np.ndarray, animals: Sequence[str],
           *, folds: int, seed: int) -> tuple[tuple[str, ...], float, float]:
    """The groups and alpha with the lowest grouped-CV error; returns (groups, alpha, mae)."""
    best: tuple[float, tuple[str, ...], float] | None = None
    parts = group_folds(animals, folds, seed)
    for groups in candidates(list(features)):
        x = _stack(features, groups)
        preds = {alpha: np.empty_like(y) for alpha in ALPHAS}
        for test in parts:
            train = np.setdiff1d(np.arange(len(y)), test)
            path = _Path(x[train], y[train], groups)
            for alpha in ALPHAS:
                preds[alpha][test] = path.at(alpha).predict(x[test])
        for alpha, pred in preds.items():
            mae = float(np.mean(np.abs(pred - y)))
            if best is None or mae < best[0] - 1e-9:
                best = (mae, groups, alpha)
    assert best is not None
    return best[1], best[2], best[0]


@dataclass(frozen=True)
class CvReport:
    model: Scores
    baseline: Scores  # always predicting the training folds' mean
    residuals: np.ndarray  # unrounded, on held-out photos
    predictions: np.ndarray
    folds: int


def nested_cv(features: dict[str, np.ndarray], y: np.ndarray, animals: Sequence[str],
              *, folds: int = 5, seed: int = 0) -> CvReport:
    """Grouped K-fold: every photo is predicted by a model that chose its groups
    and alpha, and fitted, without any photo of that cow."""
    parts = group_folds(animals, folds, seed)
    pred = np.empty_like(y)
    base = np.empty_like(y)
    animals = list(animals)
    for test in parts:
        train = np.setdiff1d(np.arange(len(y)), test)
        sub = {g: f[train] for g, f in features.items()}
        sub_animals = [animals[i] for i in train]
        groups, alpha, _ = select(sub, y[train], sub_animals, folds=max(2, folds - 1),
                                  seed=seed + 1)
        model = fit_ridge(_stack(sub, groups), y[train], alpha, groups)
        pred[test] = model.predict(_stack({g: f[test] for g, f in features.items()}, groups))
        base[test] = y[train].mean()
    return CvReport(score(pred, y), score(base, y), pred - y, pred, len(parts))


def fit_final(features: dict[str, np.ndarray], y: np.ndarray, animals: Sequence[str],
              *, folds: int = 5, seed: int = 0) -> Ridge:
    groups, alpha, _ = select(features, y, animals, folds=folds, seed=seed)
    return fit_ridge(_stack(features, groups), y, alpha, groups)
