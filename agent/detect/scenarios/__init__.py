"""Labelled dairy scenarios (seeded, deterministic) and their evaluation."""

from agent.detect.scenarios.barn import KINDS, generate
from agent.detect.scenarios.evaluate import RuleScore, SimClock, run, score, score_raised
from agent.detect.scenarios.farms import HELDOUT, SPLITS, TRAIN, FarmParams, sample
from agent.detect.scenarios.model import Episode, Scenario

__all__ = ["HELDOUT", "KINDS", "SPLITS", "TRAIN", "Episode", "FarmParams", "RuleScore", "Scenario",
           "SimClock", "generate", "run", "sample", "score", "score_raised"]
