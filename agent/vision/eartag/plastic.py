"""Is a read number printed on an ear tag? The surface around the text.

A tag number is printed, centred, on a small moulded plastic body: the tag
colour goes on past the digits for a fraction of a text height and then stops
at the tag's edge. Text on a large surface (a wall, a door, a big white board)
has the same background going on for several text heights: that number is
not a tag's.

``margins`` measures how far the text's background colour goes on past each
side of the text box, in text heights, in the text's own rectified frame, so
it works for tilted tags too.

Measured on dev and left out (see scripts/eval_eartag.py): refusing numbers
whose plastic is lopsided (goes on at one end, stops at the other: a number
cut by an occluder) cost about two right reads for every wrong one saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from agent.vision.eartag.detect import TextBox
from agent.vision.eartag.read import order_corners

_H_PX = 20  # text height in the rectified window: enough for colour, cheap to warp


@dataclass(frozen=True, slots=True)
class Margins:
    """How far the background goes on past each side of the text box, in text
    heights, capped at the window (``side_cap`` along the text, ``vert_cap`` across)."""

    left: float
    right: float
    top: float
    bottom: float
    side_cap: float
    vert_cap: float

    def large_surface(self, side: float) -> bool:
        """The background goes on at least ``side`` text heights past BOTH ends of
        the line, or to the window's end both above and below: not a tag's plastic."""
        return (min(self.left, self.right) >= side
                or min(self.top, self.bottom) >= self.vert_cap - 1e-6)


def window(image_bgr: np.ndarray, box: TextBox, side: float, vert: float,
           ) -> tuple[np.ndarray, int, int]:
    """The text box grown by ``side`` text heights along the text and ``vert`` across
    it, rectified so the text is _H_PX tall: (window, side margin px, vert margin px)."""
    tl, tr, br, bl = order_corners(box.points())
    along, across = tr - tl, bl - tl
    w_img, h_img = float(np.linalg.norm(along)), float(np.linalg.norm(across))
    if h_img < 1 or w_img < 1:
        return np.zeros((0, 0, 3), np.uint8), 0, 0
    ua, uc = along / w_img, across / h_img
    s = _H_PX / h_img
    ex, ey = side * h_img, vert * h_img
    src = np.array([tl - ua * ex - uc * ey, tr + ua * ex - uc * ey,
                    br + ua * ex + uc * ey], dtype=np.float32)
    ww, wh = round((w_img + 2 * ex) * s), round((h_img + 2 * ey) * s)
    dst = np.array([[0, 0], [ww, 0], [ww, wh]], dtype=np.float32)
    m = cv2.getAffineTransform(src, dst)
    # Outside the frame is black: never the plastic's colour run going on.
    win = cv2.warpAffine(image_bgr, m, (ww, wh), flags=cv2.INTER_AREA,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return win, round(ex * s), round(ey * s)


def margins(image_bgr: np.ndarray, box: TextBox, side: float = 2.0,
            vert: float = 1.5) -> Margins | None:
    """Background margins of the text in ``box`` (pixels of ``image_bgr``); None when
    the box is too small to say."""
    win, mx, my = window(image_bgr, box, side, vert)
    if win.size == 0:
        return None
    x0, x1, y0, y1 = mx, win.shape[1] - mx, my, win.shape[0] - my
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    lab = cv2.cvtColor(win, cv2.COLOR_BGR2LAB).astype(np.float32)
    grey = cv2.cvtColor(win[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    _, cls = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    fg = cls.astype(bool)
    surface = fg if fg.sum() >= (~fg).sum() else ~fg  # ink is the minority class
    bg = lab[y0:y1, x0:x1][surface]
    if len(bg) < 8:
        return None
    mean = bg.mean(axis=0)
    tol = float(np.linalg.norm(bg.std(axis=0))) * 2.0 + 12.0
    mask = (np.linalg.norm(lab - mean, axis=2) < tol).astype(np.uint8)
    mask[y0:y1, x0:x1] = 1  # the digits are on the surface
    # Only surface connected to the text counts (a same-coloured thing nearby does not).
    _, labels = cv2.connectedComponents(mask, connectivity=4)
    mask = (labels == labels[(y0 + y1) // 2, (x0 + x1) // 2]).astype(np.uint8)
    band = mask[y0 + (y1 - y0) // 4: y1 - (y1 - y0) // 4]  # middle half of the text rows
    cols = mask[:, x0 + (x1 - x0) // 4: x1 - (x1 - x0) // 4]  # middle half of its columns

    def run(strips: np.ndarray) -> float:
        """Median length of the surface run from the box edge outwards, one per row."""
        if strips.shape[1] == 0:
            return 0.0
        lengths = np.where(strips.all(axis=1), strips.shape[1], strips.argmin(axis=1))
        return float(np.median(lengths)) / _H_PX

    return Margins(left=run(band[:, :x0][:, ::-1]), right=run(band[:, x1:]),
                   top=run(cols[:y0][::-1].T), bottom=run(cols[y1:].T),
                   side_cap=mx / _H_PX, vert_cap=my / _H_PX)
