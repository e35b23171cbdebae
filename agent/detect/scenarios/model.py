"""What a labelled scenario is: readings in time order and ground-truth episodes."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.records import Reading


@dataclass(slots=True)
class Episode:
    """Ground truth: ``rule`` should alert on ``subject`` between start and end (seconds).

    ``subject`` is a sensor id for tank, barn and sensor rules and an animal id
    for cow rules. ``ignore`` marks ambiguous spans: alerts there count neither
    way. ``kind`` names the variant (e.g. clinical / subclinical).
    """

    rule: str
    subject: str
    start: float
    end: float
    kind: str = ""
    ignore: bool = False
    pre_s: float = 0.0  # alerts this long before start still count (noisy onsets)
    # When the fault first shows in any signal (e.g. a dead compressor is invisible
    # until the thermostat calls for cooling); None: from the start.
    observable_s: float | None = None


@dataclass(slots=True)
class Scenario:
    name: str
    seed: int
    readings: list[Reading]
    episodes: list[Episode]
    duration_s: float
    mono0_s: float
    notes: dict[str, str] = field(default_factory=dict)
