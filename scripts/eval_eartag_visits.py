"""Evaluate ear-tag identification per VISIT on the generated walk-through lane.

The per-frame reader is measured by scripts/eval_eartag.py; what the product
reports is one identification per cow passing the camera. This script drives
the generated lane (``SyntheticSource``, unpaced) through the live per-frame
path of ``agent.runtime.vision.Vision`` without threads:

    capture clock: frame i at i / fps_cap seconds (the times the source reports)
    scheduler:     budget (a frame closer than 0.95 / infer_fps to the last
                   inferred one is dropped) and the presence gate (``MotionGate``;
                   gated frames do not restart the budget), as InferenceScheduler
    per frame:     Preprocessor -> EartagReader.read -> boxes to original
                   pixels -> StaticTextFilter -> VisitTracker.add
    idle tick:     VisitTracker.tick at every captured frame (live: every 0.5 s)
    RFID (--rfid): the cow's EID noted (VisitTracker.note_rfid) at the middle
                   of her pass, as Vision._drain_rfid would hand it over

with the herd register examples/herd.csv and the configured defaults of
``EartagConfig`` (min_confidence, visit_gap_s, ...). Emitted identifications
are matched to the source's ground truth (``source.visits``) by frame overlap
(an identification spans evidence.first_frame .. + duration_s * fps).

Per cow passing, one outcome:

    correct        her number claimed (identified, or flagged for RFID)
    WRONG          another number claimed with status identified: the key
                   figure, goal 0
    wrong_flagged  another number claimed but flagged (not_in_register,
                   rfid_mismatch): staff are asked to look
    stranger_ok    a cow not in the register: her number, flagged not_in_register
    review         a record, but no number claimed
    merged         no record of her own: her frames went into a record about
                   the cow before or after her (visit_gap_s longer than the gap
                   between cows); the product says nothing about her
    missed         no record overlaps her pass

A record that overlaps several passes belongs to the pass where its number
(or, for review, its candidate) was read. Also counted: merged records (one
record spanning several cows), split passes (several records for one cow) and
phantom records (matching no cow).

Limitation: the lane draws its tags with the lane's own look
(``agent.sources.camera.synth.lane.LANE``: the DEV ranges made a little kinder:
yaw within 30 degrees, no bars, no infrared). The seed only chooses which cows,
tags and poses are drawn, never a parameter split, so ``--look lane`` (the
default, what the demo shows) is a held-IN look even at seeds >= 900000.
``--look heldout`` swaps in the HELDOUT colours, shapes, fonts and italic
print (the lane's pose, bar and infrared settings kept) by replacing
``lane.LANE`` in this process only: use that for held-out figures.

    python scripts/eval_eartag_visits.py --seeds 900000,900001 --minutes 2 \
        --out reports/eartag_visits.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from tqdm import tqdm

import agent.sources.camera.synth.lane as lane_mod
from agent.config.model import BUNDLED, CameraConfig, EartagConfig
from agent.records.types import Identification, Stamp
from agent.sources.camera.synth.params import EVAL_SEED_MIN, HELDOUT
from agent.sources.camera.synthetic import SyntheticSource, Visit, load_herd
from agent.vision.eartag.frame import EartagReader
from agent.vision.eartag.models import open_eartag_runners
from agent.vision.eartag.register import HerdRegister, tag_key
from agent.vision.eartag.static import StaticTextFilter
from agent.vision.eartag.types import TagReading
from agent.vision.eartag.visit import VisitResult, VisitTracker
from agent.vision.gate import GateResult, MotionGate
from agent.vision.preprocess import Preprocessor
from agent.vision.scheduler import BUDGET_SLACK

NS = 1_000_000_000
WALL0 = 1_767_225_600.0  # 2026-01-01: wall clock of frame 0
OUTCOMES = ("correct", "WRONG", "wrong_flagged", "stranger_ok", "review", "merged", "missed")

# The HELDOUT variations (colours, shapes, fonts, italic) with the lane's
# camera placement (pose ranges, no bars, no infrared, no turned-away draws).
_LANE_KEEP = {k: getattr(lane_mod.LANE, k) for k in (
    "yaw_deg", "pitch_deg", "roll_deg", "dirt_p", "fade_p", "bar_p", "glare_p", "ir_p",
    "back_p", "tiny_p")}
LOOKS = {"lane": lane_mod.LANE, "heldout": HELDOUT.with_(name="lane-heldout", **_LANE_KEEP)}


@dataclass
class Lane:
    """One seed's run: what was shown, what was inferred, what was emitted."""

    seed: int
    frames: int = 0
    inferred: list[int] = field(default_factory=list)
    gated: int = 0
    keepalive: int = 0
    readable_frames: int = 0  # inferred frames with a readable tag in view
    read_right: int = 0  # ... whose number the reader reported
    numbers_reported: int = 0  # numbers reported in inferred frames
    numbers_wrong: int = 0  # ... not the number of a tag in view
    static_dropped: int = 0
    records: list[Identification] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    readable_in: dict[int, int] = field(default_factory=dict)  # visit -> readable inferred
    seconds: float = 0.0


def run_lane(seed: int, args: argparse.Namespace, reader: EartagReader,
             register: HerdRegister, cfg: EartagConfig) -> Lane:
    cam = CameraConfig(id="lane", source="synthetic", uri=str(seed), fps_cap=args.fps,
                       infer_fps=args.infer_fps, station="lane" if args.rfid else None)
    source = SyntheticSource(cam, herd=args.herd, paced=False)
    source.open()
    now_ns = 0
    tracker = VisitTracker(
        cfg, cam.id, boot_id=f"eval-{seed}", station=cam.station, register=register,
        stamp=lambda: Stamp(WALL0 + now_ns / NS, now_ns, f"eval-{seed}", True),
        model_versions=lambda: {"eval": "eval_eartag_visits"},
    )
    pre = Preprocessor(cam, None)
    static = StaticTextFilter()
    gate = MotionGate.for_camera(cam)
    period_ns = int(NS / cam.infer_fps * (1 - BUDGET_SLACK))
    rng = np.random.default_rng(seed)
    herd_eids = [h.eid for h in load_herd(args.herd) if h.eid]
    out = Lane(seed)
    last_inferred: int | None = None
    rfid_due: dict[int, str] = {}  # frame -> EID read then
    planned = 0
    target = round(args.minutes * 60 * cam.fps_cap)
    t0 = time.monotonic()
    bar = tqdm(total=target, desc=f"seed {seed}", unit="fr", leave=False, disable=args.quiet)
    i = 0

    def emit(results: list[VisitResult]) -> None:
        out.records.extend(r.identification for r in results)

    # Run at least `target` frames, then on to the end of the cow in view so
    # every counted pass is whole.
    while True:
        image = source.read()
        assert image is not None
        truth = source.truth[-1]
        if i >= target and truth.cow is None:
            break
        now_ns = round(i * NS / cam.fps_cap)
        # the simulated RFID reader: one read per herd cow, at the middle of her pass
        while planned < len(source.visits):
            v = source.visits[planned]
            planned += 1
            if args.rfid and v.eid is not None and rng.random() < args.rfid_p:
                eid = v.eid
                if rng.random() < args.rfid_wrong:  # a read of another cow
                    eid = str(rng.choice([e for e in herd_eids if e != v.eid]))
                rfid_due[(v.first_frame + v.last_frame) // 2] = eid
        if i in rfid_due:
            emit(tracker.note_rfid(rfid_due.pop(i), now_ns, WALL0 + now_ns / NS))
        emit(tracker.tick(now_ns))  # Vision._tick
        out.frames += 1
        i += 1
        bar.update(1)
        if last_inferred is not None and 0 <= now_ns - last_inferred < period_ns:
            continue  # budget
        verdict: GateResult = gate.check(image, now_ns)
        if not verdict.run:
            out.gated += 1
            emit(tracker.end_visit(now_ns))  # Vision._empty: the lane is empty again
            continue
        out.keepalive += verdict.reason == "keepalive"
        last_inferred = now_ns
        out.inferred.append(truth.index)
        # -- Vision._process --
        processed = pre.process(image)
        found = reader.read(processed.image)
        readings = [
            TagReading(r.number, r.confidence,
                       _int_box(processed.geometry.to_original(r.box)), r.crop,
                       r.digit_confidences)
            for r in found
        ]
        readings = static.filter(readings, now_ns)
        emit(tracker.add(now_ns, WALL0 + now_ns / NS, truth.index, readings))
        # per-frame figures, for comparison with eval_eartag.py
        shown = {tag_key(n) for n in truth.numbers}
        reported = {tag_key(r.number) for r in found if r.number}
        out.readable_frames += bool(shown)
        out.read_right += bool(shown & reported)
        out.numbers_reported += len(reported)
        out.numbers_wrong += len(reported - {tag_key(t.number) for t in truth.tags})
    bar.close()
    # After the last frame: the lane stays empty; let the gap and RFID window pass.
    end_ns = round(i * NS / cam.fps_cap)
    now_ns = end_ns + int((cfg.visit_gap_s + cfg.rfid_window_s + 1) * NS)
    emit(tracker.tick(now_ns))
    emit(tracker.flush())
    out.static_dropped = static.dropped
    out.visits = [v for v in source.visits if v.first_frame < i]
    inferred = set(out.inferred)
    by_index = {t.index: t for t in source.truth}
    for k, v in enumerate(out.visits):
        out.readable_in[k] = sum(
            1 for f in range(v.first_frame, v.last_frame + 1)
            if f in inferred and v.number in by_index[f].numbers)
    out.seconds = time.monotonic() - t0
    source.close()
    return out


def _int_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    # as agent.runtime.vision._int_box (kept private there)
    x, y, w, h = box
    return round(x), round(y), max(1, round(w)), max(1, round(h))


def span(ident: Identification, fps: float) -> tuple[int, int]:
    first = int(ident.evidence["first_frame"])
    return first, first + round(float(ident.evidence["duration_s"]) * fps)


def score(lane: Lane, fps: float) -> dict[str, Any]:
    """Each pass's outcome, from the records that overlap her frames."""
    spans = [span(r, fps) for r in lane.records]
    per_record: list[list[int]] = [[] for _ in lane.records]  # visits each record overlaps
    per_visit: list[list[int]] = [[] for _ in lane.visits]
    for j, (a, b) in enumerate(spans):
        for k, v in enumerate(lane.visits):
            if a <= v.last_frame and v.first_frame <= b:
                per_record[j].append(k)
                per_visit[k].append(j)
    owners = [_owner(r, ks, lane.visits, fps) for r, ks in zip(lane.records, per_record,
                                                                strict=True)]
    outcomes: Counter[str] = Counter()
    outcomes_readable: Counter[str] = Counter()
    details = []
    wrong = []
    kinds: list[str] = []
    for k, v in enumerate(lane.visits):
        owned = [lane.records[j] for j in per_visit[k] if owners[j] == k]
        if owned:
            outcome = classify(v, owned)
        else:
            outcome = "merged" if per_visit[k] else "missed"
        kinds.append(outcome)
        outcomes[outcome] += 1
        readable = lane.readable_in[k] >= 2
        if readable:
            outcomes_readable[outcome] += 1
        row = {
            "number": v.number, "in_herd": v.in_herd, "frames": [v.first_frame, v.last_frame],
            "readable_inferred": lane.readable_in[k], "outcome": outcome,
            "records": [_brief(lane.records[j]) for j in per_visit[k]],
        }
        details.append(row)
        if outcome in ("WRONG", "wrong_flagged"):
            wrong.append(row)
    stranger = Counter(kinds[k] for k, v in enumerate(lane.visits) if not v.in_herd)
    rfid: Counter[str] = Counter()
    for r in lane.records:
        if r.rfid_agrees is True:
            rfid["agrees"] += 1
        elif "rfid_mismatch" in r.flags:
            rfid["mismatch"] += 1
    return {
        "seed": lane.seed,
        "frames": lane.frames,
        "inferred_frames": len(lane.inferred),
        "gated_frames": lane.gated,
        "keepalive_frames": lane.keepalive,
        "static_dropped": lane.static_dropped,
        "per_frame": {
            "readable_frames": lane.readable_frames,
            "read_rate": _ratio(lane.read_right, lane.readable_frames),
            "numbers_reported": lane.numbers_reported,
            "numbers_wrong": lane.numbers_wrong,
        },
        "passes": len(lane.visits),
        "passes_readable": sum(1 for k in lane.readable_in if lane.readable_in[k] >= 2),
        "strangers": sum(1 for v in lane.visits if not v.in_herd),
        "outcomes": {o: outcomes[o] for o in OUTCOMES},
        "outcomes_readable": {o: outcomes_readable[o] for o in OUTCOMES},
        "stranger_outcomes": dict(stranger),
        "records": len(lane.records),
        "records_by_status": dict(Counter(r.status for r in lane.records)),
        "merged_records": sum(1 for ks in per_record if len(ks) > 1),
        "split_passes": sum(1 for js in per_visit if len(js) > 1),
        "phantom_records": [_brief(r) for j, r in enumerate(lane.records) if not per_record[j]],
        "rfid": dict(rfid),
        "wrong": wrong,
        "review_reasons": dict(Counter(f for r in lane.records if r.status == "review"
                                       for f in r.flags)),
        "seconds": round(lane.seconds, 1),
        "passes_detail": details,
    }


def _owner(rec: Identification, overlapping: list[int], visits: list[Visit],
           fps: float) -> int | None:
    """The pass a record is about: where its (winning or candidate) number was read,
    else where most of its sightings were, else the widest overlap. A record that
    runs over several cows belongs to one; the others got no record of their own."""
    if not overlapping:
        return None
    number = rec.tag_number or rec.evidence.get("candidate")
    readings = rec.evidence.get("readings", [])
    frames = [int(f) for f, n, _ in readings
              if n is not None and number is not None and tag_key(n) == tag_key(number)]
    frames = frames or [int(f) for f, _, _ in readings]
    a, b = span(rec, fps)

    def weight(k: int) -> tuple[int, int]:
        v = visits[k]
        inside = sum(1 for f in frames if v.first_frame <= f <= v.last_frame)
        return inside, min(b, v.last_frame) - max(a, v.first_frame)

    return max(overlapping, key=weight)


def classify(v: Visit, recs: list[Identification]) -> str:
    """One pass's outcome; a wrong number outranks everything else said about her."""
    if not recs:
        return "missed"
    claimed = [r for r in recs if r.tag_number is not None]
    wrong = [r for r in claimed if tag_key(r.tag_number or "") != tag_key(v.number)]
    if any(r.status == "identified" for r in wrong):
        return "WRONG"
    if wrong:
        return "wrong_flagged"  # a wrong number, but flagged for staff to look
    if not claimed:
        return "review"
    if not v.in_herd:
        return "stranger_ok"  # her number cannot be in the register: flagged, never identified
    return "correct"


def _brief(r: Identification) -> dict[str, Any]:
    return {"status": r.status, "number": r.tag_number, "confidence": r.confidence,
            "flags": r.flags, "first_frame": r.evidence.get("first_frame"),
            "duration_s": r.evidence.get("duration_s"),
            "votes": r.evidence.get("votes"), "rfid_eid": r.rfid_eid}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seed": "all"}
    for key in ("frames", "inferred_frames", "gated_frames", "keepalive_frames",
                "static_dropped", "passes", "passes_readable", "strangers", "records",
                "merged_records", "split_passes", "seconds"):
        out[key] = sum(r[key] for r in rows)
    for key in ("outcomes", "outcomes_readable", "stranger_outcomes", "rfid",
                "records_by_status", "review_reasons"):
        c: Counter[str] = Counter()
        for r in rows:
            c.update(r[key])
        out[key] = dict(c)
    pf = [r["per_frame"] for r in rows]
    readable = sum(p["readable_frames"] for p in pf)
    right = sum(round((p["read_rate"] or 0) * p["readable_frames"]) for p in pf)
    out["per_frame"] = {"readable_frames": readable, "read_rate": _ratio(right, readable),
                        "numbers_reported": sum(p["numbers_reported"] for p in pf),
                        "numbers_wrong": sum(p["numbers_wrong"] for p in pf)}
    out["phantom_records"] = sum(len(r["phantom_records"]) for r in rows)
    out["wrong"] = sum(len(r["wrong"]) for r in rows)  # both kinds
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'seed':>7} {'pass':>4} {'rd>=2':>5} {'correct':>7} {'WRONG':>5} {'wrongflg':>8} "
            f"{'strngr_ok':>9} {'review':>6} {'merged':>6} {'missed':>6} {'mrg_rec':>7} {'split':>5} "
            f"{'phantom':>7} {'frame_read':>10} {'frame_wrong':>11}")
    lines = [head]
    for r in rows:
        o = r["outcomes"]
        phantom = r["phantom_records"]
        phantom = len(phantom) if isinstance(phantom, list) else phantom
        lines.append(
            f"{r['seed']:>7} {r['passes']:>4} {r['passes_readable']:>5} {o.get('correct', 0):>7}"
            f" {o.get('WRONG', 0):>5} {o.get('wrong_flagged', 0):>8} {o.get('stranger_ok', 0):>9} {o.get('review', 0):>6}"
            f" {o.get('merged', 0):>6} {o.get('missed', 0):>6} {r['merged_records']:>7}"
            f" {r['split_passes']:>5}"
            f" {phantom:>7} {r['per_frame']['read_rate'] or 0:>10.1%}"
            f" {r['per_frame']['numbers_wrong']:>4}/{r['per_frame']['numbers_reported']:<6}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--seeds", default=",".join(str(EVAL_SEED_MIN + k) for k in range(4)),
                    help="lane seeds, comma-separated (default: four held-out seeds 900000-900003)")
    ap.add_argument("--minutes", type=float, default=3.0,
                    help="simulated minutes of lane per seed (default 3: about 27 cows; "
                    "the reader costs ~0.3 s per inferred frame on 2 cores)")
    ap.add_argument("--fps", type=float, default=5.0, help="camera fps_cap (default 5)")
    ap.add_argument("--infer-fps", type=float, default=2.0, help="inference budget (default 2)")
    ap.add_argument("--look", choices=sorted(LOOKS), default="lane",
                    help="tag look: 'lane' as the demo draws it (held-in ranges), 'heldout' "
                    "with the HELDOUT colours, shapes, fonts and italic print")
    ap.add_argument("--rfid", action="store_true",
                    help="simulate an RFID reader at the lane: each herd cow's EID at mid-pass")
    ap.add_argument("--rfid-p", type=float, default=1.0, help="share of herd cows read (1.0)")
    ap.add_argument("--rfid-wrong", type=float, default=0.0,
                    help="share of reads that are another cow's EID (to show rfid_mismatch)")
    ap.add_argument("--models", type=Path, default=BUNDLED / "models", help="models folder")
    ap.add_argument("--threads", type=int, default=1, help="threads per model runner (1, live)")
    ap.add_argument("--herd", type=Path, default=BUNDLED / "examples" / "herd.csv")
    ap.add_argument("--min-confidence", type=float, default=None,
                    help="override vision.eartag.min_confidence (default: the config default)")
    ap.add_argument("--out", type=Path, default=None, help="write the full report as JSON")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if any(s < EVAL_SEED_MIN for s in seeds):
        print(f"note: seeds below {EVAL_SEED_MIN} are train/dev seeds", file=sys.stderr)
    lane_mod.LANE = LOOKS[args.look]  # read by cow_sprites at each new cow
    cfg = EartagConfig(herd_register=args.herd)
    if args.min_confidence is not None:
        cfg = cfg.model_copy(update={"min_confidence": args.min_confidence})
    register = HerdRegister.load(args.herd)
    det, rec = open_eartag_runners(args.models, args.threads)
    reader = EartagReader(det, rec, cfg.tag_pattern)
    rows = []
    for seed in seeds:
        lane = run_lane(seed, args, reader, register, cfg)
        row = score(lane, args.fps)
        rows.append(row)
        o = row["outcomes"]
        print(f"seed {seed}: {row['passes']} passes, correct {o['correct']}, "
              f"WRONG {o['WRONG']}, review {o['review']}, merged {o['merged']}, "
              f"missed {o['missed']} "
              f"({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    overall = total(rows)
    print(f"look={args.look} rfid={'on' if args.rfid else 'off'} fps={args.fps:g} "
          f"infer_fps={args.infer_fps:g} min_confidence={cfg.min_confidence:g} "
          f"visit_gap_s={cfg.visit_gap_s:g}")
    print(table([*rows, overall]))
    print("outcomes over passes with a readable tag in >= 2 inferred frames:",
          overall["outcomes_readable"])
    print("strangers:", overall["stranger_outcomes"], " records:", overall["records_by_status"],
          " review reasons:", overall["review_reasons"])
    if args.rfid:
        print("rfid:", overall["rfid"])
    for r in rows:
        for w in r["wrong"]:
            print(f"{w['outcome']} seed {r['seed']}: cow {w['number']} frames {w['frames']}: "
                  f"{json.dumps(w['records'])}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                        "overall": overall, "seeds": rows}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
