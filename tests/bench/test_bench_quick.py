"""Smoke test of the layer benchmark harness on a tiny shape: it runs, the JSON has the fields,
and every floor and ratio is ``max(FLOPs / rate, bytes / bandwidth)`` checked by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lc2d.cli import main
from lc2d.commands.bench import load_suite

suite = load_suite()
from benchmarks.floors import (  # noqa: E402
    MachineFloors,
    floor_ms,
    measure_matmul_gflops,
    measure_numpy_copy_gbs,
)
from benchmarks.report import BEGIN, END, rewrite_between_markers  # noqa: E402
from benchmarks.timing import TimingPolicy  # noqa: E402
from export.parity import INT8_TOLERANCE  # noqa: E402

RATE_GFLOPS, BANDWIDTH_GBS = 50.0, 8.0
# tiny: 8×8×2 input, 3×3 kernel, 4 filters, "valid" -> 6×6 locations, 18 taps per patch.
L, P, F, INPUT, OUTPUT = 36, 18, 4, 8 * 8 * 2, 6 * 6 * 4


def hand_floor_ms(batch: int) -> float:
    flops = 2 * batch * L * P * F
    nbytes = 4 * (L * P * F + L * F + batch * INPUT + batch * OUTPUT)
    return max(flops / (RATE_GFLOPS * 1e9), nbytes / (BANDWIDTH_GBS * 1e9)) * 1e3


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    # keras-jax: our layer under JAX, in a child process (jax is in the dev extra; torch is not)
    config = suite.SuiteConfig(workloads=("tiny",), batches=(1, 3),
                               families=("tf_keras", "keras", "keras-jax", "onnx"),
                               policy=TimingPolicy(budget_s=0.01, min_runs=5, max_runs=10, warmup=1))
    return suite.run_suite(config, floors=MachineFloors(RATE_GFLOPS, BANDWIDTH_GBS), log=lambda _: None)


def test_floor_ms_takes_the_larger_bound() -> None:
    assert floor_ms(2e9, 1e6, 100.0, 10.0) == pytest.approx(20.0)  # compute bound: 2 GFLOP at 100 GFLOP/s
    assert floor_ms(1e6, 1e9, 100.0, 10.0) == pytest.approx(100.0)  # memory bound: 1 GB at 10 GB/s
    with pytest.raises(ValueError, match="positive"):
        floor_ms(1.0, 1.0, 0.0, 1.0)


def test_run_suite_records_every_method_with_hand_computed_floor(result: dict[str, Any]) -> None:
    records = result["results"]
    methods = {r["method"] for r in records}
    assert {"tf_keras impl 1", "tf_keras impl 2", "tf_keras impl 3", "keras impl 1", "keras impl 2",
            "keras impl 3", "keras-jax impl 1", "keras-jax impl 2", "keras-jax impl 3",
            "onnx local", "onnx dense", "onnx sparse", "onnx auto", "onnx int8"} <= methods
    assert len(records) == 2 * len(methods)
    for r in records:
        assert r["status"] == "ok", r
        assert r["flops"] == 2 * r["batch"] * L * P * F
        assert r["floor_ms"] == pytest.approx(hand_floor_ms(r["batch"]), rel=1e-12)
        assert r["ratio_to_floor"] == pytest.approx(r["median_ms"] / r["floor_ms"], rel=1e-12)
        assert r["runs"] >= 5 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        if r["method"] == "onnx int8":  # 8-bit weights and inputs: within the int8 parity tolerance
            assert 0 < r["max_rel_error"] < INT8_TOLERANCE, r
        else:
            assert r["max_rel_error"] < 1e-5, r  # every float method computes the reference function


def test_cli_offers_the_suites_method_families() -> None:
    from lc2d.commands.bench import FAMILIES

    assert FAMILIES == suite.FAMILIES
    assert set(suite.BACKEND_FAMILIES) == {"keras-jax", "keras-torch"} <= set(FAMILIES)


def test_summary_speedups_are_per_round_ratios_with_tf_keras_timed_in_every_round(
        result: dict[str, Any]) -> None:
    rounds = result["settings"]["onnx_rounds"]
    for row in result["summary"]:
        group = [r for r in result["results"] if r["batch"] == row["batch"]]
        tfk = min((r for r in group if r["family"] == "tf_keras"), key=lambda r: r["median_ms"])
        auto = next(r for r in group if r["method"] == "onnx auto")
        assert row["best_tf_keras_ms"] == tfk["median_ms"]
        # the fastest tf_keras implementation was timed again in each of the ONNX files' rounds
        assert len(tfk["interleaved_round_medians_ms"]) == len(auto["round_medians_ms"]) == rounds
        per_round = [t / a for t, a in zip(tfk["interleaved_round_medians_ms"], auto["round_medians_ms"],
                                           strict=True)]
        assert row["speedup_interleaved"] and row["speedup_rounds"] == pytest.approx(per_round)
        assert row["speedup_vs_tf_keras"] == pytest.approx(sorted(per_round)[rounds // 2])
        assert row["speedup_range"] == pytest.approx([min(per_round), max(per_round)])
        assert row["speedup_conservative"] == pytest.approx(min(per_round))
        disagreement = (max(per_round) - min(per_round)) / row["speedup_vs_tf_keras"]
        assert row["rounds_disagree"] == (disagreement > 0.25)
        floats = [r for r in group if r["family"] == "onnx" and r["variant"] not in ("auto", "int8")]
        fastest = min(floats, key=lambda r: r["median_ms"])
        assert row["fastest_lowering"] == fastest["variant"]
        # auto over the fastest file of each round, the median over rounds
        paired = [a / min(r["round_medians_ms"][i] for r in floats)
                  for i, a in enumerate(auto["round_medians_ms"])]
        assert row["auto_over_fastest"] == pytest.approx(sorted(paired)[rounds // 2])
        assert set(row["auto_lowerings"].values()) <= {r["variant"] for r in floats}
    by_batch = {row["batch"]: row for row in result["summary"]}
    assert by_batch[1]["speedup_target"]["target"] == 1.0
    assert by_batch[1]["speedup_target"]["met"] == (by_batch[1]["speedup_vs_tf_keras"] >= 1.0)
    assert by_batch[3]["speedup_target"] == {"target": None, "met": None}
    assert by_batch[1]["floor_target"] == {"target": None, "met": None}  # the floor target is at batch 64


def test_spread_and_round_speedups_by_hand() -> None:
    from benchmarks.report import round_speedups, spread

    tfk = {"interleaved_round_medians_ms": [10.0, 12.0, 9.0]}
    auto = {"round_medians_ms": [5.0, 4.0, 6.0]}
    assert round_speedups(tfk, auto) == pytest.approx([2.0, 3.0, 1.5])
    assert spread([2.0, 3.0, 1.5]) == pytest.approx(0.75)
    assert round_speedups({"interleaved_round_medians_ms": [1.0]}, auto) == []  # rounds must pair up
    assert round_speedups(None, auto) == [] and spread([]) is None


def test_skip_reasons_predict_oversized_configurations() -> None:
    from benchmarks.workloads import dense_kernel_skip, tf_keras_sparse_skip

    ref2 = suite.all_workloads()["ref2"].build(1)  # dense kernel 57,600 × 25,088 floats = 5.4 GiB
    assert "out of memory" in (dense_kernel_skip(ref2, available_bytes=1e12) or "")
    assert tf_keras_sparse_skip(ref2, max_indices=2_000_000) is not None  # 14.5 M indices
    tiny = suite.all_workloads()["tiny"].build(1)
    assert dense_kernel_skip(tiny, available_bytes=1e12) is None
    assert tf_keras_sparse_skip(tiny, max_indices=2_000_000) is None


def test_rewrite_between_markers_replaces_only_the_generated_part() -> None:
    doc = f"# Title\n\nmethod\n\n{BEGIN}\nold table\n{END}\n\ntail\n"
    new = rewrite_between_markers(doc, "new table")
    assert "old table" not in new and "new table" in new
    assert new.startswith("# Title\n\nmethod\n\n") and new.endswith("\ntail\n")
    assert rewrite_between_markers(new, "again").count(BEGIN) == 1


def test_measure_floors_gives_positive_rates() -> None:
    assert measure_numpy_copy_gbs(mib=8, runs=2) > 0
    assert measure_matmul_gflops(threads=1, n=128, runs=2) > 0


def test_bench_command_writes_json_chart_and_doc(tmp_path: Path) -> None:
    (tmp_path / "performance.md").write_text(f"# Perf\n\nkept\n\n{BEGIN}\nstale\n{END}\n")
    code = main(["bench", "--quick", "--shapes", "tiny", "--batch", "2", "--methods", "onnx",
                 "--budget-s", "0.01", "--floors", str(RATE_GFLOPS), str(BANDWIDTH_GBS),
                 "--out", str(tmp_path)])
    assert code == 0
    data = json.loads((tmp_path / "perf" / "bench.json").read_text())
    assert {"machine", "floors", "settings", "results", "summary"} <= set(data)
    assert data["floors"]["matmul_gflops"] == RATE_GFLOPS and data["floors"]["bandwidth_gbs"] == BANDWIDTH_GBS
    floors = [r["floor_ms"] for r in data["results"]]
    assert floors == pytest.approx([hand_floor_ms(2)] * len(floors))
    assert (tmp_path / "perf" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = (tmp_path / "performance.md").read_text()
    assert "kept" in doc and "stale" not in doc and "onnx auto" in doc
    assert "The opt-in int8 lowering: time and accuracy change" in doc  # with its error per workload


@pytest.mark.parametrize("argv, expected", [
    (["--shapes", "nonexistent"], "--shapes: expected names"),
    (["--batch", "0"], "--batch: expected positive integers"),
    (["--budget-s", "-1"], "--budget-s: expected a positive number"),
    (["--floors", "0", "10"], "--floors: expected a positive number"),
    (["--rounds", "0"], "--rounds: expected a positive number"),
])
def test_bench_command_rejects_bad_arguments_with_exit_2(argv: list[str], expected: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--out", str(tmp_path), *argv]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "perf").exists()


def test_bench_check_says_which_claims_hold_now_and_writes_conservative_claims(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    claims = {"source": "a test", "claims": [
        {"workload": "tiny", "title": "tiny", "batch": 2, "tf_keras_method": "tf_keras impl 1",
         "speedup_at_least": 1e-6, "floor_ratio_at_most": 1e9},
        {"workload": "tiny", "title": "tiny", "batch": 2, "tf_keras_method": "tf_keras impl 1",
         "speedup_at_least": 1e6, "floor_ratio_at_most": 1e-9},
        {"workload": "deepface", "title": "DeepFace", "batch": 64, "tf_keras_method": "tf_keras impl 1",
         "speedup_at_least": 2.0, "floor_ratio_at_most": None}]}
    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "claims.json").write_text(json.dumps(claims))
    code = main(["bench", "--check", "--write-claims", "--budget-s", "0.01", "--rounds", "3",
                 "--floors", str(RATE_GFLOPS), str(BANDWIDTH_GBS), "--out", str(tmp_path)])
    assert code == 0
    check = json.loads((tmp_path / "perf" / "check.json").read_text())
    run = check["run"]
    assert run["settings"]["workloads"] == ["tiny"] and run["settings"]["batches"] == [2]
    assert run["settings"]["strategies"] == ["auto"] and run["settings"]["families"] == ["tf_keras", "onnx"]
    assert run["machine"]["peak_rss_mib"] > 0
    easy, impossible, deepface = check["verdicts"]
    assert easy["speedup_holds"] is True and easy["floor_holds"] is True
    assert impossible["speedup_holds"] is False and impossible["floor_holds"] is False
    assert deepface["speedup_holds"] is None and "DeepFace" in deepface["not_measured"]
    out = capsys.readouterr().out
    assert "**does not hold**" in out and "1 of 2 measured speed-up claims hold now" in out
    written = json.loads((tmp_path / "perf" / "claims.json").read_text())
    assert written["source"].startswith("lc2d bench --check of")
    for claim in written["claims"]:  # conservative: the smallest per-round speed-up of this run
        row = next(r for r in run["summary"] if r["batch"] == claim["batch"])
        assert claim["speedup_at_least"] == pytest.approx(min(row["speedup_rounds"]), abs=0.006)
        assert claim["floor_ratio_at_most"] == pytest.approx(row["auto_ratio_to_floor_range"][1], abs=0.006)
    assert not (tmp_path / "performance.md").exists()  # a check leaves the documented run alone


def test_bench_check_without_claims_or_write_claims_alone_exit_2(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--check", "--out", str(tmp_path)]) == 2
    assert "--check: Expected a claims file" in capsys.readouterr().err
    assert main(["bench", "--write-claims", "--out", str(tmp_path)]) == 2
    assert "--write-claims: expected together with --check" in capsys.readouterr().err


def test_a_process_per_workload_gives_the_same_records_and_reports_a_process_that_died() -> None:
    # "tiny" in a child process, then a workload whose process fails (an unknown name makes the
    # child exit 1): the first's records come back, the second is reported, the run goes on
    config = suite.SuiteConfig(workloads=("tiny", "no-such-workload"), batches=(1,),
                               families=("tf_keras", "onnx"), implementations=(1,),
                               policy=TimingPolicy(budget_s=0.01, min_runs=3, max_runs=5, warmup=1),
                               rounds=1, process_per_workload=True)
    runner = suite.Suite(config, MachineFloors(RATE_GFLOPS, BANDWIDTH_GBS), log=lambda _: None)
    records = runner.run()
    assert {r["workload"] for r in records} == {"tiny"}
    assert {"onnx local", "onnx auto"} <= {r["method"] for r in records if r["status"] == suite.OK}
    assert all(r["max_rel_error"] < 1e-5 for r in records  # every float lowering matches Keras
               if r["status"] == suite.OK and r["method"] != "onnx int8")
    # fields a record gains after it was made come back too: tf_keras timed in every ONNX round
    (tf_keras,) = [r for r in records if r["method"] == "tf_keras impl 1"]
    assert len(tf_keras["interleaved_round_medians_ms"]) == config.rounds
    assert list(runner.failures) == ["no-such-workload"]
    assert "its process ended early (exit status 1)" in runner.failures["no-such-workload"]


def test_an_onnx_file_whose_intermediates_exceed_a_quarter_of_the_memory_is_not_timed() -> None:
    import psutil

    from benchmarks.workloads import all_workloads

    l4 = all_workloads()["L4"].build(1)  # sparse's products at batch 64: 4 * 64 * 3025 * 1296 * 17 bytes
    total = psutil.virtual_memory().total
    assert (suite.onnx_memory_skip(l4, "sparse", 64) is None) == (0.25 * total >= 17.06e9)
    if total < 64e9:  # this machine (24 GB) and CI's
        assert "intermediates need 17.1 GB at batch 64" in suite.onnx_memory_skip(l4, "sparse", 64)
    assert suite.onnx_memory_skip(l4, "sparse", 1) is None  # 0.27 GB
    assert suite.onnx_memory_skip(l4, "local", 64) is None and suite.onnx_memory_skip(l4, "auto", 64) is None
