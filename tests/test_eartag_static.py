"""Text standing still for a minute (stall numbers, signs) is kept from the voter;
a tag on a moving head never is."""

from __future__ import annotations

from agent.vision.eartag.static import StaticTextFilter, iou
from agent.vision.eartag.types import TagReading

S = 1_000_000_000


def _r(number: str | None, box: tuple[int, int, int, int]) -> TagReading:
    return TagReading(number, 0.99, box)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert 0.3 < iou((0, 0, 10, 10), (5, 0, 10, 10)) < 0.34


def test_a_sign_seen_for_a_minute_is_dropped_after_that() -> None:
    f = StaticTextFilter(static_after_s=60, min_hits=5)
    sign = (400, 50, 80, 30)
    kept = [len(f.filter([_r("12", sign)], t * 5 * S)) for t in range(20)]  # every 5 s
    assert kept[:12] == [1] * 12  # up to 55 s: not yet known as static
    assert kept[12:] == [0] * 8  # from 60 s on: part of the barn
    assert f.static_boxes() == [sign]
    assert f.dropped == 8


def test_a_moving_tag_is_never_dropped() -> None:
    f = StaticTextFilter(static_after_s=60, min_hits=5)
    x, y = 300, 200
    for t in range(400):  # 200 s at 2 fps; a head moves by 3 px or more between frames
        x += (3 + t % 5) * (1 if (t // 7) % 2 else -1)
        y += (t % 3) - 1
        assert f.filter([_r("2386", (x, y, 40, 20))], t * S // 2), t
    assert f.dropped == 0


def test_a_cow_beside_a_sign_keeps_her_tag() -> None:
    f = StaticTextFilter(static_after_s=10, min_hits=3)
    sign = (10, 10, 60, 30)
    for t in range(6):
        f.filter([_r("7", sign)], t * 3 * S)
    out = f.filter([_r("7", sign), _r("1604", (500, 300, 50, 25))], 20 * S)
    assert [r.number for r in out] == ["1604"]


def test_places_are_forgotten_and_memory_is_bounded() -> None:
    f = StaticTextFilter(static_after_s=10, min_hits=2, forget_after_s=30, max_tracks=4)
    sign = (10, 10, 60, 30)
    for t in (0, 5, 11):
        f.filter([_r(None, sign)], t * S)
    assert f.static_boxes() == [sign]
    assert f.filter([_r(None, sign)], 100 * S)  # unseen for 89 s: forgotten, relearnt
    for i in range(10):
        f.filter([_r("1", (i * 100, 500, 30, 20))], 101 * S)
    assert len(f._tracks) <= 4
