"""The side-by-side ONNX timer: interleaved rounds, rotation, and files that fail."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from lc2d.commands.bench import load_suite

suite = load_suite()
from benchmarks.floors import _two_input_model  # noqa: E402
from benchmarks.onnx_timer import interleaved  # noqa: E402
from benchmarks.timing import Timing, TimingPolicy, paired_ratio, round_policy  # noqa: E402


def test_round_policy_divides_the_budget_and_keeps_one_warmup_after_the_first_round() -> None:
    policy = TimingPolicy(budget_s=0.9, min_runs=5, max_runs=50, warmup=2)
    first, later = round_policy(policy, 3, first=True), round_policy(policy, 3, first=False)
    assert (first.budget_s, first.min_runs, first.max_runs, first.warmup) == (pytest.approx(0.3), 2, 17, 2)
    assert (later.min_runs, later.warmup) == (2, 1)
    with pytest.raises(ValueError, match="rounds >= 1"):
        round_policy(policy, 0, first=True)


def test_paired_ratio_compares_within_rounds() -> None:
    # the machine was 3x slower in the second round: per round, a is 1.1x, 1.1x and 0.9x the best other
    a, b, c = [1.1, 3.3, 0.9], [1.0, 3.0, 2.0], [2.0, 6.0, 1.0]
    assert paired_ratio(a, [b, c]) == pytest.approx(1.1)
    assert paired_ratio(b, [a, b, c]) == pytest.approx(1.0)  # b was the fastest in two rounds of three
    assert paired_ratio([2.0, 2.0, 2.0], [[1.0]]) == pytest.approx(2.0)  # rounds without a rival are left out
    assert paired_ratio([2.0], []) is None


def test_interleaved_rotates_the_order_and_drops_failing_calls() -> None:
    calls: list[str] = []
    broken = {"count": 0}

    def make(name: str):  # type: ignore[no-untyped-def]
        return lambda: calls.append(name)

    def breaks_in_round_two() -> None:
        broken["count"] += 1
        if broken["count"] > 2:  # round 1: one warm-up and one timed run; round 2 fails
            raise RuntimeError("lost the device")

    policy = TimingPolicy(budget_s=1e-6, min_runs=3, max_runs=3, warmup=1)  # 1 warm-up + 1 run per round
    rounds_seen: list[int] = []
    results, medians = interleaved([make("a"), None, make("c"), breaks_in_round_two], policy, rounds=3,
                                   release=[make("A")],  # after each share of a: an untimed freeing run
                                   between=lambda r, _: rounds_seen.append(r))
    # round r starts at position r of the calls still live: (a, c, d), (c, d, a), then (a, c);
    # a, released after each share, gets a second warm-up run from round 2 on
    assert "".join(calls) == "aaA" + "cc" + "cc" + "aaaA" + "aaaA" + "cc"
    a, missing, c, d = results
    assert isinstance(a, Timing) and a.runs == 3 and isinstance(c, Timing) and c.runs == 3
    assert missing is None
    assert d == "RuntimeError: lost the device"
    assert rounds_seen == [0, 1, 2]  # the stepwise hook runs before every round
    assert [len(m) for m in medians] == [3, 0, 3, 1]  # one median per round each call completed


def test_time_onnx_files_times_good_files_and_reports_broken_ones(tmp_path: Path) -> None:
    good = tmp_path / "neg.onnx"
    onnx.save(_two_input_model("Neg", [(2, 3)]), str(good))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    policy = TimingPolicy(budget_s=0.01, min_runs=4, max_runs=8, warmup=1)
    first, second, third = suite.time_onnx_files([good, broken, good], x, 1, policy, rounds=2)
    for result in (first, third):
        assert not isinstance(result, str)
        output, timing = result
        np.testing.assert_array_equal(output, -x)
        assert 4 <= timing.runs <= 8 and timing.min_ms <= timing.median_ms <= timing.max_ms
    assert isinstance(second, str), second
    assert second.startswith(("InvalidProtobuf", "Fail", "RuntimeException")), second


def test_suite_times_each_file_alone_when_the_side_by_side_child_dies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.floors import MachineFloors

    real = suite.time_onnx_files

    def killed_when_several(paths, *args):  # type: ignore[no-untyped-def]
        if len(paths) > 1:  # as the kernel's OOM killer does to a child holding every DeepFace session
            raise RuntimeError("onnx_timer exited with -9")
        return real(paths, *args)

    monkeypatch.setattr(suite, "time_onnx_files", killed_when_several)
    paths = []
    for name, op in (("neg", "Neg"), ("abs", "Abs")):
        paths.append(tmp_path / f"{name}.onnx")
        onnx.save(_two_input_model(op, [(2, 3)]), str(paths[-1]))
    log: list[str] = []
    policy = TimingPolicy(budget_s=0.01, min_runs=2, max_runs=4, warmup=1)
    runner = suite.Suite(suite.SuiteConfig(policy=policy), MachineFloors(50.0, 8.0), log=log.append)
    x = np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32)
    results, how = runner.time_files(paths, x)
    assert how == suite.ALONE and "timing each file alone" in log[0] and "-9" in log[0]
    for (output, timing), expected in zip(results, (-x, np.abs(x)), strict=True):  # type: ignore[misc]
        np.testing.assert_array_equal(output, expected)
        assert timing.runs >= 2
    monkeypatch.setattr(suite, "time_onnx_files", real)
    assert runner.time_files(paths, x)[1] == suite.SIDE_BY_SIDE
