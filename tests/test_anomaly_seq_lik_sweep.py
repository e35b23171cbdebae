"""scripts/seq_lik_sweep.py's combination of seq_lik with CAD OSE (a
development tool; docs/anomaly.md): its joint mode is seq_lik with CAD OSE's
raw score as one more source of alarms, so with CAD OSE unable to alarm it
must give seq_lik's own scores, and with CAD OSE alarming it must differ."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from pathlib import Path
from types import ModuleType

from agent.detect.anomaly.cad_ose import CadOse
from agent.detect.anomaly.seq_lik import SeqLik

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "seq_lik_sweep.py"


def _sweep() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seq_lik_sweep", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["seq_lik_sweep"] = mod
    spec.loader.exec_module(mod)
    return mod


def _values(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    xs = [50 + 30 * math.sin(i / 15) + rng.gauss(0, 3) for i in range(n)]
    for i in range(800, n, 300):  # breaks of the pattern
        xs[i:i + 5] = [rng.uniform(0, 100) for _ in range(5)]
    return xs


def _pair(rng: tuple[float, float] | None) -> tuple[SeqLik, CadOse]:
    return (SeqLik(rng, 40, 150, 150),
            CadOse(*(rng if rng is not None else (None, None)), 40))


def test_joint_without_cad_alarms_is_seq_lik() -> None:
    sweep = _sweep()
    for rng in ((-10.0, 110.0), None):
        xs = _values(2000, 7)
        ref = SeqLik(rng, 40, 150, 150)
        plain = [ref.score(x) for x in xs]
        det, cad = _pair(rng)
        joint = sweep._with_cad(det, cad, xs, {"mode": "joint", "level": 1.01})
        assert joint == plain
        assert max(plain) >= 0.5  # seq_lik alarmed: the rest and re-arm paths ran


def test_joint_with_cad_alarms_adds_them() -> None:
    sweep = _sweep()
    xs = _values(2000, 7)
    ref = SeqLik((-10.0, 110.0), 40, 150, 150)
    plain = [ref.score(x) for x in xs]
    joint = sweep._with_cad(*_pair((-10.0, 110.0)), xs, {"mode": "joint", "level": 0.75})
    assert joint != plain
    assert all(0.0 <= s <= 1.0 for s in joint)
    det, cad = _pair((-10.0, 110.0))
    both = sweep._with_cad(det, cad, xs, {"mode": "max"})
    det2, cad2 = _pair((-10.0, 110.0))
    assert both == [max(det2.score(x), cad2.score(x)) for x in xs]
