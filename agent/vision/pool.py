"""Frames of one camera pooled into visits: one result per cow that passes.

A BCS or milk camera sees the same cow (or sample) in many frames. A visit
starts with the first frame that gives a result and ends when the presence
gate reports the empty scene, or when no frame has given a result for
``gap_s`` (the cow left while the gate still saw movement), or after
``max_s`` (a cow standing in the lane must not hold her result for ever).
The pool only groups; what a visit's frames become is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Visit(Generic[T]):
    camera_id: str
    visit_id: str  # stable for the camera, boot and first frame: re-emitting is a duplicate
    started_mono_ns: int
    started_wall_ts: float
    last_mono_ns: int = 0
    ended_wall_ts: float = 0.0
    items: list[T] = field(default_factory=list)


class VisitPool(Generic[T]):
    def __init__(self, camera_id: str, boot_id: str, *, gap_s: float = 4.0,
                 max_s: float = 120.0, max_items: int = 200) -> None:
        self.camera_id = camera_id
        self.boot = boot_id[:8]
        self.gap_ns = int(gap_s * 1e9)
        self.max_ns = int(max_s * 1e9)
        self.max_items = max_items  # bounded: a visit keeps its first max_items results
        self.current: Visit[T] | None = None

    def add(self, mono_ns: int, wall_ts: float, item: T) -> list[Visit[T]]:
        done = self.tick(mono_ns)
        v = self.current
        if v is None:
            v = self.current = Visit(self.camera_id, f"{self.boot}-{mono_ns}", mono_ns, wall_ts)
        v.last_mono_ns, v.ended_wall_ts = mono_ns, wall_ts
        if len(v.items) < self.max_items:
            v.items.append(item)
        return done

    def tick(self, mono_ns: int) -> list[Visit[T]]:
        """Close the visit when its cow has gone quiet or it has lasted too long."""
        v = self.current
        if v is None:
            return []
        if mono_ns - v.last_mono_ns > self.gap_ns or mono_ns - v.started_mono_ns > self.max_ns:
            return self.end()
        return []

    def end(self) -> list[Visit[T]]:
        """The scene is empty (or the agent stops): close the open visit."""
        v, self.current = self.current, None
        return [v] if v is not None and v.items else []
