"""The per-frame ear-tag reader with the real models from models/.

Clear generated tags must read exactly; text that is not a tag number (a sign
with letters, random texture, a number cut by the frame edge) must give no
number at all: a wrong number is worse than none.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agent.sources.camera.synth import DEV, render_crop, render_scene
from agent.vision.eartag.detect import DetParams, TextBox
from agent.vision.eartag.frame import EartagReader, ReaderParams, grown
from agent.vision.eartag.models import open_eartag_runners
from agent.vision.eartag.plastic import margins
from agent.vision.eartag.read import RecParams, accept, ctc_decode

MODELS = Path(__file__).resolve().parents[1] / "models"

# Generator settings for "clear" tags: nothing hidden, blurred or night-time.
CLEAR = DEV.with_(
    two_line_p=0.0, digits=(3, 5), digit_height_px=(34.0, 50.0), yaw_deg=(-15.0, 15.0),
    pitch_deg=(-10.0, 10.0), roll_deg=(-10.0, 10.0), motion_blur_p=0.0, gauss_blur_p=0.0,
    jpeg_quality=(85, 95), ir_p=0.0, dirt_p=0.0, fade_p=0.0, hair_p=0.0, bar_p=0.0,
    glare_p=0.0, tiny_p=0.0,
)


@pytest.fixture(scope="module")
def reader() -> EartagReader:
    det, rec = open_eartag_runners(MODELS, threads=1)
    return EartagReader(det, rec, r"^[0-9]{1,6}$")


def numbers(readings: list) -> list[str]:
    return [r.number for r in readings if r.number is not None]


def plate(text: str, size: tuple[int, int] = (1280, 720), at: tuple[int, int] = (500, 300),
          scale: float = 1.4, colour: tuple[int, int, int] = (20, 205, 245)) -> np.ndarray:
    """A grey frame with one plate of black text."""
    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 4)
    x, y = at
    cv2.rectangle(img, (x - 16, y - th - 16), (x + tw + 16, y + 16), colour, -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (15, 15, 15), 4, cv2.LINE_AA)
    return img


@pytest.mark.parametrize("seed", [1000, 1001, 1002, 1003, 1004, 1005])
def test_clear_generated_crops_read_exactly(reader: EartagReader, seed: int) -> None:
    img, label = render_crop(seed, CLEAR)
    assert numbers(reader.read(img)) == [label["tags"][0]["number"]]  # type: ignore[index]


def _clear_scenes(count: int) -> list[tuple[np.ndarray, dict]]:
    """Scenes whose tags are all in full view (partly hidden tags are a known limit:
    a digit wholly behind another tag can go unseen, see docs/vision.md)."""
    out = []
    seed = 2000
    while len(out) < count:
        img, label = render_scene(seed, CLEAR)
        tags = label["tags"]
        if tags and all(t["legible"] and t["covered"] == 0 for t in tags):  # type: ignore[attr-defined]
            out.append((img, label))
        seed += 1
    return out


def test_scene_reports_only_numbers_that_are_there(reader: EartagReader) -> None:
    read_any = 0
    for img, label in _clear_scenes(3):
        truth = {t["number"] for t in label["tags"]}
        got = reader.read(img)
        for r in got:
            x, y, w, h = r.box
            assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]
        assert set(numbers(got)) <= truth, (label["seed"], numbers(got), truth)
        read_any += len(set(numbers(got)) & truth)
    assert read_any >= 3


def test_plain_tag_in_a_frame_reads_with_its_box(reader: EartagReader) -> None:
    got = [r for r in reader.read(plate("2386")) if r.number]
    assert [r.number for r in got] == ["2386"]
    x, y, w, h = got[0].box
    assert 480 <= x <= 510 and 250 <= y <= 300 and 100 <= w <= 220 and 25 <= h <= 80
    assert got[0].confidence > 0.9 and len(got[0].digit_confidences) == 4


@pytest.mark.parametrize("text", ["EXIT 12", "PEN B4", "NO 7A"])
def test_text_with_letters_gives_no_number(reader: EartagReader, text: str) -> None:
    assert numbers(reader.read(plate(text, colour=(235, 235, 235)))) == []


def test_random_texture_gives_no_number(reader: EartagReader) -> None:
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    assert numbers(reader.read(noise)) == []
    assert numbers(reader.read(noise[:200, :300].copy())) == []


def test_number_cut_by_the_frame_edge_is_not_reported(reader: EartagReader) -> None:
    img = plate("85878", at=(1180, 300))  # runs off the right edge: only "858" is visible
    assert numbers(reader.read(img)) == []


def test_small_line_above_the_big_number_is_dropped(reader: EartagReader) -> None:
    img = plate("4417", at=(500, 360), scale=1.8)
    cv2.putText(img, "123456", (505, 300), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (15, 15, 15), 2,
                cv2.LINE_AA)
    assert numbers(reader.read(img)) == ["4417"]


def test_a_crop_around_one_tag_reads(reader: EartagReader) -> None:
    img = plate("517", size=(200, 110), at=(40, 75))
    assert numbers(reader.read(img)) == ["517"]


def test_grey_image_is_read_too(reader: EartagReader) -> None:
    grey = cv2.cvtColor(plate("2386"), cv2.COLOR_BGR2GRAY)
    assert numbers(reader.read(grey)) == ["2386"]


def board(text: str) -> np.ndarray:
    """A grey frame with a large white board (a wall sign) and ``text`` on it, the
    digits as big as plate()'s."""
    img = np.full((720, 1280, 3), 90, np.uint8)
    cv2.rectangle(img, (300, 150), (900, 550), (235, 235, 235), -1)
    cv2.putText(img, text, (560, 370), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (15, 15, 15), 4,
                cv2.LINE_AA)
    return img


def test_number_on_a_large_board_is_not_reported(reader: EartagReader) -> None:
    assert numbers(reader.read(board("27"))) == []
    assert numbers(reader.read(plate("27"))) == ["27"]  # the same digits on a tag's plastic
    off = EartagReader(reader.det, reader.rec, params=ReaderParams(surface_side=0))
    assert numbers(off.read(board("27"))) == ["27"]  # the check is what refuses it


def _line_box(x0: float, x1: float, y0: float = 262.0, y1: float = 312.0) -> TextBox:
    return TextBox(((x0 + x1) / 2, (y0 + y1) / 2), (x1 - x0, y1 - y0), 0.0, 0.9)


def test_plastic_margins_tell_a_tag_from_a_board() -> None:
    tag = margins(plate("27"), _line_box(496, 554))
    wall = margins(board("27"), _line_box(556, 614, 322, 372))
    assert tag is not None and wall is not None
    assert max(tag.left, tag.right) < 0.6 and not tag.large_surface(1.0)
    assert min(wall.left, wall.right) >= 1.0 and wall.large_surface(1.0)


def test_grown_lengthens_the_line_not_its_height() -> None:
    # A two-digit box is taller than wide; the reading direction is still x.
    box = TextBox((100.0, 50.0), (40.0, 50.0), 0.0, 0.9)
    pts = grown(box, 0.2)
    assert pts[:, 0].max() - pts[:, 0].min() == pytest.approx(40 + 2 * 0.2 * 50, abs=0.5)
    assert pts[:, 1].max() - pts[:, 1].min() == pytest.approx(50, abs=0.5)


def test_a_longer_read_showing_more_digits_refuses_the_number(reader: EartagReader) -> None:
    img = plate("46331")  # 131 px of digits from x=500
    off = EartagReader(reader.det, reader.rec, params=ReaderParams(reread_grow=0))
    # Boxes that stop inside a digit (as one does at an occluder or faint ink) read
    # as a shorter number; a little more of the line shows the cut digit.
    for x1, prefix in ((556, "46"), (608, "4633")):
        part = _line_box(494, x1)
        assert off._read_box(img, part, 0, 1280, 720).number == prefix
        assert reader._read_box(img, part, 0, 1280, 720).number is None, x1
    whole = _line_box(494, 636)
    assert not reader._conflicts(img, whole, "46331")
    assert reader._read_box(img, whole, 0, 1280, 720).number == "46331"


def _barred(x: int) -> np.ndarray:
    img = plate("85878")
    cv2.rectangle(img, (x, 200), (x + 40, 420), (120, 120, 120), -1)
    return img


def test_a_bar_across_the_number_leaves_no_number(reader: EartagReader) -> None:
    assert numbers(reader.read(_barred(590))) == []  # hides the middle of '7'


@pytest.mark.xfail(strict=False, reason=(
    "known weakness: on some CPUs (numpy/OpenCV/onnxruntime vector maths) a bar over "
    "the right half of the last '8' is read through as 85878, and a bar over the first "
    "digit leaves the rest read as a shorter number; the reader needs an occluder check"))
def test_a_bar_over_the_last_digit_leaves_no_number(reader: EartagReader) -> None:
    assert numbers(reader.read(_barred(610))) == []


def test_two_stage_reads_from_full_resolution_windows(reader: EartagReader) -> None:
    img = plate("2386", scale=0.9)
    two = EartagReader(reader.det, reader.rec,
                       params=ReaderParams(det=DetParams(max_side=640), refine_text_px=40))
    got = [r for r in two.read(img) if r.number]
    one = [r for r in reader.read(img) if r.number]
    assert [r.number for r in got] == [r.number for r in one] == ["2386"]
    (x, y, w, h), (x1, y1, w1, h1) = got[0].box, one[0].box
    inter = max(0, min(x + w, x1 + w1) - max(x, x1)) * max(0, min(y + h, y1 + h1) - max(y, y1))
    assert inter > 0.6 * max(w * h, w1 * h1)  # the same text line


def _probs(seq: list[tuple[int, float]]) -> np.ndarray:
    """(T, 13) probabilities: each step puts ``p`` on its class, the rest spread."""
    out = np.zeros((len(seq), 13), np.float32)
    for t, (cls, p) in enumerate(seq):
        out[t] = (1 - p) / 12
        out[t, cls] = p
    return out


def test_ctc_decode_keeps_repeats_split_by_blank_and_refuses_other() -> None:
    d = ctc_decode(_probs([(2, 0.99), (2, 0.9), (0, 0.9), (2, 0.95), (4, 0.97)]))
    assert d.text == "113" and d.digit_confidences == pytest.approx((0.99, 0.95, 0.97))
    assert accept(d, RecParams()) == ("113", d.digit_confidences)
    letter = ctc_decode(_probs([(2, 0.99), (12, 0.8), (4, 0.99)]))
    assert letter.text == "1?3" and accept(letter, RecParams()) is None
    spaced = ctc_decode(_probs([(11, 0.9), (2, 0.99), (11, 0.9)]))
    assert accept(spaced, RecParams()) == ("1", (pytest.approx(0.99),))
    inner_space = ctc_decode(_probs([(2, 0.99), (11, 0.9), (3, 0.99)]))
    assert accept(inner_space, RecParams()) is None


def test_a_doubtful_digit_refuses_the_number() -> None:
    d = ctc_decode(_probs([(2, 0.99), (5, 0.6), (4, 0.99)]))
    assert d.text == "143"
    assert accept(d, RecParams(min_digit_confidence=0.8)) is None
    assert accept(d, RecParams(min_digit_confidence=0.5)) is not None
