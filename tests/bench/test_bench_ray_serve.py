"""bench_ray_serve's summary: medians over rounds, ratios from rounds measured side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks.bench_ray_serve import markdown, summarize


def test_summarize_takes_medians_and_per_round_ratios() -> None:
    args = argparse.Namespace(model=Path("m.onnx"), requests=10, threads=1, replicas=1, rounds=3)
    rounds = []
    for round_, (direct, ray) in enumerate([(100.0, 10.0), (200.0, 40.0), (50.0, 10.0)]):
        rounds.append({"path": "direct", "clients": 1, "round": round_, "throughput_rps": direct,
                       "p50_ms": 1000 / direct, "p99_ms": 2.0})
        rounds.append({"path": "ray", "clients": 1, "round": round_, "throughput_rps": ray,
                       "p50_ms": 1000 / ray, "p99_ms": 9.0})
    report = summarize(args, [8, 8, 1], [1], rounds, {"direct": 0.0, "ray": 0.0}, 12.0)
    assert [(r["path"], r["throughput_rps"]) for r in report["rows"]] == [("direct", 100.0), ("ray", 10.0)]
    # per-round ratios 0.1, 0.2, 0.2: the median is 0.2, not 10 / 100
    assert report["ratios"]["throughput_ray_over_direct_c1"] == pytest.approx(0.2)
    assert report["ratios"]["p50_added_ms_c1"] == pytest.approx(80.0)  # per round 90, 20, 80
    assert "| `lc2d serve --ray` | 1 | 10 | 100.00 | 9.00 |" in markdown(report)
