"""Text that never moves is not an ear tag.

A fixed camera sees the same stall numbers, signs and painted pen numbers in
every frame, at exactly the same pixels. A tag on a cow's ear never stays
put: the head moves by more than a few pixels within seconds. So text seen
at the same box (intersection over union above ``min_iou``), in most of the
frames looked at (``min_share``; a cow may hide it now and then), over more than
``static_after_s`` (two minutes) of monotonic time is taken as part of the barn and its
readings are kept away from the visit voter: they would otherwise open a
review visit at every presence-gate keepalive, or join a real cow's visit as a
second number. (A cow held in a headlock with her tag within a pixel or two of
one place for two minutes would be missed after those two minutes; her visit
has been closed and reported by then: ``max_visit_s``.)

Memory is bounded (``max_tracks``); places not seen for ``forget_after_s``
are forgotten, so a sign taken down or a camera moved is relearnt.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.vision.eartag.types import TagReading

_NS = 1_000_000_000


@dataclass(slots=True)
class _Track:
    box: tuple[int, int, int, int]
    first_ns: int
    last_ns: int
    first_frame: int
    hits: int = 1


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class StaticTextFilter:
    """Drops readings at places where text has stood still for long. Per camera;
    not thread-safe (used on the vision worker)."""

    def __init__(
        self,
        static_after_s: float = 120.0,
        min_hits: int = 5,
        min_share: float = 0.6,
        min_iou: float = 0.9,
        forget_after_s: float = 600.0,
        max_tracks: int = 64,
    ) -> None:
        self.static_after_ns = int(static_after_s * _NS)
        self.min_hits = min_hits
        self.min_share = min_share
        self._frames = 0
        self.min_iou = min_iou
        self.forget_after_ns = int(forget_after_s * _NS)
        self.max_tracks = max_tracks
        self._tracks: list[_Track] = []
        self.dropped = 0

    def filter(self, readings: list[TagReading], mono_ns: int) -> list[TagReading]:
        """The readings that may be ear tags; static ones are counted and left out."""
        self._frames += 1
        self._tracks = [t for t in self._tracks if mono_ns - t.last_ns <= self.forget_after_ns]
        kept = []
        for reading in readings:
            track = self._match(reading.box)
            if track is None:
                self._add(_Track(reading.box, mono_ns, mono_ns, self._frames))
                kept.append(reading)
                continue
            if mono_ns > track.last_ns:
                track.hits += 1
                track.last_ns = mono_ns
            if self._static(track):
                self.dropped += 1
            else:
                kept.append(reading)
        return kept

    def static_boxes(self) -> list[tuple[int, int, int, int]]:
        """Where text is taken as part of the barn (for the status page and tests)."""
        return [t.box for t in self._tracks if self._static(t)]

    def _static(self, track: _Track) -> bool:
        # Seen in most frames since it first appeared: a head that passes the
        # same spot now and then is not a sign.
        share = track.hits / max(1, self._frames - track.first_frame + 1)
        return (track.hits >= self.min_hits and share >= self.min_share
                and track.last_ns - track.first_ns >= self.static_after_ns)

    def _match(self, box: tuple[int, int, int, int]) -> _Track | None:
        best, best_iou = None, self.min_iou
        for track in self._tracks:
            overlap = iou(track.box, box)
            if overlap >= best_iou:
                best, best_iou = track, overlap
        return best

    def _add(self, track: _Track) -> None:
        if len(self._tracks) >= self.max_tracks:
            # Forget the place seen longest ago; a static place is seen often.
            self._tracks.remove(min(self._tracks, key=lambda t: t.last_ns))
        self._tracks.append(track)
