"""The int8 TFLite forecaster: manifest integrity and the LiteRT runner."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.detect.anomaly.detector import DetectorConfig, SensorDetector
from agent.detect.anomaly.forecast import WINDOW
from agent.detect.anomaly.runner import MODELS_DIR, LiteRTRunner
from agent.errors import ConfigError
from tests.helpers_anomaly import series


def test_forecaster_manifest_entry_matches_its_file() -> None:
    # Every entry's hash, size and self-test: tests/test_models_manifest.py.
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    entries = [e for e in manifest["models"] if e["name"] == "forecaster_w32"]
    assert entries, "forecaster_w32 not listed"
    for entry in entries:
        blob = (MODELS_DIR / entry["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        assert entry["inputs"][0]["dtype"] == "int8"
        assert "synthetic" in entry["training"]["data"]


def test_runner_forecasts_a_smooth_window() -> None:
    runner = LiteRTRunner("forecaster_w32")
    ramp = np.linspace(-1.0, 1.0, WINDOW, dtype=np.float32)[None, :]
    pred = float(runner.run(ramp)[0, 0])
    # The next value of a rising ramp is near its end, not near its start.
    assert 0.3 < pred < 2.5


def test_runner_refuses_a_tampered_model(tmp_path: Path) -> None:
    shutil.copy(MODELS_DIR / "manifest.json", tmp_path / "manifest.json")
    entry = json.loads((tmp_path / "manifest.json").read_text())["models"][0]
    blob = bytearray((MODELS_DIR / entry["file"]).read_bytes())
    blob[-1] ^= 0xFF
    (tmp_path / entry["file"]).write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="sha256"):
        LiteRTRunner(entry["name"], models_dir=tmp_path)


def test_detector_with_model_channel_round_trips() -> None:
    cfg = DetectorConfig(w_model=1.0)
    rows = series(400)
    a = SensorDetector(cfg)
    for ts, v in rows[:200]:
        a.update(ts, v)
    b = SensorDetector.from_state(json.loads(json.dumps(a.to_state())))
    sa = [a.update(ts, v) for ts, v in rows[200:]]
    sb = [b.update(ts, v) for ts, v in rows[200:]]
    assert sa == sb and all(0.0 <= s <= 1.0 for s in sa)
