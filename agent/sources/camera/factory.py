"""Pick the backend a camera's config names."""

from __future__ import annotations

from agent.config.model import CameraConfig
from agent.sources.camera.base import FrameSource


def make_source(cfg: CameraConfig) -> FrameSource:
    """A new, unopened source for ``cfg``. Backends are imported here, on demand:
    picamera2 exists only on a Pi, and the synthetic barn only matters to demos."""
    if cfg.source == "opencv":
        from agent.sources.camera.opencv import OpenCVSource

        return OpenCVSource(cfg)
    if cfg.source == "picamera2":
        from agent.sources.camera.picam import PiCameraSource

        return PiCameraSource(cfg)
    if cfg.source == "replay":
        from agent.sources.camera.replay import ReplaySource

        return ReplaySource(cfg)
    if cfg.source == "synthetic" and cfg.role == "bcs":
        from agent.sources.camera.synthetic_topview import SyntheticTopViewSource

        return SyntheticTopViewSource(cfg)
    if cfg.source == "synthetic":
        from agent.sources.camera.synthetic import SyntheticSource

        return SyntheticSource(cfg)
    raise ValueError(f"unknown camera source {cfg.source!r}")
