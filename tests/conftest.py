"""Test-wide settings: quiet TensorFlow, the TensorFlow Keras backend, one random generator, one Ray."""

import os
from collections.abc import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """One small local Ray instance for every Ray test (scoring's actor pool, Ray Serve).

    Started once: Ray takes 10-20 s and about 1 GB to start on this machine. 3 logical CPUs fit
    the scoring tests' 2 actors plus their read tasks, or 2 Ray Serve replicas of 0.5 CPU.
    """
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             object_store_memory=128 * 1024 * 1024)
    yield
    ray.shutdown()
