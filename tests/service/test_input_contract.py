"""InputContract: built from lc2d metadata or the graph signature; validates and converts batches."""

import json

import numpy as np
import pytest

from service.contract import InputContract, InputLimits, TensorSpec
from service.errors import (
    BatchTooLargeError,
    DtypeError,
    EmptyBatchError,
    InvalidInputError,
    ModelLoadError,
    NonFiniteInputError,
    ServiceError,
    ShapeMismatchError,
)

INPUT = TensorSpec("input", (None, None, 3))
OUTPUT = TensorSpec("probabilities", (4,))
METADATA = {"lc2d.input_name": "input", "lc2d.input_shape": "[32, 32, 3]", "lc2d.input_dtype": "float32",
            "lc2d.data_format": "channels_last", "lc2d.output_names": '["probabilities"]',
            "lc2d.labels": '["a", "b", "c", "d"]', "lc2d.model_name": "faces"}


@pytest.fixture
def contract() -> InputContract:
    return InputContract.from_onnx(METADATA, [INPUT], [OUTPUT])


def test_from_onnx_reads_every_metadata_key(contract: InputContract) -> None:
    assert contract.input_name == "input"
    assert contract.instance_shape == (32, 32, 3)
    assert contract.data_format == "channels_last"
    assert contract.output_names == ("probabilities",)
    assert contract.labels == ("a", "b", "c", "d")
    assert contract.model_name == "faces"


def test_from_onnx_falls_back_to_the_signature_without_metadata() -> None:
    contract = InputContract.from_onnx({}, [INPUT], [OUTPUT])
    assert contract.instance_shape == (None, None, 3)
    assert contract.labels is None and contract.data_format is None
    assert contract.validate_batch(np.ones((1, 5, 7, 3))).shape == (1, 5, 7, 3)


@pytest.mark.parametrize("metadata", [
    {"lc2d.input_shape": "[32, 32"},                      # not JSON
    {"lc2d.input_shape": "[32, 32, 4]"},                  # contradicts the graph
    {"lc2d.input_shape": "[-1, 32, 3]"},                  # not positive
    {"lc2d.input_name": "pixels"},                        # not the graph input
])
def test_from_onnx_refuses_malformed_metadata(metadata: dict[str, str]) -> None:
    with pytest.raises(ModelLoadError):
        InputContract.from_onnx(metadata, [INPUT], [OUTPUT])


def test_from_onnx_refuses_two_inputs() -> None:
    with pytest.raises(ModelLoadError, match="exactly one graph input"):
        InputContract.from_onnx({}, [INPUT, TensorSpec("mask", (3,))], [OUTPUT])


def test_validate_instances_names_the_wrong_instance_and_both_shapes(contract: InputContract) -> None:
    rng = np.random.default_rng(0)
    instances = [rng.random((32, 32, 3)).tolist() for _ in range(3)] + [rng.random((32, 32)).tolist()]
    with pytest.raises(ShapeMismatchError) as info:
        contract.validate_instances(instances)
    assert str(info.value) == "instance 3 has shape [32, 32], expected [32, 32, 3]"
    assert info.value.status_code == 422
    assert info.value.to_dict()["expected"] == [32, 32, 3] and info.value.to_dict()["received"] == [32, 32]


def test_validate_instances_converts_integers_to_float32_exactly(contract: InputContract) -> None:
    values = np.random.default_rng(1).integers(-1000, 1000, (2, 32, 32, 3))
    batch = contract.validate_instances(values.tolist())
    assert batch.dtype == np.float32
    np.testing.assert_array_equal(batch, values.astype(np.float32))


@pytest.mark.parametrize("bad", [
    np.full((1, 32, 32, 3), "x"),
    np.full((1, 32, 32, 3), True),
    np.full((1, 32, 32, 3), 1 + 2j),
])
def test_validate_batch_refuses_non_numbers(contract: InputContract, bad: np.ndarray) -> None:
    with pytest.raises(DtypeError, match="expected numbers convertible to float32"):
        contract.validate_batch(bad)


def test_validate_instances_refuses_strings_in_json(contract: InputContract) -> None:
    instance = np.zeros((32, 32, 3)).tolist()
    instance[0][0][0] = "1.0"
    with pytest.raises(DtypeError, match="instance 0 has strings"):
        contract.validate_instances([instance])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_validate_batch_refuses_non_finite_values_by_default(contract: InputContract, value: float) -> None:
    batch = np.random.default_rng(2).random((2, 32, 32, 3))
    batch[1, 4, 5, 2] = value
    with pytest.raises(NonFiniteInputError, match=r"instance 1 at index \[4, 5, 2\]"):
        contract.validate_batch(batch)
    allowed = contract.validate_batch(batch, InputLimits(allow_non_finite=True))
    assert not np.isfinite(allowed[1, 4, 5, 2])


def test_validate_batch_refuses_more_than_max_batch_size(contract: InputContract) -> None:
    limits = InputLimits(max_batch_size=4)
    assert len(contract.validate_batch(np.ones((4, 32, 32, 3)), limits)) == 4
    with pytest.raises(BatchTooLargeError, match="expected at most 4 instances per request, received 5"):
        contract.validate_batch(np.ones((5, 32, 32, 3)), limits)
    with pytest.raises(BatchTooLargeError, match="received 5"):
        contract.validate_instances([np.ones((32, 32, 3))] * 5, limits)
    assert len(contract.validate_batch(np.ones((5, 32, 32, 3)))) == 5  # the file itself sets no limit


def test_validate_batch_refuses_an_empty_batch(contract: InputContract) -> None:
    with pytest.raises(EmptyBatchError):
        contract.validate_batch(np.ones((0, 32, 32, 3)))


def test_validate_batch_refuses_a_missing_batch_axis(contract: InputContract) -> None:
    expected = r"the batch has shape \[32, 32, 3\], expected \[N, 32, 32, 3\]"
    with pytest.raises(ShapeMismatchError, match=expected):
        contract.validate_batch(np.ones((32, 32, 3)))


def test_validate_instances_refuses_ragged_lists(contract: InputContract) -> None:
    with pytest.raises(InvalidInputError):
        contract.validate_instances([[[1.0, 2.0], [3.0]]])


def test_validate_batch_returns_contiguous_float32_with_the_same_values(contract: InputContract) -> None:
    batch = np.random.default_rng(3).random((3, 3, 32, 32)).transpose(0, 2, 3, 1)  # not contiguous
    checked = contract.validate_batch(batch)
    assert checked.flags["C_CONTIGUOUS"] and checked.dtype == np.float32
    np.testing.assert_allclose(checked, batch, rtol=1e-7)


def test_every_contract_error_is_a_4xx_service_error(contract: InputContract) -> None:
    for bad in (np.ones((5, 32, 32, 3)), np.ones((1, 2, 2, 3)), np.full((1, 32, 32, 3), np.nan)):
        with pytest.raises(ServiceError) as info:
            contract.validate_batch(bad, InputLimits(max_batch_size=4))
        assert 400 <= info.value.status_code < 500
        assert json.dumps(info.value.to_dict())
