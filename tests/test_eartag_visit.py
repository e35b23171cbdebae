"""Visit voting: noisy per-frame readings -> one trustworthy identification, or review.

Time is given as monotonic nanoseconds; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from agent.config.model import EartagConfig
from agent.metrics import IDENTIFICATIONS
from agent.records.types import Identification, Stamp, stable_id
from agent.vision.eartag.register import HerdRegister
from agent.vision.eartag.types import TagReading
from agent.vision.eartag.visit import VisitResult, VisitTracker

S = 1_000_000_000
T0 = 100 * S  # monotonic time of the first frame
WALL0 = 1_780_000_000.0
FRAME = S // 5  # 5 inferred frames a second


class Stamps:
    """The tracker's stamp factory: counts calls, never reads a clock."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> Stamp:
        self.calls += 1
        return Stamp(wall_ts=WALL0 + 60, mono_ns=T0 + 60 * S, boot_id="boot-1", clock_synced=True)


def _tracker(
    register: HerdRegister | None = None, boot: str = "boot-1", **cfg: object
) -> VisitTracker:
    config = EartagConfig.model_validate(
        {"min_confidence": 0.9, "visit_gap_s": 3.0, "max_visit_s": 60.0, "rfid_window_s": 15.0}
        | cfg
    )
    return VisitTracker(
        config,
        "lane-cam",
        boot_id=boot,
        stamp=Stamps(),
        station="lane-1",
        register=register,
        model_versions=lambda: {"tag-detector": "1.2.0", "tag-reader": "0.9.1"},
    )


def _read(number: str | None, conf: float, crop: np.ndarray | None = None) -> TagReading:
    return TagReading(number=number, confidence=conf, box=(10, 20, 40, 30), crop=crop)


def _feed(
    tracker: VisitTracker,
    frames: Sequence[Sequence[TagReading]],
    start_ns: int = T0,
    first_index: int = 0,
) -> tuple[list[VisitResult], int]:
    """Frames FRAME apart from ``start_ns``; what closed, and the last frame's time."""
    out: list[VisitResult] = []
    now = start_ns
    for i, readings in enumerate(frames):
        now = start_ns + i * FRAME
        out += tracker.add(now, WALL0 + (now - T0) / S, first_index + i, list(readings))
    return out, now


def _one(tracker: VisitTracker, frames: Sequence[Sequence[TagReading]]) -> Identification:
    closed, _ = _feed(tracker, frames)
    closed += tracker.flush()
    assert len(closed) == 1
    return closed[0].identification


@pytest.fixture
def herd(tmp_path: Path) -> HerdRegister:
    path = tmp_path / "herd.csv"
    path.write_text(
        "animal_id,tag_number,eid\n"
        "DE-2386,2386,982000000002386\n"
        "DE-0042,0042,982000000000042\n"
        "DE-1177,1177,982000000001177\n"
        "DE-5501,5501,\n"
    )
    return HerdRegister.load(path)


# -- voting ---------------------------------------------------------------------


def test_one_misread_frame_among_five_gives_the_right_number() -> None:
    frames = [[_read("2386", 0.93)], [_read("2366", 0.9)], [_read("2386", 0.95)],
              [_read("2386", 0.88)], [_read("2386", 0.91)]]
    ident = _one(_tracker(), frames)
    assert ident.status == "identified"
    assert ident.tag_number == "2386"
    assert 0.9 <= ident.confidence <= 1.0
    ev = ident.evidence
    assert ev["frames_seen"] == 5 and ev["frames_read"] == 5 and ev["frames_used"] == 4
    assert ev["readings"][1] == [1, "2366", 0.9]
    assert ev["votes"]["2386"]["frames"] == 4 and ev["votes"]["2366"]["frames"] == 1
    assert ident.flags == []
    assert ident.model_versions == {"tag-detector": "1.2.0", "tag-reader": "0.9.1"}


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [("2386", "2366", "low_confidence"), ("2386", "7104", "two_numbers")],
)
def test_two_numbers_split_evenly_report_nothing(a: str, b: str, reason: str) -> None:
    frames = [[_read(a, 0.95)], [_read(b, 0.95)], [_read(a, 0.95)], [_read(b, 0.95)]]
    ident = _one(_tracker(), frames)
    assert ident.status == "review"
    assert ident.tag_number is None and ident.animal_id is None
    assert ident.flags == [reason]
    assert ident.evidence["candidate"] in (a, b)
    assert ident.evidence["frames_used"] == 0
    assert set(ident.evidence["votes"]) == {a, b}


def test_a_strong_second_number_far_away_is_two_tags_not_a_pick() -> None:
    frames = [[_read("2386", 0.95)]] * 5 + [[_read("7104", 0.95)]] * 2
    assert _one(_tracker(), frames).flags == ["two_numbers"]
    # ... while the same support one digit away is a misread, outvoted.
    frames = [[_read("2386", 0.95)]] * 5 + [[_read("2886", 0.95)]] * 2
    ident = _one(_tracker(), frames)
    assert ident.status == "identified" and ident.tag_number == "2386"


def test_a_single_frame_never_names_a_cow() -> None:
    ident = _one(_tracker(), [[_read("2386", 0.999)]])
    assert ident.status == "review" and ident.tag_number is None
    assert ident.flags == ["too_few_frames"]
    # Both ears read in that one frame are still one frame.
    ident = _one(_tracker(), [[_read("2386", 0.99), _read("2386", 0.98)]])
    assert ident.flags == ["too_few_frames"]
    # Two frames that agree with confidence are enough.
    ident = _one(_tracker(), [[_read("2386", 0.95)], [_read("2386", 0.96)]])
    assert ident.status == "identified" and ident.tag_number == "2386"


def test_numbers_off_the_tag_pattern_are_never_reported() -> None:
    frames = [[_read("123", 0.99)], [_read("12a4", 0.99)], [_read("123", 0.99)]] * 3
    ident = _one(_tracker(tag_pattern=r"^[0-9]{4}$"), frames)
    assert ident.status == "review" and ident.tag_number is None
    assert ident.flags == ["no_number"]
    assert ident.evidence["rejected_pattern"] == 9
    assert ident.evidence["votes"] == {}
    assert all(r[1] is None for r in ident.evidence["readings"])


def test_unread_tags_make_a_review_visit_and_low_confidence_is_not_claimed() -> None:
    ident = _one(_tracker(), [[_read(None, 0.4)]] * 6)
    assert ident.status == "review" and ident.flags == ["no_number"]
    assert ident.confidence == 0.0 and ident.evidence["frames_seen"] == 6
    ident = _one(_tracker(), [[_read("2386", 0.55)], [_read("2386", 0.5)]])
    assert ident.status == "review" and ident.flags == ["low_confidence"]
    assert ident.tag_number is None and ident.evidence["candidate"] == "2386"
    assert 0 < ident.confidence < 0.9


def test_leading_zeros_vote_together() -> None:
    frames = [[_read("0042", 0.9)], [_read("042", 0.8)], [_read("0042", 0.92)]]
    ident = _one(_tracker(), frames)
    assert ident.status == "identified" and ident.tag_number == "0042"
    assert ident.evidence["frames_used"] == 3


def test_bad_tag_pattern_is_a_config_error() -> None:
    # The config refuses it when the file is loaded (the agent then starts in safe
    # mode and `config check` says why), before any tracker is made.
    with pytest.raises(ValidationError, match="tag_pattern"):
        _tracker(tag_pattern="([0-9")


# -- register --------------------------------------------------------------------


def test_register_sets_the_animal_and_its_spelling(herd: HerdRegister) -> None:
    ident = _one(_tracker(herd), [[_read("42", 0.95)]] * 3)
    assert ident.status == "identified"
    assert ident.animal_id == "DE-0042" and ident.tag_number == "0042"


def test_a_number_not_in_the_register_is_flagged_not_dropped(herd: HerdRegister) -> None:
    ident = _one(_tracker(herd), [[_read("2387", 0.96)]] * 4)
    assert ident.status == "flagged" and ident.flags == ["not_in_register"]
    assert ident.tag_number == "2387" and ident.animal_id is None
    assert ident.evidence["register_near"] == ["2386"]


# -- RFID ------------------------------------------------------------------------


def _rfid_visit(
    herd: HerdRegister, frames: Sequence[Sequence[TagReading]], eid: str, read_at_ns: int
) -> tuple[VisitTracker, list[VisitResult], int]:
    tracker = _tracker(herd)
    tracker.note_rfid(eid, read_at_ns, WALL0 + (read_at_ns - T0) / S)
    closed, last = _feed(tracker, frames)
    return tracker, closed, last


def test_rfid_agreement_raises_confidence_and_waits_for_the_window(herd: HerdRegister) -> None:
    frames = [[_read("2386", 0.9)], [_read("2366", 0.9)], [_read("2386", 0.9)]]
    plain = _one(_tracker(herd), frames)
    tracker, closed, last = _rfid_visit(herd, frames, "982 000000002386", T0 + 2 * S)
    assert closed == []
    assert tracker.tick(last + 4 * S) == []  # closed by the gap, held for late EID reads
    assert tracker.open_visit is False and tracker.held == 1
    done = tracker.tick(last + 15 * S)
    assert len(done) == 1
    ident = done[0].identification
    assert ident.status == "identified" and ident.animal_id == "DE-2386"
    assert ident.rfid_eid == "982000000002386" and ident.rfid_agrees is True
    assert ident.confidence > plain.confidence
    assert ident.evidence["rfid"]["animal_id"] == "DE-2386"


def test_rfid_read_after_the_visit_is_matched(herd: HerdRegister) -> None:
    tracker = _tracker(herd)
    tracker.note_rfid("982000000001177", T0 - 30 * S, WALL0 - 30)  # an earlier cow
    _, last = _feed(tracker, [[_read("2386", 0.95)]] * 3)
    tracker.note_rfid("982000000002386", last + 5 * S, WALL0 + 5)
    done = tracker.tick(last + 16 * S)
    assert [d.identification.rfid_agrees for d in done] == [True]


def test_rfid_disagreement_is_flagged_and_both_kept(herd: HerdRegister) -> None:
    tracker, _, last = _rfid_visit(herd, [[_read("2386", 0.97)]] * 4, "982000000001177", T0)
    (result,) = tracker.tick(last + 20 * S)
    ident = result.identification
    assert ident.status == "flagged" and ident.flags == ["rfid_mismatch"]
    assert ident.tag_number == "2386" and ident.animal_id == "DE-2386"
    assert ident.rfid_eid == "982000000001177" and ident.rfid_agrees is False
    assert ident.evidence["rfid"]["animal_id"] == "DE-1177"


def test_rfid_vouches_for_a_low_confidence_number_but_not_for_one_frame(
    herd: HerdRegister,
) -> None:
    weak = [[_read("2386", 0.6)], [_read(None, 0.3)], [_read("2386", 0.62)]]
    assert _one(_tracker(herd), weak).status == "review"
    tracker, _, _ = _rfid_visit(herd, weak, "982000000002386", T0 + S)
    (result,) = tracker.flush()
    assert result.identification.status == "identified"
    assert result.identification.confidence >= 0.9
    tracker, _, _ = _rfid_visit(herd, [[_read("2386", 0.99)]], "982000000002386", T0)
    (result,) = tracker.flush()
    ident = result.identification
    assert ident.status == "review" and ident.tag_number is None
    assert ident.rfid_eid == "982000000002386" and ident.rfid_agrees is None


def test_rfid_reads_outside_the_window_or_nearer_the_next_cow_are_not_used(
    herd: HerdRegister,
) -> None:
    tracker = _tracker(herd)
    tracker.note_rfid("982000000001177", T0 - 16 * S, WALL0 - 16)  # before the window
    closed, last = _feed(tracker, [[_read("2386", 0.97)]] * 3)
    nxt = last + 4 * S  # the next cow, 4 s later
    tracker.note_rfid("982000000001177", nxt + S, WALL0 + 5)  # read as she walks in
    closed += _feed(tracker, [[_read("1177", 0.97)]] * 3, start_ns=nxt)[0]
    closed += tracker.flush()
    first, second = (c.identification for c in closed)
    assert first.tag_number == "2386" and first.rfid_eid is None and first.status == "identified"
    assert second.tag_number == "1177" and second.rfid_agrees is True


def test_an_agreeing_read_is_used_by_one_visit_only(herd: HerdRegister) -> None:
    tracker = _tracker(herd, max_visit_s=2.0)
    tracker.note_rfid("982000000002386", T0 + S, WALL0 + 1)
    # She stands in view for 4 s: two visits (cut at max_visit_s), one EID read.
    closed, _ = _feed(tracker, [[_read("2386", 0.97)]] * 20)
    closed += tracker.flush()
    assert [c.identification.evidence["closed_by"] for c in closed] == ["max_length", "flush"]
    assert [c.identification.rfid_agrees for c in closed] == [True, None]


# -- visits: closing, ids, bounds -------------------------------------------------


def test_visit_closes_after_the_gap_on_given_monotonic_time() -> None:
    tracker = _tracker()
    closed, last = _feed(tracker, [[_read("2386", 0.95)]] * 5)
    assert closed == [] and tracker.open_visit
    assert tracker.tick(last + 3 * S) == []  # exactly the gap: still open
    assert tracker.open_visit
    (result,) = tracker.tick(last + 3 * S + 1)
    assert result.identification.evidence["closed_by"] == "gap"
    assert result.identification.started_wall_ts == WALL0
    assert result.identification.ended_wall_ts == WALL0 + (last - T0) / S
    # Frames without tags do not extend a visit, and a later tag starts a new one.
    closed, last = _feed(tracker, [[_read("1177", 0.95)]] * 2 + [[]] * 20, start_ns=last + 10 * S)
    assert len(closed) == 1 and closed[0].identification.tag_number == "1177"
    assert closed[0].identification.evidence["frames_seen"] == 2


def test_visit_is_cut_at_max_length() -> None:
    tracker = _tracker(max_visit_s=5.0)
    closed, _ = _feed(tracker, [[_read("2386", 0.95)]] * 40)  # 8 s in view
    assert len(closed) == 1
    ident = closed[0].identification
    assert ident.evidence["closed_by"] == "max_length"
    assert ident.evidence["frames_seen"] == 25 and ident.evidence["duration_s"] == 4.8
    rest = tracker.flush()
    assert len(rest) == 1 and rest[0].identification.evidence["first_frame"] == 25
    assert rest[0].identification.record_id != ident.record_id


def test_record_id_is_deterministic() -> None:
    frames = [[_read("2386", 0.95)]] * 3

    def ids(boot: str, start: int) -> tuple[str, str]:
        tracker = _tracker(boot=boot)
        closed, _ = _feed(tracker, frames, start_ns=start)
        ident = (closed + tracker.flush())[0].identification
        return ident.record_id, ident.visit_id

    assert ids("boot-1", T0) == ids("boot-1", T0)
    record_id, visit_id = ids("boot-1", T0)
    assert record_id == stable_id("identification", "lane-cam", visit_id)
    assert ids("boot-2", T0) != (record_id, visit_id)
    assert ids("boot-1", T0 + 1) != (record_id, visit_id)


def test_stamps_come_from_the_factory_and_metrics_count() -> None:
    tracker = _tracker()
    before = IDENTIFICATIONS.labels(status="identified")._value.get()
    ident = _one(tracker, [[_read("2386", 0.95)]] * 3)
    assert ident.stamp.wall_ts == WALL0 + 60 and ident.stamp.boot_id == "boot-1"
    assert ident.station == "lane-1" and ident.camera_id == "lane-cam"
    assert IDENTIFICATIONS.labels(status="identified")._value.get() == before + 1


def test_crops_and_evidence_are_bounded() -> None:
    tracker = _tracker()
    frames = []
    for i in range(60):
        crop = np.full((30, 40, 3), i, dtype=np.uint8)
        frames.append([_read("2386", 0.5 + i / 200, crop)])
    closed, _ = _feed(tracker, frames)
    # The reader reuses its buffers: the tracker must have kept copies.
    for readings in frames:
        assert readings[0].crop is not None
        readings[0].crop[:] = 255
    (result,) = closed + tracker.flush()
    assert [int(c[0, 0, 0]) for c in result.crops] == [59, 58, 57]
    ev = result.identification.evidence
    assert len(ev["readings"]) == 40 and ev["readings_dropped"] == 20
    assert ev["frames_seen"] == 60


def test_an_empty_lane_ends_the_visit_even_within_the_gap(herd: HerdRegister) -> None:
    """Cows walk nose to tail: the gap between them can be shorter than visit_gap_s.
    The presence gate seeing the empty lane ends the first cow's visit."""
    tracker = _tracker(herd)
    first, now = _feed(tracker, [[_read("2386", 0.97)]] * 4)
    assert first == [] and tracker.open_visit
    ended = tracker.end_visit(now + FRAME)  # 0.5 s later: well inside the 3 s gap
    assert not tracker.open_visit
    second, now = _feed(tracker, [[_read("1177", 0.97)]] * 4, start_ns=now + 2 * FRAME,
                        first_index=10)
    closed = ended + second + tracker.flush()
    numbers = [r.identification.tag_number for r in closed]
    assert numbers == ["2386", "1177"]
    assert all(r.identification.status == "identified" for r in closed)
    assert tracker.end_visit(now + 10 * S) == []  # nothing open: nothing to end
