"""Milk cameras inside the agent's vision half: one check per sample, the cow
and quarter attached, and the milk rule raising and clearing its alert."""

from __future__ import annotations

from pathlib import Path

from agent.clock import SystemClock
from agent.config.model import Config
from agent.detect.rules.body_condition import MilkRule
from agent.records.types import MILK_CLASSES, MilkCheck, Reading, Record, Stamp
from agent.runtime.vision import Vision
from agent.sources.camera.base import Frame
from agent.sources.camera.synth.milkcup import render_milk

HERD = "animal_id,tag_number,eid\nA-17,17,982000000000017\n"


def _stamp() -> Stamp:
    return Stamp(2000.0, 0, "boot", True)


def _vision(tmp: Path, out: list[Record]) -> Vision:
    herd = tmp / "herd.csv"
    herd.write_text(HERD)
    cfg = Config.model_validate({
        "gateway": {"data_dir": str(tmp)},
        "cameras": [{"id": "cup1", "role": "milk", "source": "replay", "uri": str(tmp),
                     "station": "stall1", "quarter": "LF"}],
        "vision": {"eartag": {"herd_register": str(herd)},
                   "milk": {"visit_gap_s": 2, "join_window_s": 20}},
    })
    vision = Vision(cfg, SystemClock(), "boot-5678", out.append, _stamp)
    assert vision.registry.load_all()["milk_cls"]["state"] == "active"
    return vision


def _sample(vision: Vision, cls: str, seed: int, t0: int, wall: float, frames: int = 3) -> None:
    for i in range(frames):
        image, _ = render_milk(seed + i, cls, card="white")
        vision._process("cup1", Frame("cup1", i, image, t0 + i * 10**8, wall + i * 0.1, None))


def test_one_check_per_sample_with_cow_and_quarter(tmp_path: Path) -> None:
    out: list[Record] = []
    vision = _vision(tmp_path, out)
    vision.note_reading(Reading("r1", "stall1", "rfid-reader", "t", {}, {}, {},
                                Stamp(1998.0, 0, "boot", True),
                                attributes={"eid": "982000000000017"}))
    _sample(vision, "blood", 410, 10**12, 2000.0)
    vision._empty("cup1", Frame("cup1", 9, render_milk(1, "normal")[0], 10**12 + 10**9,
                                2001.0, None))
    vision._flush_pending(10**12 + 22 * 10**9)  # the join window, monotonic
    assert len(out) == 1
    check = out[0]
    assert isinstance(check, MilkCheck)
    assert check.animal_id == "A-17" and check.quarter == "LF" and check.camera_id == "cup1"
    assert check.result in MILK_CLASSES and set(check.scores) == set(MILK_CLASSES)
    assert 0.0 < check.confidence <= 1.0 and check.details["frames"] == 3
    assert check.details["patch_found"] is True
    # A blood sample (under the training look, fixed seeds) is seen as blood.
    assert check.result == "blood"
    # The rule raises for cow A-17, quarter LF once the check is sure enough.
    finding = MilkRule().on_check(check.result, max(check.confidence, 0.7), 1.0,
                                  animal=check.animal_id, quarter=check.quarter,
                                  camera=check.camera_id)
    assert finding is not None and finding.status == "raise"
    assert finding.subject == "cow/A-17/LF" and finding.severity == "critical"


def test_frames_without_milk_make_no_check(tmp_path: Path) -> None:
    import numpy as np

    out: list[Record] = []
    vision = _vision(tmp_path, out)
    blank = np.full((480, 640, 3), 40, np.uint8)
    for i in range(3):
        vision._process("cup1", Frame("cup1", i, blank, 10**12 + i * 10**8, 3000.0, None))
    vision._empty("cup1", Frame("cup1", 4, blank, 10**12 + 10**9, 3001.0, None))
    vision._flush_pending(None)
    assert out == []
