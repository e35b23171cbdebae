"""Body condition and milk check records for the store, central and page tests."""

from __future__ import annotations

import time
import uuid

from agent.records import BodyCondition, MilkCheck, Stamp


def _stamp(wall_ts: float | None) -> Stamp:
    return Stamp(wall_ts=time.time() if wall_ts is None else wall_ts,
                 mono_ns=time.monotonic_ns(), boot_id="boot-1", clock_synced=True)


def body_condition(
    n: int = 1,
    *,
    run: str | None = None,
    animal: str | None = "cow-2386",
    bcs: float = 3.25,
    low: float = 3.0,
    high: float = 3.5,
    quality: float = 0.82,
    wall_ts: float | None = None,
    camera: str = "topview-1",
) -> BodyCondition:
    """One visit's score; ``run`` keeps record ids apart between tests."""
    run = run or uuid.uuid4().hex[:8]
    return BodyCondition(
        record_id=f"bcs-{run}-{n}",
        camera_id=camera,
        visit_id=f"visit-{run}-{n}",
        bcs=bcs,
        low=low,
        high=high,
        quality=quality,
        stamp=_stamp(wall_ts),
        model="bcs-topview",
        model_version="1.2.0",
        frames=9,
        animal_id=animal,
        details={"straightness": 0.91, "back_visible": 0.88},
    )


def milk_check(
    n: int = 1,
    *,
    run: str | None = None,
    result: str = "normal",
    confidence: float = 0.96,
    animal: str | None = "cow-2386",
    quarter: str | None = "LF",
    wall_ts: float | None = None,
) -> MilkCheck:
    """One sample's check; the scores put ``confidence`` on ``result``."""
    run = run or uuid.uuid4().hex[:8]
    others = ("normal", "blood", "colostrum", "watery", "clots")
    rest = round((1.0 - confidence) / 4, 6)
    scores = {c: (confidence if c == result else rest) for c in others}
    return MilkCheck(
        record_id=f"milk-{run}-{n}",
        camera_id="sampler-1",
        result=result,
        confidence=confidence,
        stamp=_stamp(wall_ts),
        model="milk-colour",
        model_version="0.4.1",
        animal_id=animal,
        quarter=quarter,
        scores=scores,
        details={"exposure_ms": 4.0},
    )
