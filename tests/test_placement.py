"""Placement: what is checked before loading, what enters job keys and what does not."""

from __future__ import annotations

import pytest
import torch

from genies.errors import ConfigError, UnknownNameError
from genies.models.placement import Placement
from genies.pipeline.config import RunConfig


def test_auto_is_fp32_on_cpu_and_bf16_on_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Placement().torch_device == torch.device("cpu")
    assert Placement().torch_dtype == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert Placement().torch_device == torch.device("cuda")
    assert Placement().torch_dtype == torch.bfloat16
    assert Placement(dtype="float16").torch_dtype == torch.float16


def test_precision_key_has_dtype_and_quantization_but_not_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert Placement().precision_key() == {"dtype": "float32", "quantize": "none"}
    assert Placement(device="cpu", dtype="float32").precision_key() == Placement(
        device="cuda", dtype="float32").precision_key()
    assert Placement(device="cuda:1", dtype="bfloat16", gpus=2).precision_key() == {"dtype": "bfloat16",
                                                                                   "quantize": "none"}
    quantized = Placement(dtype="float32", quantize="4bit").precision_key()
    assert quantized["quantize"] == "4bit" and "bitsandbytes" in quantized


@pytest.mark.parametrize("kwargs, fragment", [
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"dtype": "bf16"}, "unknown dtype 'bf16'"),
    ({"quantize": "3bit"}, "unknown quantization '3bit'"),
    ({"gpus": 0}, "--gpus must be at least 1"),
])
def test_bad_values_are_one_line(kwargs, fragment):
    with pytest.raises((ConfigError, UnknownNameError)) as err:
        Placement(**kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_gpu_asked_for_where_none_exists_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--device cuda: no CUDA GPU is visible here .*use --device cpu"):
        Placement(device="cuda").check()
    with pytest.raises(ConfigError, match="--device cuda:0: no CUDA GPU"):
        RunConfig(out=tmp_path, device="cuda:0").placement.check()
    Placement(device="cpu").check()


def test_run_config_checks_placement_when_built(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'bfloat16'"):
        RunConfig(out=tmp_path, dtype="bfloat61")
    with pytest.raises(ConfigError, match="--ray-address needs --executor ray"):
        RunConfig(out=tmp_path, ray_address="auto")
    config = RunConfig(out=tmp_path, device="cpu", dtype="bfloat16", quantize="none")
    assert config.placement == Placement(device="cpu", dtype="bfloat16")


def test_a_method_that_cannot_use_the_placement_is_refused_before_any_job(tmp_path, monkeypatch):
    """full_fine_tune cannot train quantized weights: the run stops with one line before planning."""
    import genies

    monkeypatch.setattr(Placement, "check", lambda self: None)  # bitsandbytes need not be importable here
    config = RunConfig(out=tmp_path / "run", interventions=("full_fine_tune",), quantize="4bit",
                       shifts="no-such-list", cache_dir=tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"^full_fine_tune cannot train 4bit quantized weights; use --quantize none"):
        genies.run(config)
    assert not (tmp_path / "run").exists()
