"""Precision, quantization and sharding on CPU: bitsandbytes runs NF4 (and int8) layers here, so
the 4-bit path is tested for real on the tiny random Llama; sharding needs GPUs, so its decision is
a pure function tested on the numbers it reads (GPU memory, model size)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genies.data.schema import Distribution
from genies.errors import ConfigError
from genies.interventions import _reward_model as rm
from genies.interventions.context import FitContext
from genies.interventions.full_fine_tune import FullFineTune
from genies.interventions.lora import Lora
from genies.interventions.mms import MMS
from genies.interventions.prompt_tuning import PromptTuning
from genies.interventions.scores import pair_with_labels
from genies.models.base import LoadedModel
from genies.models.hidden import extract_hidden
from genies.models.loading import load_folder, parameter_count, quantization_config
from genies.models.placement import GIB, WEIGHT_SHARE, Placement, WeightPlacement, weight_placement
from genies.pipeline.jobs import fit_key

from planted import planted  # tests/planted.py

bnb = pytest.importorskip("bitsandbytes", reason="the 4-bit tests need bitsandbytes: pip install 'genies[gpu]'")

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:MatMul8bitLt:UserWarning")]  # int8 on CPU casts to fp16

FAST = dict(r=8, alpha=16, dropout=0.0, learning_rate=3e-3, steps=20, batch_size=8)


def quantized(lm: LoadedModel, quantize: str, dtype: str = "float32") -> LoadedModel:
    return load_folder(lm.path, name=f"{lm.name}-{quantize}", placement=Placement(device="cpu", dtype=dtype,
                                                                                      quantize=quantize))


@pytest.fixture(scope="module")
def tiny_4bit(tiny_llama) -> LoadedModel:
    return quantized(tiny_llama, "4bit")


@pytest.mark.parametrize("quantize, layer", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_loading_gives_bitsandbytes_layers(tiny_llama, quantize, layer) -> None:
    lm = quantized(tiny_llama, quantize)
    attention = lm.model.model.layers[0].self_attn
    assert type(attention.q_proj).__name__ == layer and isinstance(attention.q_proj, getattr(bnb.nn, layer))
    assert type(lm.model.lm_head).__name__ == "Linear"  # the output head stays unquantized
    assert lm.device.type == "cpu" and lm.dtype == torch.float32 and not lm.model.training
    assert lm.quantize == quantize and lm.precision_key()["quantize"] == quantize


def test_4bit_is_nf4_with_double_quantization_in_the_placement_dtype() -> None:
    """QLoRA's setting; 8-bit is LLM.int8(); none loads unquantized."""
    config = quantization_config(Placement(device="cpu", dtype="bfloat16", quantize="4bit"))
    assert (config.load_in_4bit, config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant,
            config.bnb_4bit_compute_dtype) == (True, "nf4", True, torch.bfloat16)
    assert quantization_config(Placement(device="cpu", quantize="8bit")).load_in_8bit
    assert quantization_config(Placement(device="cpu")) is None


def test_a_4bit_lora_reward_model_fits_and_predicts(tiny_4bit) -> None:
    """QLoRA through the intervention contract: the reward model is reloaded in 4 bits, the
    adapters and the score head train in float32 on top, and it learns the planted feature."""
    dist = Distribution.from_examples("planted", planted(16, seed=0), planted(8, seed=1))
    method = Lora(**FAST)
    fit = method.fit(tiny_4bit, dist.train_only(), FitContext(seed=0))
    assert fit.train_loss[-1] < fit.train_loss[0]
    assert all(t.dtype == torch.float32 for t in fit.tensors.values())
    assert any(k.endswith("score.weight") for k in fit.tensors)

    model = method.load(tiny_4bit, fit)
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    scores = method.scorer(tiny_4bit, fit, FitContext())(dist.eval_set("train"))
    p = pair_with_labels(scores, dist.split("train"), "planted/train").p_preferred
    assert np.isfinite(p).all() and (p > 0.5).mean() >= 0.9


def test_prompt_tuning_trains_on_a_4bit_model(tiny_4bit) -> None:
    dist = Distribution.from_examples("planted", planted(6, seed=6), planted(3, seed=7))
    method = PromptTuning(learning_rate=3e-2, steps=3, batch_size=6)
    fit = method.fit(tiny_4bit, dist.train_only(), FitContext(seed=0))
    # the virtual tokens are every packed row's shared start, so a 4-bit model packs too (the pass is
    # checked against one sequence per response on this model before it is used)
    assert all(t.dtype == torch.float32 for t in fit.tensors.values()) and fit.forward == "packed"
    p = pair_with_labels(method.scorer(tiny_4bit, fit, FitContext())(dist.eval_set("test")), dist.split("test"),
                         "planted/test").p_preferred
    assert len(p) == len(dist.test) and np.isfinite(p).all()


def test_4bit_frozen_layer_cache_and_gradient_checkpointing_change_no_number(tiny_4bit, monkeypatch) -> None:
    """The fast training path (frozen lower layers computed once) works on a 4-bit model, and
    gradient checkpointing, an execution setting, recomputes the layers in the backward pass
    (a layer's modules run twice per step) without changing the loss or the trained tensors."""
    dist = Distribution.from_examples("planted", planted(8, seed=2), [])
    method = Lora(**{**FAST, "steps": 3, "last_layers": 1})
    assert "gradient_checkpointing" in method.hparams() and "gradient_checkpointing" not in method.key_hparams()
    calls = {False: 0, True: 0}
    fits = {}
    load = rm.load_reward_model
    for checkpointing in (False, True):
        def counting(lm, checkpointing=checkpointing):
            model = load(lm)
            model.model.layers[1].input_layernorm.register_forward_hook(lambda *_: calls.__setitem__(checkpointing,
                                                                                      calls[checkpointing] + 1))
            return model
        monkeypatch.setattr(rm, "load_reward_model", counting)
        fits[checkpointing] = dataclasses.replace(method, gradient_checkpointing=checkpointing).fit(
            tiny_4bit, dist, FitContext(seed=0))
    assert fits[False].forward == fits[True].forward == "layer-cache"
    assert calls[True] - calls[False] == method.steps  # one recomputation per step (one micro batch)
    assert fits[True].train_loss == fits[False].train_loss
    assert all(torch.equal(fits[True].tensors[k], v) for k, v in fits[False].tensors.items())


def test_full_fine_tune_refuses_a_quantized_model_in_one_line(tiny_4bit) -> None:
    dist = Distribution.from_examples("planted", planted(4, seed=3), [])
    with pytest.raises(ConfigError) as err:
        FullFineTune(allow_cpu=True, steps=1).fit(tiny_4bit, dist, FitContext())
    assert "cannot train the 4bit quantized weights" in str(err.value) and "\n" not in str(err.value)
    assert "--quantize none" in str(err.value) and "lora" in str(err.value)


@pytest.mark.parametrize("dtype, quantize", [("bfloat16", "none"), ("float32", "8bit"), ("float32", "4bit"),
                                             ("bfloat16", "4bit")])
def test_hidden_states_extract_from_half_and_quantized_models(tiny_llama, dtype, quantize) -> None:
    """Representation methods read float32 hidden states from any precision; they stay close to
    the float32 model's (4-bit NF4 moves them the most)."""
    lm = quantized(tiny_llama, quantize, dtype)
    prefixes, completions = ["Question: add 2 and 3.", "a", "Question: add 2 and 3."], [" Five.", "bcd", " Fivefold."]
    got = extract_hidden(lm, prefixes, completions, position="mean")
    want = extract_hidden(tiny_llama, prefixes, completions, position="mean")
    for site in ("residual", "heads"):
        assert got[site].dtype == np.float32 and got[site].shape == want[site].shape
        assert np.isfinite(got[site]).all()
        cosine = float(np.dot(got[site].ravel(), want[site].ravel())
                       / (np.linalg.norm(got[site]) * np.linalg.norm(want[site])))
        assert cosine > 0.98, (site, cosine)


def test_a_representation_method_fits_and_scores_on_a_4bit_model(tiny_4bit) -> None:
    dist = Distribution.from_examples("planted", planted(12, seed=4), planted(6, seed=5))
    method = MMS(k=4)
    fit = method.fit(tiny_4bit, dist.train_only(), FitContext(seed=0))
    p = pair_with_labels(method.scorer(tiny_4bit, fit, FitContext())(dist.eval_set("test")), dist.split("test"),
                         "planted/test").p_preferred
    assert len(p) == len(dist.test) and np.isfinite(p).all()


def test_a_4bit_run_has_other_job_keys_than_fp32_and_the_device_is_not_in_them(tiny_llama, tiny_4bit) -> None:
    def key(precision: dict) -> str:
        return fit_key(method=Lora(), model_fingerprint=tiny_llama.fingerprint, precision=precision,
                       source_hash="src", seed=0)

    assert tiny_4bit.fingerprint == tiny_llama.fingerprint  # same weights on disk: precision tells them apart
    assert key(tiny_4bit.precision_key()) != key(tiny_llama.precision_key())
    assert tiny_4bit.precision_key()["bitsandbytes"] == bnb.__version__
    eight = Placement(device="cpu", dtype="float32", quantize="8bit").precision_key()
    assert len({key(tiny_4bit.precision_key()), key(tiny_llama.precision_key()), key(eight)}) == 3
    on_gpu = Placement(device="cuda:1", dtype="float32", quantize="4bit", gpus=2).precision_key()
    assert key(on_gpu) == key(tiny_4bit.precision_key())


def test_parameter_count_reads_the_safetensors_headers(tiny_llama) -> None:
    files = sorted(tiny_llama.path.glob("*.safetensors"))
    assert parameter_count(files) == sum(p.numel() for p in tiny_llama.model.parameters())


# -- where the weights go: the sharding decision ------------------------------------------------

GB80 = 80 * GIB


def cuda(**kwargs) -> Placement:
    return Placement(device=kwargs.pop("device", "cuda"), dtype="bfloat16", **kwargs)


WEIGHT_CASES = [
    # off the GPU: load then move; a quantized model is loaded in place (it cannot be moved)
    (Placement(device="cpu"), [], 0, WeightPlacement()),
    (Placement(device="cpu", quantize="4bit"), [], 0, WeightPlacement({"": "cpu"})),
    # fits one GPU: one GPU, whatever is visible
    (cuda(), [GB80] * 4, 14 * GIB, WeightPlacement()),
    (cuda(quantize="4bit"), [GB80], 30 * GIB, WeightPlacement({"": "cuda:0"})),
    (cuda(device="cuda:2", quantize="8bit"), [GB80] * 4, GIB, WeightPlacement({"": "cuda:2"})),
    # does not fit one GPU, --gpus unset: sharded over every visible GPU
    (cuda(), [GB80] * 2, 70 * GIB, WeightPlacement("auto", {0: int(WEIGHT_SHARE * GB80), 1: int(WEIGHT_SHARE * GB80)})),
    # --gpus 2 asks for sharding even when one GPU would do; from cuda:1 it takes GPUs 1 and 2
    (cuda(gpus=2), [GB80] * 4, GIB, WeightPlacement("auto", {0: int(WEIGHT_SHARE * GB80), 1: int(WEIGHT_SHARE * GB80)})),
    (cuda(device="cuda:1", gpus=2), [GB80] * 4, GIB,
     WeightPlacement("auto", {1: int(WEIGHT_SHARE * GB80), 2: int(WEIGHT_SHARE * GB80)})),
    # --gpus 1 never shards (the planner refuses what cannot fit); one GPU visible cannot shard
    (cuda(gpus=1), [GB80] * 2, 200 * GIB, WeightPlacement()),
    (cuda(), [GB80], 200 * GIB, WeightPlacement()),
    # --gpu-memory caps each GPU, so a model that fits 80 GB but not 40 GB is sharded
    (cuda(gpu_memory=40), [GB80] * 2, 40 * GIB,
     WeightPlacement("auto", {0: int(WEIGHT_SHARE * 40 * GIB), 1: int(WEIGHT_SHARE * 40 * GIB)})),
]
WEIGHT_IDS = ["cpu", "cpu-4bit", "fits-one", "fits-one-4bit", "cuda:2-8bit", "too-big-shards", "gpus-2",
              "cuda:1-gpus-2", "gpus-1-never-shards", "one-gpu-visible", "gpu-memory-cap"]


@pytest.mark.parametrize("placement, gpus, size, expected", WEIGHT_CASES, ids=WEIGHT_IDS)
def test_weight_placement(placement, gpus, size, expected) -> None:
    assert weight_placement(placement, gpus, size) == expected


def test_weight_placement_kwargs_and_bad_gpu_counts() -> None:
    assert WeightPlacement().kwargs() == {} and not WeightPlacement().sharded
    assert WeightPlacement({"": "cpu"}).kwargs() == {"device_map": {"": "cpu"}}
    sharded = WeightPlacement("auto", {0: 5, 1: 5})
    assert sharded.sharded and sharded.kwargs() == {"device_map": "auto", "max_memory": {0: 5, 1: 5}}
    with pytest.raises(ConfigError, match=r"--gpus 2 from cuda:1: only 2 GPU\(s\) are visible; ask for at most 1"):
        weight_placement(cuda(device="cuda:1", gpus=2), [GB80] * 2, GIB)
    with pytest.raises(ConfigError, match="--device cuda:3: only 2 GPU"):
        weight_placement(cuda(device="cuda:3"), [GB80] * 2, GIB)
    assert Placement(quantize="4bit").bytes_per_weight == 0.5 and Placement(quantize="8bit").bytes_per_weight == 1
    assert Placement(device="cpu").bytes_per_weight == 4 and cuda().bytes_per_weight == 2
