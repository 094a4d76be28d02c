"""The performance claims the README quotes, and ``lc2d bench --check``'s verdict on each.

A claim is one (workload, batch): "``auto`` is at least S× faster than the fastest tf_keras
implementation" and, at batch 64 on layer shapes, "within R× of the floor". Claims live in
``docs/perf/claims.json``; ``lc2d bench --check --write-claims`` writes them from its own run
with the conservative figures (the smallest per-round speed-up, the largest per-round floor
ratio), so a claim is what every round of a side-by-side run showed. Without a claims file the
claims are read from the last full run (``docs/perf/bench.json``), conservative where it has rounds.

``--check`` re-measures each claim side by side (the fastest tf_keras implementation timed in
every round of ``auto``'s timing) and says whether it holds now: the speed-up measured now (median
over rounds) is at least the claim, and the floor ratio at most the claim.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

CHECK_EXCLUDED = {"deepface": "the whole DeepFace takes ~10 minutes and ~10 GB; run `lc2d bench`"}


def claims_from_summary(summary: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """Claims file content from a run's summary rows: conservative figures where rounds exist."""
    claims = []
    for row in summary:
        speedup = row.get("speedup_conservative", row.get("speedup_vs_tf_keras"))
        if speedup is None:
            continue
        floor_range = row.get("auto_ratio_to_floor_range")
        floor = floor_range[1] if floor_range else row.get("auto_ratio_to_floor")
        claims.append({"workload": row["workload"], "title": row["title"], "batch": row["batch"],
                       "tf_keras_method": row["best_tf_keras_method"], "speedup_at_least": round(speedup, 2),
                       "floor_ratio_at_most": round(floor, 2) if floor is not None else None})
    return {"source": source, "written_at": time.strftime("%Y-%m-%d %H:%M %Z"), "claims": claims}


def load_claims(claims_path: Path, bench_path: Path) -> dict[str, Any]:
    """The claims file, or claims derived from the last full run; ValueError when neither exists."""
    if claims_path.is_file():
        data: dict[str, Any] = json.loads(claims_path.read_text())
        return data
    if bench_path.is_file():
        run = json.loads(bench_path.read_text())
        return claims_from_summary(run["summary"], f"lc2d bench of {run['generated_at']} ({bench_path})")
    raise ValueError(f"Expected a claims file {claims_path} or a full run {bench_path}. Received: neither "
                     "(run `lc2d bench`, or `lc2d bench --check --write-claims`)")


def verdicts(claims: dict[str, Any], summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim with what was measured now and whether it holds (None: not measured now)."""
    rows = {(r["workload"], r["batch"]): r for r in summary}
    result = []
    for claim in claims["claims"]:
        row = rows.get((claim["workload"], claim["batch"]))
        now = row["speedup_vs_tf_keras"] if row else None
        floor_now = row["auto_ratio_to_floor"] if row else None
        holds = None if now is None else now >= claim["speedup_at_least"]
        floor_holds = (None if floor_now is None or claim["floor_ratio_at_most"] is None
                       else floor_now <= claim["floor_ratio_at_most"])
        missing = None if row else CHECK_EXCLUDED.get(claim["workload"], "not selected")
        result.append({**claim, "speedup_now": now,
                       "speedup_range_now": row["speedup_range"] if row else None,
                       "rounds_disagree_now": row["rounds_disagree"] if row else None,
                       "tf_keras_method_now": row["best_tf_keras_method"] if row else None,
                       "floor_ratio_now": floor_now, "speedup_holds": holds, "floor_holds": floor_holds,
                       "not_measured": missing})
    return result


def _word(value: bool | None) -> str:
    return "—" if value is None else ("holds" if value else "**does not hold**")


def check_markdown(claims: dict[str, Any], checked: list[dict[str, Any]]) -> str:
    """The verdict table ``lc2d bench --check`` prints."""
    lines = [f"Claims from {claims['source']}:", "",
             "| workload | batch | claim: auto vs tf_keras | now: median (range over rounds) | verdict | "
             "claim: auto / floor | now | verdict |", "|---|---:|---:|---|---|---:|---:|---|"]
    for c in checked:
        if c["not_measured"]:
            lines.append(f"| {c['title']} | {c['batch']} | ≥ {c['speedup_at_least']:.2f}× | not measured: "
                         f"{c['not_measured']} | — | — | — | — |")
            continue
        now = f"{c['speedup_now']:.2f}×"
        if c["speedup_range_now"]:
            now += " ({:.2f}–{:.2f})".format(*c["speedup_range_now"])
        if c["rounds_disagree_now"]:
            now += " **!**"
        floor_claim = f"≤ {c['floor_ratio_at_most']:.2f}×" if c["floor_ratio_at_most"] is not None else "—"
        floor_now = f"{c['floor_ratio_now']:.2f}×" if c["floor_ratio_now"] is not None else "—"
        lines.append(f"| {c['title']} | {c['batch']} | ≥ {c['speedup_at_least']:.2f}× | {now} | "
                     f"{_word(c['speedup_holds'])} | {floor_claim} | {floor_now} | "
                     f"{_word(c['floor_holds'])} |")
    return "\n".join(lines)
