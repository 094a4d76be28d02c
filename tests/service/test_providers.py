"""service.providers: the device setting -> execution providers, their options and fallbacks."""

from pathlib import Path

import pytest

from service.errors import ProviderUnavailableError
from service.providers import CPU, CUDA, DEVICES, TENSORRT, TRT_CACHE_DIRNAME, plan_providers

GPU_BUILD = [TENSORRT, CUDA, CPU]


def test_auto_prefers_cuda_when_available_and_never_requires_it() -> None:
    assert plan_providers("auto", available=[CUDA, CPU]).names == [CUDA, CPU]
    assert plan_providers("auto", available=[CPU]).names == [CPU]
    assert plan_providers("auto", available=[CPU]).required is None


def test_cpu_never_uses_an_accelerator() -> None:
    assert plan_providers("cpu", available=GPU_BUILD).names == [CPU]


def test_cuda_without_cuda_fails_in_one_line_naming_the_fix() -> None:
    with pytest.raises(ProviderUnavailableError, match="needs CUDAExecutionProvider") as info:
        plan_providers("cuda", available=["AzureExecutionProvider", CPU])
    assert "\n" not in str(info.value) and "onnxruntime-gpu" in str(info.value)
    assert info.value.exit_code == 2


def test_tensorrt_falls_back_to_cuda_then_cpu_and_caches_engines_beside_the_model(tmp_path: Path) -> None:
    model = tmp_path / "digits" / "1" / "model.onnx"
    plan = plan_providers("tensorrt", model, fp16=True, available=GPU_BUILD)
    assert plan.names == [TENSORRT, CUDA, CPU] and plan.required == TENSORRT
    options = dict(plan.providers)[TENSORRT]
    assert options == {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                       "trt_engine_cache_path": str(model.parent / TRT_CACHE_DIRNAME)}
    assert dict(plan.providers)[CUDA] == {} and dict(plan.providers)[CPU] == {}


def test_tensorrt_fp16_is_off_unless_asked() -> None:
    plan = plan_providers("tensorrt", available=GPU_BUILD)
    assert dict(plan.providers)[TENSORRT] == {"trt_fp16_enable": False}


def test_tensorrt_missing_from_a_cuda_build_fails_clearly() -> None:
    with pytest.raises(ProviderUnavailableError, match="needs TensorrtExecutionProvider"):
        plan_providers("tensorrt", available=[CUDA, CPU])


def test_a_required_provider_that_did_not_start_is_reported() -> None:
    plan = plan_providers("cuda", available=[CUDA, CPU])
    plan.check_in_use([CUDA, CPU])  # started: nothing to say
    with pytest.raises(ProviderUnavailableError, match="could not start CUDAExecutionProvider"):
        plan.check_in_use([CPU])


def test_unknown_device_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="expected device to be one of") as info:
        plan_providers("tpu", available=[CPU])
    assert all(name in str(info.value) for name in DEVICES)


def test_this_machine_cpu_build_refuses_tensorrt_at_load(tiny_model) -> None:
    import onnxruntime

    from service.runtime import load_model

    if TENSORRT in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has TensorRT")
    with pytest.raises(ProviderUnavailableError, match="--device tensorrt needs"):
        load_model(tiny_model.path, device="tensorrt")
