"""Labelled dairy scenarios (seeded, deterministic) and their evaluation."""

from agent.detect.scenarios.barn import KINDS, generate
from agent.detect.scenarios.evaluate import RuleScore, SimClock, run, score
from agent.detect.scenarios.model import Episode, Scenario

__all__ = ["KINDS", "Episode", "RuleScore", "Scenario", "SimClock", "generate", "run", "score"]
