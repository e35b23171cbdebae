"""Synthetic ear tags and barn frames: for building and a held-out check, not proof.

``render_scene`` and ``render_crop`` draw one labelled image from a seed and a
parameter set (``TRAIN``, ``DEV``, ``HELDOUT``); see ``params`` for the seed
rules and ``scene`` for the label format.
"""

from agent.sources.camera.synth.params import (
    DEV,
    EVAL_SEED_MIN,
    HELDOUT,
    SPLITS,
    TRAIN,
    SynthParams,
    check_seed,
)
from agent.sources.camera.synth.scene import render_crop, render_scene

__all__ = ["DEV", "EVAL_SEED_MIN", "HELDOUT", "SPLITS", "TRAIN", "SynthParams", "check_seed",
           "render_crop", "render_scene"]
