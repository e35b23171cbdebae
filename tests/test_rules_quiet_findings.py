"""The rules skip building a "hold" or "clear" for a subject with no alert open
or pending (the lifecycle would drop it): the alerts are the same as when every
finding is built and handed over."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.config.model import Config
from agent.detect.rules.base import every_key_tracked
from agent.detect.scenarios import generate, sample
from agent.runtime.replay import Replayer, replay_lines
from agent.runtime.scenario_replay import lines


def _replay(every_finding: bool) -> tuple[list[dict[str, object]], dict[str, Any]]:
    farm = replace(sample("heldout", 150), cows=12)
    scenario = generate("mixed", 150, days=7, params=farm)
    rep = Replayer(Config())
    engine = rep.detection.rules
    if every_finding:
        for rule in engine.rules:
            rule.tracked = every_key_tracked
    alerts = list(replay_lines(rep, lines(scenario)))
    return alerts, engine.to_state()


def test_skipping_quiet_findings_changes_no_alert() -> None:
    skipped, skipped_state = _replay(False)
    built, built_state = _replay(True)
    assert skipped == built
    # The lifecycle's tracks (open, pending, clearing) and every rule's state too.
    assert skipped_state == built_state
    raised = {a["rule"] for a in skipped}
    assert {"cooling", "estrus", "heat_stress", "rumination"} <= raised, raised  # exercised
