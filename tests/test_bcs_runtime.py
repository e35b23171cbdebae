"""BCS cameras inside the agent's vision half: frames pooled into one score per
visit, the cow named by an RFID read at the station, a fitted model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.clock import SystemClock
from agent.config.model import CameraConfig, Config
from agent.records.types import BodyCondition, Reading, Record, Stamp, stable_id
from agent.runtime.vision import Vision
from agent.sources.camera.base import Frame
from agent.sources.camera.synth.topview import render, sample_body, sample_look
from agent.vision.bcs.export import write_model_dir
from agent.vision.bcs.features import SIZES, back_features
from agent.vision.bcs.ridge import fit_ridge
from agent.vision.bcs.segment import segment_depth

HERD = "animal_id,tag_number,eid\nA-17,17,982000000000017\nA-18,18,982000000000018\n"


def _frames(n: int, seed: int) -> list[np.ndarray]:
    """Depth frames of one cow (a depth camera: the outline does not hang on the
    colour segmentation, whose accuracy is measured by scripts/eval_bcs.py)."""
    rng = np.random.default_rng(seed)
    body = sample_body(rng)
    return [render(body, 2.5, sample_look(rng), rng=rng).depth for _ in range(n)]


def _model_dir(tmp: Path, frames: list[np.ndarray]) -> Path:
    """A linear model fitted on these frames' shape features (the wiring is under
    test, not accuracy): any frame gives a score in 1-5."""
    rows = np.stack([back_features(segment_depth(f), depth=f).values["shape"]
                     for f in frames])
    x = np.concatenate([rows, rows + np.random.default_rng(1).normal(0, 0.1, rows.shape)])
    y = np.linspace(2.0, 3.5, len(x))
    out = tmp / "farm-bcs"
    write_model_dir(out, fit_ridge(x, y, 10.0, ("shape",)), 0.3,
                    samples=x[:2].astype(np.float32), metrics={}, data="test", source="test",
                    licence="test", script="test", seed=1, version="farm-1")
    assert x.shape[1] == SIZES["shape"]
    return out


def _stamp() -> Stamp:
    return Stamp(1000.0, 0, "boot", True)


def test_one_score_per_visit_named_by_the_station_rfid(tmp_path: Path) -> None:
    frames = _frames(4, seed=3)
    herd = tmp_path / "herd.csv"
    herd.write_text(HERD)
    cfg = Config.model_validate({
        "gateway": {"data_dir": str(tmp_path)},
        "cameras": [{"id": "exit", "role": "bcs", "source": "replay", "uri": str(tmp_path),
                     "station": "exit1"}],
        "vision": {"eartag": {"herd_register": str(herd)},
                   "bcs": {"model_dir": str(_model_dir(tmp_path, frames)),
                           "join_window_s": 30, "visit_gap_s": 2}},
    })
    out: list[Record] = []
    vision = Vision(cfg, SystemClock(), "boot-1234", out.append, _stamp)
    status = vision.bcs_registry.load_all()
    assert status["bcs"]["state"] == "active", status
    assert "bcs" not in vision.registry.status()  # the farm folder has its own registry
    # The cow's RFID read at the station, a few seconds before she walks under.
    vision.note_reading(Reading("r1", "exit1", "rfid-reader", "t", {}, {}, {},
                                Stamp(995.0, 0, "boot", True),
                                attributes={"eid": "982 000000000018"}))
    t0 = 10**12
    for i, image in enumerate(frames):
        vision._process("exit", Frame("exit", i, image, t0 + i * 10**8, 1000.0 + i * 0.1, None))
    empty = np.full_like(frames[0], 2500)  # the floor, 2.5 m below the camera
    vision._process("exit", Frame("exit", 9, empty, t0 + 10**9, 1001.0, None))
    vision._empty("exit", Frame("exit", 9, empty, t0 + 10**9, 1001.0, None))
    assert out == []  # held for the join window
    vision._flush_pending(t0 + 31 * 10**9)  # the join window, on the monotonic clock
    assert len(out) == 1
    rec = out[0]
    assert isinstance(rec, BodyCondition)
    assert rec.frames == 4 and rec.animal_id == "A-18" and rec.model_version == "farm-1"
    assert 1.0 <= rec.low <= rec.bcs <= rec.high <= 5.0
    assert rec.details["identification"] == "rfid:982000000000018"
    # The id is the camera's and the visit's: a re-emitted visit is a duplicate.
    assert rec.record_id == stable_id("body_condition", "exit", rec.visit_id)
    assert rec.visit_id.startswith("boot-123")


def test_without_a_model_frames_are_dropped_not_fatal(tmp_path: Path) -> None:
    cfg = Config.model_validate({
        "gateway": {"data_dir": str(tmp_path)},
        "cameras": [{"id": "exit", "role": "bcs", "source": "replay", "uri": str(tmp_path)}],
        "vision": {"bcs": {"model_dir": str(tmp_path / "nothing-here")}},
    })
    out: list[Any] = []
    vision = Vision(cfg, SystemClock(), "boot", out.append, _stamp)
    status = vision.bcs_registry.load_all()
    assert status["bcs"]["state"] == "missing"
    frame = _frames(1, seed=4)[0]
    vision._process("exit", Frame("exit", 0, frame, 1, 1.0, None))
    vision._flush_pending(None)
    assert out == [] and "bcs" in vision.model_status()


def test_the_demo_exit_lane_camera_shows_herd_cows_between_empty_frames() -> None:
    from agent.sources.camera.factory import make_source
    from agent.sources.camera.synthetic_topview import EMPTY_FRAMES, SyntheticTopViewSource

    cam = CameraConfig(id="exit1", role="bcs", source="synthetic", uri="3", fps_cap=50,
                       width=360, height=300)
    src = make_source(cam)
    assert isinstance(src, SyntheticTopViewSource)
    src._paced = False
    src.open()
    frames = [src.read() for _ in range(EMPTY_FRAMES + 5)]
    shown = src.shown[0]
    assert shown.first_frame == EMPTY_FRAMES and 2.25 <= shown.bcs <= 4.0
    assert all(f is not None and f.shape == (300, 360, 3) for f in frames)
    empty, cow = frames[0], frames[EMPTY_FRAMES + 2]
    assert empty is not None and cow is not None
    assert np.array_equal(frames[0], frames[1])  # the empty lane stands still
    assert np.abs(cow.astype(int) - empty.astype(int)).mean() > 5  # a cow is in view
    # The same cow has the same body and score on every pass.
    assert SyntheticTopViewSource._cow(shown.animal_id)[1] == shown.bcs
