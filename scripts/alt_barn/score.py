#!/usr/bin/env python3
"""Score `dairy-edge replay` alerts against alt_barn labels.

    score.py LABELS.jsonl ALERTS.jsonl [-v] [--json]

An alert is true when a labelled episode has the same rule, a matching subject
(the label's subject or one of its `alt_subjects`; an alert subject `cow/quarter`
matches the cow) and the alert's ts lies in [onset - 60 s, end + grace(rule)]. An alert
that matches only an `optional` episode (a sensor-fault window, a calving, a fault
the data cannot show) is neither true nor false and is left out. Every other
alert is a false positive. An episode is found when at least one alert matched
it; delay is from the episode's onset to its first matching alert.
Several files can be scored together: pass LABELS,ALERTS pairs with --pair.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from typing import Any

GRACE_S = {"estrus": 6 * 3600.0, "rumination": 12 * 3600.0, "mastitis": 24 * 3600.0,
           "heat_stress": 3600.0, "cooling": 3600.0}
DEFAULT_GRACE_S = 3600.0
# an alert is stamped with the reading's sensor time, which the firmware may
# truncate to the second; allow that much before a labelled onset
SLACK_S = 60.0


def ts(v: Any) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    s = str(v).replace("Z", "+00:00")
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


def load(path: str) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(x) for x in fh if x.strip()]


def rule_key(label: dict[str, Any]) -> str:
    return label["rule"]


def subjects(label: dict[str, Any]) -> set[str]:
    return {str(label["subject"]), *map(str, label.get("alt_subjects", []))}


def alert_subject(a: dict[str, Any]) -> str:
    return str(a.get("subject", "")).split("/")[0]


def score(labels: list[dict[str, Any]], alerts: list[dict[str, Any]],
          tag: str = "") -> dict[str, Any]:
    """Returns {'rules': {rule: counts}, 'fp': [...], 'missed': [...]}"""
    eps = []
    for i, lab in enumerate(labels):
        eps.append({"i": i, "tag": tag, "label": lab, "rule": rule_key(lab), "subj": subjects(lab),
                    "a": ts(lab["onset"]) - SLACK_S, "b": ts(lab["end"]) + GRACE_S.get(lab["rule"], DEFAULT_GRACE_S),
                    "opt": bool(lab.get("optional")), "first": None})
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for e in eps:
        by_rule.setdefault(e["rule"], []).append(e)
    res: dict[str, dict[str, Any]] = {}

    def row(rule: str) -> dict[str, Any]:
        return res.setdefault(rule, {"alerts": 0, "true": 0, "false": 0, "ignored": 0,
                                     "episodes": 0, "found": 0, "delays": [], "late": []})

    fps = []
    for al in alerts:
        rule = str(al.get("rule"))
        t = ts(al["ts"])
        subj = alert_subject(al)
        full = str(al.get("subject", ""))
        cands = [e for e in by_rule.get(rule, [])
                 if (subj in e["subj"] or full in e["subj"]) and e["a"] <= t <= e["b"]]
        r = row(rule)
        r["alerts"] += 1
        real = [e for e in cands if not e["opt"]]
        if real:
            r["true"] += 1
            for e in real:
                if e["first"] is None or t < e["first"]:
                    e["first"] = t
        elif cands:
            r["ignored"] += 1
        else:
            r["false"] += 1
            fps.append({"tag": tag, **al})
    missed = []
    for e in eps:
        if e["opt"]:
            continue
        r = row(e["rule"])
        r["episodes"] += 1
        if e["first"] is not None:
            r["found"] += 1
            r["delays"].append(max(0.0, e["first"] - ts(e["label"]["onset"])))
            r["late"].append(e["first"] - ts(e["label"]["detectable"]))
            kind = e["label"].get("kind")
            if kind:
                k = row(f"{e['rule']}:{kind}")
                k["episodes"] += 1
                k["found"] += 1
                k["delays"].append(max(0.0, e["first"] - ts(e["label"]["onset"])))
                k["late"].append(e["first"] - ts(e["label"]["detectable"]))
        else:
            missed.append({"tag": tag, **e["label"]})
            kind = e["label"].get("kind")
            if kind:
                row(f"{e['rule']}:{kind}")["episodes"] += 1
    return {"rules": res, "fp": fps, "missed": missed}


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rules": {}, "fp": [], "missed": []}
    for p in parts:
        for rule, r in p["rules"].items():
            m = out["rules"].setdefault(rule, {"alerts": 0, "true": 0, "false": 0, "ignored": 0,
                                               "episodes": 0, "found": 0, "delays": [], "late": []})
            for k in ("alerts", "true", "false", "ignored", "episodes", "found"):
                m[k] += r[k]
            m["delays"] += r["delays"]
            m["late"] += r["late"]
        out["fp"] += p["fp"]
        out["missed"] += p["missed"]
    return out


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def table(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    head = (f"{'rule':28s} {'alerts':>6s} {'true':>5s} {'false':>5s} {'ign':>4s} {'eps':>4s} "
            f"{'found':>5s} {'prec':>6s} {'recall':>6s} {'med_h':>6s} {'p90_h':>6s} {'det_med_h':>9s}")
    lines = [head]
    summary: dict[str, Any] = {}
    tot = {"alerts": 0, "true": 0, "false": 0, "ignored": 0, "episodes": 0, "found": 0, "delays": [], "late": []}

    def fmt(x: float | None, nd: int = 3) -> str:
        return "-" if x is None else f"{x:.{nd}f}"

    for rule in sorted(res["rules"]):
        r = res["rules"][rule]
        prec = r["true"] / (r["true"] + r["false"]) if (r["true"] + r["false"]) else None
        rec = r["found"] / r["episodes"] if r["episodes"] else None
        med = statistics.median(r["delays"]) / 3600 if r["delays"] else None
        p90 = (pct(r["delays"], 0.9) or 0) / 3600 if r["delays"] else None
        dmed = statistics.median(r["late"]) / 3600 if r["late"] else None
        if ":" in rule:
            lines.append(f"  {rule:26s} {'':>6s} {'':>5s} {'':>5s} {'':>4s} {r['episodes']:4d} "
                         f"{r['found']:5d} {'':>6s} {fmt(rec):>6s} {fmt(med, 2):>6s} {fmt(p90, 2):>6s} {fmt(dmed, 2):>9s}")
        else:
            lines.append(f"{rule:28s} {r['alerts']:6d} {r['true']:5d} {r['false']:5d} {r['ignored']:4d} "
                         f"{r['episodes']:4d} {r['found']:5d} {fmt(prec):>6s} {fmt(rec):>6s} "
                         f"{fmt(med, 2):>6s} {fmt(p90, 2):>6s} {fmt(dmed, 2):>9s}")
            for k in ("alerts", "true", "false", "ignored", "episodes", "found"):
                tot[k] += r[k]
            tot["delays"] += r["delays"]
        summary[rule] = {"alerts": r["alerts"], "true": r["true"], "false": r["false"],
                         "episodes": r["episodes"], "found": r["found"], "precision": prec,
                         "recall": rec, "median_delay_h": med, "p90_delay_h": p90,
                         "median_after_detectable_h": dmed}
    prec = tot["true"] / (tot["true"] + tot["false"]) if (tot["true"] + tot["false"]) else None
    rec = tot["found"] / tot["episodes"] if tot["episodes"] else None
    med = statistics.median(tot["delays"]) / 3600 if tot["delays"] else None
    lines.append(f"{'OVERALL':28s} {tot['alerts']:6d} {tot['true']:5d} {tot['false']:5d} {tot['ignored']:4d} "
                 f"{tot['episodes']:4d} {tot['found']:5d} {fmt(prec):>6s} {fmt(rec):>6s} {fmt(med, 2):>6s}")
    summary["OVERALL"] = {"precision": prec, "recall": rec, "alerts": tot["alerts"],
                          "true": tot["true"], "false": tot["false"], "episodes": tot["episodes"],
                          "found": tot["found"]}
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labels", nargs="?")
    ap.add_argument("alerts", nargs="?")
    ap.add_argument("--pair", action="append", default=[], metavar="LABELS,ALERTS",
                    help="score several runs together")
    ap.add_argument("-v", "--verbose", action="store_true", help="list false positives and misses")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args(argv)
    pairs = [tuple(p.split(",", 1)) for p in a.pair]
    if a.labels and a.alerts:
        pairs.insert(0, (a.labels, a.alerts))
    if not pairs:
        ap.error("give LABELS ALERTS or --pair LABELS,ALERTS")
    parts = [score(load(lp), load(ap_), tag=lp) for lp, ap_ in pairs]
    res = merge(parts)
    text, summary = table(res)
    if a.json:
        print(json.dumps(summary, indent=1))
    else:
        print(text)
    if a.verbose:
        print("\nfalse positives:")
        for fp in sorted(res["fp"], key=lambda x: (x["rule"], x["ts"])):
            msg = str(fp.get("detail", {}).get("message", ""))[:220] if isinstance(fp.get("detail"), dict) else ""
            print(f"  FP {fp['tag']} {fp['ts']} {fp['rule']} {fp['subject']}: {msg}")
        print("\nmissed episodes:")
        for m in sorted(res["missed"], key=lambda x: (x["rule"], x["onset"])):
            extra = {k: v for k, v in m.items() if k not in ("tag", "rule", "subject", "onset", "end", "detectable")}
            print(f"  MISS {m['tag']} {m['rule']} {m['subject']} {m['onset']}..{m['end']} "
                  f"detectable {m['detectable']} {json.dumps(extra)}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
