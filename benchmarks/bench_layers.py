"""The LocallyConnected2D benchmark suite: tf_keras, our Keras layer and every ONNX lowering, one run.

For every workload (see :mod:`benchmarks.workloads`) and batch size it times, on this machine:
tf_keras's implementations 1/2/3 (when tf_keras is installed) and our Keras layer per
implementation, in this process (graph mode, a warm ``tf.function``); our Keras layer per
implementation under the JAX and PyTorch backends (``keras-jax``: ``jax.jit``; ``keras-torch``:
eager), one fresh process per backend and batch (:mod:`benchmarks.keras_backend_timer`), when
that backend is installed; and each ONNX lowering of
:mod:`export` plus the one ``auto`` picks and the opt-in ``int8``, in ONNX Runtime (intra-op
threads = cores, ``ORT_ENABLE_ALL``), a workload's files side by side in a fresh process, in
interleaved rounds (:mod:`benchmarks.onnx_timer`).
Every result carries its FLOPs, bytes, the floor ``max(FLOPs / rate, bytes / bandwidth)`` with
this machine's measured rates, its ratio to that floor, and its largest relative error against our
Keras implementation 1 on the same input.

Configurations that cannot run here are predicted from their sizes and recorded as skipped
with the reason, never attempted: a dense (implementation 2) kernel over 2 GiB, tf_keras's
pure-Python implementation-3 index build over a few million indices. The ``dense`` ONNX
lowering's own refusal is recorded as ``refused (size)``.

Usage (or ``lc2d bench``):
    python -m benchmarks.bench_layers --quick
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.floors import MachineFloors, floor_ms, measure_floors
from benchmarks.timing import Timing, TimingPolicy, measure, round_policy, sample
from benchmarks.workloads import (
    DEFAULT_WORKLOADS,
    TF_KERAS_SPARSE_MAX_INDICES,
    Workload,
    all_workloads,
    dense_kernel_skip,
    model_cost,
    tf_keras_sparse_skip,
)
from models.comparison import relative_error

IMPLEMENTATIONS = (1, 2, 3)
FAMILIES = ("tf_keras", "keras", "keras-jax", "keras-torch", "onnx")
# method family -> the Keras backend it runs on, each in a process of its own
BACKEND_FAMILIES = {"keras-jax": "jax", "keras-torch": "torch"}
OK, SKIPPED, REFUSED, FAILED = "ok", "skipped", "refused (size)", "failed"
SIDE_BY_SIDE, ALONE = "side by side", "alone"  # how a workload's ONNX files were timed (``timed_as``)


@dataclass(frozen=True)
class SuiteConfig:
    """What one run measures and how long it may take per measurement."""

    workloads: tuple[str, ...] = DEFAULT_WORKLOADS
    batches: tuple[int, ...] = (1, 64)
    families: tuple[str, ...] = FAMILIES
    threads: int = os.cpu_count() or 1
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    tf_keras_sparse_max_indices: int = TF_KERAS_SPARSE_MAX_INDICES
    implementations: tuple[int, ...] = IMPLEMENTATIONS  # of tf_keras and Keras; the others are skipped
    rounds: int = 7  # interleaved rounds in which a workload's ONNX files are timed side by side
    strategies: tuple[str, ...] | None = None  # ONNX exports to time; None: every lowering, auto, int8
    seed: int = 20261125
    # each workload in a fresh process: what one workload's TensorFlow, tf_keras and ONNX Runtime
    # allocations keep is handed back before the next (in one process a full run reached 20-24 GB
    # and was killed for memory at DeepFace L4 / L5 on a 24 GB machine, 2026-12-02)
    process_per_workload: bool = False


def method_name(family: str, variant: str) -> str:
    """The column name of a method: ``tf_keras impl 1``, ``keras-jax impl 2``, ``onnx local``."""
    return f"onnx {variant}" if family == "onnx" else f"{family} impl {variant}"


# --- models -------------------------------------------------------------------------------

def randomize(model: Any, seed: int) -> None:
    """Random non-zero biases (kernels keep their seeded Glorot values), so no term vanishes."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([w if w.ndim > 1 else 0.1 * rng.standard_normal(w.shape).astype(w.dtype)
                               for w in weights])


def copy_to_implementation(source: Any, target: Any, implementation: int) -> None:
    """Copy ``source``'s weights (LC kernels in implementation 1) into ``target`` of ``implementation``."""
    from models import convert_kernel

    for src, dst in zip(source.layers, target.layers, strict=True):
        weights = src.get_weights()
        if type(src).__name__ == "LocallyConnected2D" and weights:
            weights[0] = convert_kernel(weights[0], src, implementation, 1)
        dst.set_weights(weights)


def tf_keras_layer(layer: Any) -> Any:
    """The tf_keras twin of one Keras 3 layer (structure only)."""
    import tf_keras

    kind = type(layer).__name__
    act = getattr(getattr(layer, "activation", None), "__name__", None)
    if kind == "LocallyConnected2D":
        return tf_keras.layers.LocallyConnected2D(
            layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
            data_format=layer.data_format, activation=act, use_bias=layer.use_bias,
            implementation=layer.implementation, name=layer.name)
    if kind == "Conv2D":
        return tf_keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                                      padding=layer.padding, activation=act, name=layer.name)
    if kind == "MaxPooling2D":
        return tf_keras.layers.MaxPooling2D(layer.pool_size, strides=layer.strides, padding=layer.padding,
                                            name=layer.name)
    if kind == "Dense":
        return tf_keras.layers.Dense(layer.units, activation=act, name=layer.name)
    if kind in ("Flatten", "Dropout"):
        return getattr(tf_keras.layers, kind)(**({"rate": layer.rate} if kind == "Dropout" else {}),
                                              name=layer.name)
    raise ValueError(f"No tf_keras twin for layer type {kind!r}. Expected one of LocallyConnected2D, "
                     "Conv2D, MaxPooling2D, Dense, Flatten, Dropout.")


def tf_keras_twin(model: Any) -> Any:
    """A tf_keras Sequential with ``model``'s layers and weights (same layouts per implementation)."""
    import tf_keras

    twin = tf_keras.Sequential([tf_keras.Input(model.input_shape[1:]), *map(tf_keras_layer, model.layers)])
    twin.set_weights(model.get_weights())
    return twin


def graph_mode_call(model: Any) -> Callable[[Any], np.ndarray]:
    """A warm-able graph-mode forward pass returning NumPy (forces completion)."""
    import tensorflow as tf

    # One trace for every batch size: the batch axis is left unknown.
    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return lambda x: fn(x).numpy()


# --- one measurement ----------------------------------------------------------------------

@dataclass
class Runner:
    """A workload built once per method: ``timed(batch, policy)`` -> (first output, timing)."""

    timed: Callable[[np.ndarray, TimingPolicy], tuple[np.ndarray, Timing]]
    call: Callable[[np.ndarray], object] | None = None  # one forward pass, for interleaved timing
    details: dict[str, Any] = field(default_factory=dict)
    keep: list[Any] = field(default_factory=list)  # objects the runner needs alive


def keras_runner(model: Any) -> Runner:
    """Keras and tf_keras are timed in this process (a warm graph-mode call)."""
    import tensorflow as tf

    call = graph_mode_call(model)

    def timed(x: np.ndarray, policy: TimingPolicy) -> tuple[np.ndarray, Timing]:
        output = call(tf.constant(x))
        return output, measure(lambda: call(tf.constant(x)), policy)

    return Runner(timed, call=lambda x: call(tf.constant(x)), keep=[model])


@dataclass(frozen=True)
class OnnxExport:
    """One lowering of a workload written to ``path``, with what the export report says."""

    path: Path
    details: dict[str, Any]


def export_onnx(reference: Any, strategy: str, workdir: Path) -> OnnxExport:
    from export import ExportOptions, to_onnx

    path = workdir / f"{strategy}.onnx"
    report = to_onnx(reference, path, ExportOptions(policy=strategy, check=False))
    chosen = {layer["name"]: layer["lowering"] for layer in report.layers}
    details = {"lowerings": chosen, "onnx_mib": round(report.size_bytes / 2**20, 2), "nodes": report.nodes}
    if strategy == "auto":
        details["auto_timings_ms"] = {layer["name"]: layer.get("timings_ms") for layer in report.layers}
    return OnnxExport(path, details)


Timed = tuple[np.ndarray, Timing] | str  # a file's output and timing, or why it failed
ONNX_MEMORY_SHARE = 0.25  # an ONNX file whose intermediates need more of the machine's memory is not timed


def onnx_memory_skip(reference: Any, strategy: str, batch: int) -> str | None:
    """Why ``strategy``'s file is not timed at ``batch`` (its LocallyConnected2D intermediates,
    as the registry predicts them, over a quarter of this machine's memory), or None.

    ``sparse`` on DeepFace L4 at batch 64 needs 17.1 GB (products and taps): timing it took a full run's
    processes to 23.8 GB on a 24 GB machine (2026-12-02).
    """
    import psutil

    from export.lowerings import STRATEGIES

    if strategy not in STRATEGIES:  # auto: its picks are timed within the memory budget
        return None
    need = max((STRATEGIES[strategy].intermediate_bytes(layer.geometry, batch) for layer in reference.layers
                if type(layer).__name__ == "LocallyConnected2D"), default=0)
    limit = ONNX_MEMORY_SHARE * psutil.virtual_memory().total
    if need <= limit:
        return None
    return (f"out of memory: its intermediates need {need / 1e9:.1f} GB at batch {batch} "
            f"> a quarter of this machine's memory ({limit / 1e9:.1f} GB)")


def time_onnx_files(paths: Sequence[Path], x: np.ndarray, threads: int, policy: TimingPolicy,
                    rounds: int, between: Callable[[int], object] | None = None) -> list[Timed]:
    """Output and timing of every file on ``x`` (or why it failed), timed side by side in a child.

    See :mod:`benchmarks.onnx_timer`: one fresh process, ``rounds`` interleaved rounds. With
    ``between``, the child runs stepwise: before each of its rounds this process runs
    ``between(r)`` (e.g. times tf_keras), while the child waits with its threads asleep.
    """
    return time_in_child("benchmarks.onnx_timer", paths, x, policy, rounds,
                         ["--threads", str(threads), *(["--stepwise"] if between else [])], between=between)


def time_keras_files(backend: str, paths: Sequence[Path], x: np.ndarray, policy: TimingPolicy,
                     rounds: int) -> list[Timed]:
    """As :func:`time_onnx_files` for ``.keras`` files, in a child on Keras's ``backend``
    (:mod:`benchmarks.keras_backend_timer`)."""
    return time_in_child("benchmarks.keras_backend_timer", paths, x, policy, rounds, [],
                         {"KERAS_BACKEND": backend})


def time_in_child(module: str, paths: Sequence[Path], x: np.ndarray, policy: TimingPolicy, rounds: int,
                  arguments: list[str], env: dict[str, str] | None = None,
                  between: Callable[[int], object] | None = None) -> list[Timed]:
    """Runs timer ``module`` on ``paths`` in a fresh process (``env`` added to this one's) and reads
    what it wrote; ``between``: see :func:`time_onnx_files` (``arguments`` must ask for it)."""
    with tempfile.TemporaryDirectory(prefix="lc2d-timer-") as folder:
        work = Path(folder)
        np.save(work / "batch.npy", x)
        command = [sys.executable, "-m", module, str(work / "batch.npy"), str(work), *map(str, paths),
                   "--policy", json.dumps(vars(policy)), "--rounds", str(rounds), *arguments]
        child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
                                 env={**os.environ, **(env or {})})
        assert child.stdin is not None and child.stdout is not None
        try:
            for r in range(rounds if between else 0):
                between(r)  # type: ignore[misc]
                child.stdin.write("go\n")
                child.stdin.flush()
                if not child.stdout.readline():  # the round's medians; empty: the child died
                    break
            _, stderr = child.communicate(timeout=24 * 3600)
        except BrokenPipeError:
            _, stderr = child.communicate(timeout=600)
        if child.returncode != 0:
            lines = stderr.strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"{module} exited with {child.returncode}")
        entries = json.loads((work / "timings.json").read_text())
        return [(np.load(work / f"{i}.npy"), _timing(entry["timing"])) if "timing" in entry
                else entry["error"] for i, entry in enumerate(entries)]


def _timing(fields: dict[str, Any]) -> Timing:
    return Timing(**{**fields, "round_medians_ms": tuple(fields.get("round_medians_ms", ()))})


@contextmanager
def released() -> Iterator[None]:
    """Free models, sessions and TensorFlow graphs after a method is measured."""
    try:
        yield
    finally:
        gc.collect()


def skip_reason(family: str, implementation: int, model: Any, config: SuiteConfig) -> str | None:
    """Predicted infeasibility of a Keras / tf_keras implementation, before building anything."""
    import psutil

    if implementation == 2:
        return dense_kernel_skip(model, float(psutil.virtual_memory().available))
    if implementation == 3 and family == "tf_keras":
        return tf_keras_sparse_skip(model, config.tf_keras_sparse_max_indices)
    return None


def classify_error(err: BaseException) -> tuple[str, str]:
    """``(status, reason)`` of an exception raised while building or running a method."""
    from export import DenseKernelTooLargeError

    if isinstance(err, DenseKernelTooLargeError):
        return REFUSED, str(err)
    text = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    if isinstance(err, MemoryError) or "ResourceExhausted" in type(err).__name__:
        return SKIPPED, f"out of memory ({type(err).__name__}: {text})"
    return FAILED, f"{type(err).__name__}: {text}"


class Suite:
    """Runs every method of every workload and collects one record per (workload, batch, method)."""

    def __init__(self, config: SuiteConfig, floors: MachineFloors,
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.floors = floors
        self.log = log
        self.records: list[dict[str, Any]] = []
        self.failures: dict[str, str] = {}  # workload -> why its process ended early (process_per_workload)
        self.rng = np.random.default_rng(config.seed)

    def run(self) -> list[dict[str, Any]]:
        for name in self.config.workloads:
            if self.config.process_per_workload:
                self.records += self.run_workload_in_child(name)
            else:
                self.run_workload(all_workloads()[name])
        return self.records

    def run_workload_in_child(self, name: str) -> list[dict[str, Any]]:
        """:meth:`run_workload` in a fresh Python process; its records, also those of a process
        that died (each record is written as soon as it is made)."""
        with tempfile.TemporaryDirectory(prefix="lc2d-bench-") as folder:
            job, spool = Path(folder) / "job.pickle", Path(folder) / "records.jsonl"
            job.write_bytes(pickle.dumps((self.config, self.floors, name, str(spool))))
            code = ("import sys; from benchmarks.bench_layers import run_workload_child as r; "
                    "r(sys.argv[1])")
            sys.stdout.flush()
            returncode = subprocess.run([sys.executable, "-c", code, str(job)],
                                        cwd=Path(__file__).resolve().parents[1]).returncode
            records = ([json.loads(line) for line in spool.read_text().splitlines()]
                       if spool.is_file() else [])
        if returncode != 0:
            how = (f"killed by signal {-returncode}" + (" (the kernel's out-of-memory killer?)"
                                                         if returncode == -9 else "")
                   if returncode < 0 else f"exit status {returncode}")
            known = all_workloads().get(name)
            self.failures[name] = (f"{known.title if known else name}: its process ended early ({how}); "
                                   f"the {len(records)} measurements made before are kept")
            self.log(f"== {self.failures[name]}")
        return records

    def run_workload(self, workload: Workload) -> None:
        import keras

        keras.utils.set_random_seed(self.config.seed)
        reference = workload.build(1)
        randomize(reference, self.config.seed)
        inputs = {b: self.rng.standard_normal((b, *reference.input_shape[1:])).astype(np.float32)
                  for b in self.config.batches}
        expected = {b: np.asarray(reference(inputs[b], training=False)) for b in self.config.batches}
        costs = {b: model_cost(reference, b) for b in self.config.batches}
        self.log(f"== {workload.title}")
        for family, variant, make in self.methods(reference):
            self.measure_method(workload, family, variant, make, inputs, expected, costs)
        if set(BACKEND_FAMILIES) & set(self.config.families):
            self.measure_backends(workload, reference, inputs, expected, costs)
        if "onnx" in self.config.families:
            self.measure_onnx(workload, reference, inputs, expected, costs)

    def methods(self, reference: Any) -> Iterator[tuple[str, str, Callable[[], Runner | str]]]:
        """``(family, variant, make)`` for every Keras and tf_keras method; ``make`` returns a
        Runner or a skip reason. ONNX methods are measured together (:meth:`measure_onnx`)."""
        for family in self.config.families:
            if family in ("tf_keras", "keras"):
                for impl in IMPLEMENTATIONS:
                    yield family, str(impl), self._keras_maker(reference, family, impl)

    def _keras_maker(self, reference: Any, family: str, impl: int) -> Callable[[], Runner | str]:
        def make() -> Runner | str:
            reason = self._keras_skip(reference, family, impl)
            if reason is not None:
                return reason
            model = self._keras_model(reference, impl)
            return keras_runner(tf_keras_twin(model) if family == "tf_keras" else model)
        return make

    def _keras_skip(self, reference: Any, family: str, impl: int) -> str | None:
        """Why ``family``'s implementation ``impl`` is not measured, or None."""
        if impl not in self.config.implementations:
            return f"implementation {impl} not selected (--quick runs implementation 1 only)"
        reason = skip_reason(family, impl, reference, self.config)
        if reason is not None:
            return reason
        library = "tf_keras" if family == "tf_keras" else BACKEND_FAMILIES.get(family)
        if library is not None and not _installed(library):
            return f"{library} is not installed"
        return None

    def measure_backends(self, workload: Workload, reference: Any, inputs: dict[int, np.ndarray],
                         expected: dict[int, np.ndarray], costs: dict[int, Any]) -> None:
        """Our layer under JAX and PyTorch: each implementation saved as ``.keras`` here, then timed
        in one child per backend and batch, the implementations side by side."""
        workdir = Path(tempfile.mkdtemp(prefix="lc2d-bench-keras-"))
        try:
            files: dict[int, Path] = {}
            for impl in IMPLEMENTATIONS:
                if self._keras_skip(reference, "keras", impl) is None:
                    files[impl] = workdir / f"impl{impl}.keras"
                    self._keras_model(reference, impl).save(files[impl])
            for family in (f for f in self.config.families if f in BACKEND_FAMILIES):
                reasons = {impl: self._keras_skip(reference, family, impl) for impl in IMPLEMENTATIONS}
                for batch in self.config.batches:
                    self.time_backend(workload, family, files, reasons, inputs[batch], expected[batch],
                                      costs[batch])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def time_backend(self, workload: Workload, family: str, files: dict[int, Path],
                     reasons: dict[int, str | None], x: np.ndarray, expected: np.ndarray, cost: Any) -> None:
        """One child on ``family``'s backend times ``files``; one record per implementation
        (``reasons``: why an implementation is skipped, or None)."""
        timed = [impl for impl in IMPLEMENTATIONS if reasons[impl] is None and impl in files]
        results: dict[int, Timed] = {}
        if timed:
            try:
                results = dict(zip(timed, time_keras_files(
                    BACKEND_FAMILIES[family], [files[i] for i in timed], x, self.config.policy,
                    self.config.rounds), strict=True))
            except Exception as err:  # noqa: BLE001 - e.g. killed for memory: every file failed
                results = dict.fromkeys(timed, "{}: {}".format(*classify_error(err)))
        for impl in IMPLEMENTATIONS:
            record = self.base_record(workload, family, str(impl), x.shape[0], cost)
            result = results.get(impl)
            if result is None:
                record.update(status=SKIPPED, reason=reasons[impl])
            elif isinstance(result, str):
                record.update(status=FAILED, reason=result)
            else:
                self.record_timing(record, *result, expected)
            self.records.append(record)
            self.log(_log_line(record))

    def _keras_model(self, reference: Any, impl: int) -> Any:
        if impl == 1:
            return reference
        twin = _rebuild(reference, impl)
        copy_to_implementation(reference, twin, impl)
        return twin

    def measure_onnx(self, workload: Workload, reference: Any, inputs: dict[int, np.ndarray],
                     expected: dict[int, np.ndarray], costs: dict[int, Any]) -> None:
        """Every ONNX lowering (and ``auto``, ``int8``): exported, then timed side by side per batch."""
        from export.lowerings import AUTO_POLICY, FLOAT_STRATEGIES, QUANTIZED_STRATEGIES

        workdir = Path(tempfile.mkdtemp(prefix="lc2d-bench-"))
        try:
            exports: list[tuple[str, OnnxExport | tuple[str, str], float]] = []
            every = (*FLOAT_STRATEGIES, AUTO_POLICY, *QUANTIZED_STRATEGIES)
            for strategy in self.config.strategies or every:
                started = time.perf_counter()
                made: OnnxExport | tuple[str, str]
                try:
                    made = export_onnx(reference, strategy, workdir)
                except Exception as err:  # noqa: BLE001 - any failure is recorded, the suite goes on
                    made = classify_error(err)
                exports.append((strategy, made, time.perf_counter() - started))
                self.log(f"  exported onnx {strategy} in {exports[-1][2]:.1f} s")
            exported = {strategy: made for strategy, made, _ in exports if isinstance(made, OnnxExport)}
            for batch in self.config.batches:
                too_large = {s: why for s in exported if (why := onnx_memory_skip(reference, s, batch))}
                files = {s: f for s, f in exported.items() if s not in too_large}
                with self.best_tf_keras(workload, reference, batch, inputs[batch]) as between:
                    results, how = self.time_files([f.path for f in files.values()], inputs[batch], between)
                timed = dict(zip(files, results, strict=True))
                for strategy, made, setup_s in exports:
                    record = self.base_record(workload, "onnx", strategy, batch, costs[batch])
                    record["setup_s"] = round(setup_s, 3)
                    if strategy in too_large:
                        record.update(status=SKIPPED, reason=too_large[strategy])
                    elif isinstance(made, OnnxExport):
                        record.update(made.details, timed_as=how)
                        result = timed[strategy]
                        if isinstance(result, str):
                            record.update(status=FAILED, reason=result)
                        else:
                            self.record_timing(record, *result, expected[batch])
                    else:
                        record.update(status=made[0], reason=made[1])
                    self.records.append(record)
                    self.log(_log_line(record))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @contextmanager
    def best_tf_keras(self, workload: Workload, reference: Any, batch: int,
                      x: np.ndarray) -> Iterator[Callable[[int], object] | None]:
        """``between`` for :func:`time_onnx_files` that times the fastest tf_keras implementation
        of this workload and batch (already measured alone) in every round, interleaved with the
        ONNX files; its per-round medians go into that tf_keras record as
        ``interleaved_round_medians_ms``. None when tf_keras did not run here."""
        best = min((r for r in self.records if r["workload"] == workload.name and r["batch"] == batch
                    and r["family"] == "tf_keras" and r["status"] == OK),
                   key=lambda r: r["median_ms"], default=None)
        made = self._keras_maker(reference, "tf_keras", int(best["variant"]))() if best else None
        if best is None or not isinstance(made, Runner) or made.call is None:
            yield None
            return
        runner, call, medians = made, made.call, []
        config = self.config

        def between(r: int) -> None:
            share = round_policy(config.policy, config.rounds, first=r == 0)
            medians.append(statistics.median(sample(lambda: call(x), share)))

        with released():
            yield between
            if len(medians) == config.rounds:
                best["interleaved_round_medians_ms"] = medians
            del runner

    def time_files(self, paths: list[Path], x: np.ndarray,
                   between: Callable[[int], object] | None = None) -> tuple[list[Timed], str]:
        """Times ``paths`` side by side (with ``between`` run before each round, see
        :func:`time_onnx_files`); if that child fails as a whole (all sessions at once can
        exceed the memory: DeepFace at batch 64), times each file in a process of its own.

        Returns:
            Per file its (output, timing) or why it failed, and how they were timed.
        """
        config = self.config
        try:
            return (time_onnx_files(paths, x, config.threads, config.policy, config.rounds, between),
                    SIDE_BY_SIDE)
        except Exception as err:  # noqa: BLE001 - e.g. killed for memory; fall back below
            self.log(f"  timing side by side failed ({err}); timing each file alone")
        results: list[Timed] = []
        for path in paths:
            try:
                results += time_onnx_files([path], x, config.threads, config.policy, 1)
            except Exception as err:  # noqa: BLE001
                results.append("{}: {}".format(*classify_error(err)))
        return results, ALONE

    def measure_method(self, workload: Workload, family: str, variant: str, make: Callable[[], Runner | str],
                       inputs: dict[int, np.ndarray], expected: dict[int, np.ndarray],
                       costs: dict[int, Any]) -> None:
        with released():
            started = time.perf_counter()
            try:
                made = make()
            except Exception as err:  # noqa: BLE001 - any failure is recorded, the suite goes on
                made = classify_error(err)  # type: ignore[assignment]
            setup_s = time.perf_counter() - started
            for batch in self.config.batches:
                record = self.base_record(workload, family, variant, batch, costs[batch])
                record["setup_s"] = round(setup_s, 3)
                if isinstance(made, Runner):
                    record.update(made.details)
                    self.time_runner(record, made, inputs[batch], expected[batch])
                else:
                    status, reason = made if isinstance(made, tuple) else (SKIPPED, made)
                    record.update(status=status, reason=reason)
                self.records.append(record)
                self.log(_log_line(record))
            del made

    def time_runner(self, record: dict[str, Any], runner: Runner, x: np.ndarray,
                    expected: np.ndarray) -> None:
        try:
            output, timing = runner.timed(x, self.config.policy)
        except Exception as err:  # noqa: BLE001
            record["status"], record["reason"] = classify_error(err)
            return
        self.record_timing(record, output, timing, expected)

    @staticmethod
    def record_timing(record: dict[str, Any], output: Any, timing: Timing, expected: np.ndarray) -> None:
        """Fills ``record`` with a successful measurement: timing, ratio to floor, error."""
        record["max_rel_error"] = relative_error(np.asarray(output), expected)
        record.update(status=OK, reason=None, **timing.to_dict())
        record["ratio_to_floor"] = timing.median_ms / record["floor_ms"]

    def base_record(self, workload: Workload, family: str, variant: str, batch: int,
                    cost: Any) -> dict[str, Any]:
        floor = floor_ms(cost.flops, cost.nbytes, self.floors.matmul_gflops, self.floors.bandwidth_gbs)
        return {"workload": workload.name, "title": workload.title, "kind": workload.kind, "batch": batch,
                "family": family, "variant": variant, "method": method_name(family, variant),
                "flops": cost.flops, "bytes": cost.nbytes, "weight_bytes": cost.weight_bytes,
                "floor_ms": floor, "status": None, "reason": None, "median_ms": None,
                "ratio_to_floor": None}


def _rebuild(reference: Any, impl: int) -> Any:
    """The reference model's architecture with every LocallyConnected2D in ``impl``."""
    import keras

    layers = []
    for layer in reference.layers:
        config = layer.get_config()
        if type(layer).__name__ == "LocallyConnected2D":
            config["implementation"] = impl
        layers.append(type(layer).from_config(config))
    return keras.Sequential([keras.Input(reference.input_shape[1:], name="input"), *layers],
                            name=reference.name)


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _log_line(record: dict[str, Any]) -> str:
    head = f"  batch {record['batch']:>3}  {record['method']:<16}"
    if record["status"] == OK:
        return (f"{head} {record['median_ms']:10.2f} ms  {record['ratio_to_floor']:7.1f}× floor  "
                f"err {record['max_rel_error']:.1e}")
    return f"{head} {record['status']}: {record['reason']}"


# --- the whole run ------------------------------------------------------------------------

def machine_info(threads: int) -> dict[str, Any]:
    """CPU, load and library versions, so a reader can judge the numbers."""
    import onnxruntime
    import psutil

    info: dict[str, Any] = {"cpu": _cpu_model(), "cores": os.cpu_count(), "threads": threads,
                            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                            "numpy": np.__version__, "load_average_start": list(os.getloadavg())}
    for package in ("tensorflow", "keras", "tf_keras"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    info["git_commit"] = _git_commit()
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class PeakRss:
    """Samples the memory of this process and all its children (the ONNX timers) every
    ``interval_s`` in a thread; ``mib`` is the largest sum seen, what a 24 GB machine must hold.

    Each process counts its proportional set size (PSS: a page shared by k processes counts 1/k
    in each), so the sum is the memory the tree holds; resident set sizes count a shared page
    once per process, and their sum read 23,838 and 23,839 MiB in two full runs on a 23.5 GiB
    (24,064 MiB) machine (2026-12-02), the same to the MiB: a sum that double-counts cannot say how
    close a run came to the limit. Falls back to RSS where PSS is unavailable.
    """

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s, self.mib = interval_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in (me, *me.children(recursive=True)):
                with contextlib.suppress(psutil.Error):  # exited between the listing and the reading
                    total += _proportional_bytes(process)
            self.mib = max(self.mib, total / 2**20)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _proportional_bytes(process: Any) -> int:
    """``process``'s PSS in bytes (``/proc/PID/smaps_rollup``), or its RSS where that is missing."""
    try:
        return int(process.memory_full_info().pss)
    except (AttributeError, OSError):
        return int(process.memory_info().rss)


class _Spool(list[dict[str, Any]]):
    """A record list that also appends each record to a JSON-lines file as it comes."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        super().append(record)
        with self.path.open("a") as out:
            out.write(json.dumps(record, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def run_workload_child(job: str) -> None:
    """Entry point of a workload's process (:meth:`Suite.run_workload_in_child`)."""
    config, floors, name, spool = pickle.loads(Path(job).read_bytes())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    suite = Suite(config, floors, lambda line: print(line, flush=True))
    suite.records = _Spool(Path(spool))
    suite.run_workload(all_workloads()[name])
    # once more, whole: a record can gain fields after it was spooled (the tf_keras record gets
    # its medians timed interleaved with the ONNX files, ``interleaved_round_medians_ms``)
    Path(spool).write_text("".join(json.dumps(r, default=_plain) + "\n" for r in suite.records))


def run_suite(config: SuiteConfig, floors: MachineFloors | None = None, quick: bool = False,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the floors (unless given) and every method; return the JSON-ready result, with the
    peak resident memory of the run (this process and its children) in ``machine``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started = time.perf_counter()
    info = machine_info(config.threads)
    with PeakRss() as peak:
        result = _run_measured(config, floors, quick, log, started, info)
    result["machine"]["peak_rss_mib"] = round(peak.mib)
    log(f"peak memory (PSS) of the benchmark and its children: {peak.mib:,.0f} MiB")
    return result


def _run_measured(config: SuiteConfig, floors: MachineFloors | None, quick: bool, log: Callable[[str], None],
                  started: float, info: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.report import summarize

    sizes = (1024, 64) if quick else ()
    measured = floors is None
    if floors is None:
        floors = measure_floors(config.threads, *sizes)
    log(f"floors: matmul {floors.matmul_gflops:.1f} GFLOP/s, bandwidth {floors.bandwidth_gbs:.1f} GB/s")
    suite = Suite(config, floors, log)
    records = suite.run()
    info["load_average_end"] = list(os.getloadavg())
    floors_end = None
    if measured:  # the same measurement again: how far the machine drifted during the run
        floors_end = measure_floors(config.threads, *sizes)
        log(f"floors at the end: matmul {floors_end.matmul_gflops:.1f} GFLOP/s, "
            f"bandwidth {floors_end.bandwidth_gbs:.1f} GB/s")
    return {"generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": quick,
            "seconds": round(time.perf_counter() - started, 1), "machine": info, "floors": floors.to_dict(),
            "floors_end": floors_end.to_dict() if floors_end else None,
            "settings": {"workloads": list(config.workloads), "batches": list(config.batches),
                         "families": list(config.families), "threads": config.threads,
                         "timing": vars(config.policy).copy(), "onnx_rounds": config.rounds,
                         "tf_keras_sparse_max_indices": config.tf_keras_sparse_max_indices,
                         "implementations": list(config.implementations),
                         "strategies": list(config.strategies) if config.strategies else None},
            "results": records, "summary": summarize(records),
            "workload_failures": suite.failures}


def main(argv: Sequence[str] | None = None) -> int:
    """Script entry point: the same as ``lc2d bench``."""
    from lc2d.cli import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
