"""What the planner says each job computes (genies.pipeline.sizing): the memory and FLOPs of
scoring, hidden-state extraction, reward-model training and scoring, worked out by hand for a
tiny llama whose every number is small enough to check on paper.

The tiny model: vocabulary 10, hidden size d = 8, intermediate size i = 16, 2 layers, 2 heads
of 4 (no grouped-query attention), untied head, float32 (4 bytes) unless a test says otherwise.
What the formulas of genies.models.memory give for it (docs: that module's docstring):

- linear weights per layer: q, k, v, o 8 x 8 and gate, up, down 8 x 16 = 4*64 + 3*128 = 640;
  parameters of the LM 10*8 (embeddings) + 2*(640 + 2*8 norms) + 8 (final norm) + 10*8 (head)
  = 1480, of the reward model 1480 - 80 + 8 (one-output score head) = 1408. float32: 5920 and
  5632 bytes.
- inference working set per token: (4 d + 3 i + 2 head_dim) * 4 = (32 + 48 + 8) * 4 = 352 bytes.
- LM-head buffer of a chunk of 128 positions: 128 * 10 * (4 + 4) = 10240 bytes.
- training, saved per token and layer: norms 2 (4 d + 4 d) = 128, attention 2 (8 + 2*4) * 4 =
  128, MLP 3 * 16 * 4 = 192: 448; a LoRA module of rank 2 adds 2*4 and, with dropout, its
  dropped input and mask 8*4 + 8 = 40; full fine-tuning adds o_proj's and down_proj's inputs
  (8 + 16) * 4 = 96. Checkpointed: one input of d floats, 32 bytes. Backward buffer:
  (3 i + d) * 4 = 224 bytes per token.
- forward FLOPs: 2 * 640 * layers per token (2560 through both layers), plus 2 * 10 * 8 = 160
  per LM-head position.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest

from genies.data.schema import Distribution, Example
from genies.errors import ConfigError
from genies.interventions import Intervention
from genies.interventions._reward_model import PeftRewardModel
from genies.interventions.registry import load_intervention
from genies.models.memory import NF4_BITS, MemoryEstimate, ModelShape, Precision
from genies.pipeline.sizing import DataShape, Sizer, Workload, extraction_templates, packed_lines

TINY = {"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "tie_word_embeddings": False}
SHAPE = ModelShape.from_config(TINY)
# 10 train and 4 test examples; prompts of 20 tokens, 3 responses of 5: a query is 20 + 3*5 = 35
# tokens, a training row (a prompt and two responses) 20 + 2*5 = 30; the longest 40 and 60.
DATA = DataShape(train=10, test=4, prompt_tokens=20, response_tokens=5, responses=3, longest_pair=40,
                 longest_query=60)
LM = 5920  # the causal LM's float32 weights
RM = 5632  # the reward model's


def sizer(data: DataShape = DATA, *, gpu: bool = False, precision: Precision = Precision("float32")) -> Sizer:
    return Sizer(SHAPE, precision, gpu, lambda name: data)


def test_the_tiny_model_is_what_the_docstring_computes() -> None:
    assert (SHAPE.parameters("lm"), SHAPE.parameters("score"), SHAPE.matmul_parameters) == (1480, 1408, 1280)
    assert sizer().base_weights == LM
    assert sizer(precision=Precision("bfloat16")).base_weights == 2 * 1480
    assert (DATA.query_tokens, DATA.pair_tokens) == (35, 30)


# -- data shapes --------------------------------------------------------------------------------

def test_data_shape_of_a_distribution() -> None:
    """Characters over 4 per token; responses carry an EOS each; the longest training row is a
    prompt and its two longest responses (+ 2 EOS), the longest query a prompt and all of its."""
    train = [Example("p" * 401, ("a" * 41, "b" * 81, "c" * 5), 0), Example("q" * 8, ("x" * 12, "y" * 20), 1)]
    test = [Example("r" * 100, ("z" * 4, "w" * 4), 0)]
    shape = DataShape.of(Distribution.from_examples("d", train, test))
    assert (shape.train, shape.test) == (2, 1)
    assert shape.prompt_tokens == (401 + 8 + 100) / 3 / 4
    assert shape.response_tokens == (41 + 81 + 5 + 12 + 20 + 4 + 4) / 7 / 4 + 1
    assert shape.responses == 7 / 3
    assert shape.longest_pair == math.ceil((401 + 81 + 41) / 4) + 2 == 133
    assert shape.longest_query == math.ceil((401 + 127) / 4) + 3 == 135


def test_data_shape_of_nothing_is_refused_naming_the_distribution() -> None:
    with pytest.raises(ConfigError, match=r"^distribution 'empty' has no examples to size$"):
        DataShape.of(Distribution.from_examples("empty", [], []))


def test_capped_keeps_the_lengths_and_caps_only_what_is_given() -> None:
    assert DATA.capped(None, None) == DATA
    assert DATA.capped(3, None) == dataclasses.replace(DATA, train=3)
    assert DATA.capped(None, 2) == dataclasses.replace(DATA, test=2)
    assert DATA.capped(100, 100) == DATA  # a cap above the split's size changes nothing
    assert DATA.capped(10, 4) == DATA


def test_packed_lines() -> None:
    assert packed_lines(5, 100, 100, 256) == (3, 200)  # two rows a line; the fullest line is 200
    assert packed_lines(1, 100, 50, 256) == (1, 100)  # one row: its own length
    assert packed_lines(3, 200, 200, 256) == (3, 200)  # 200 > 256 / 2: alone
    assert packed_lines(3, 256, 256, 256) == (3, 256)  # exactly a line
    assert packed_lines(3, 300, 300, 256) == (3, 300)  # longer than a line: alone
    assert packed_lines(4, 30, 40, 256) == (1, 120)  # eight fit; four share one line
    assert packed_lines(9, 30, 40, 256) == (2, 240)
    assert packed_lines(16, 42.5, 42, 256) == (3, 255)  # six 42.5-token rows: 255 (rounded up)


def test_extraction_templates_and_the_tokens_they_add() -> None:
    """plain adds nothing; the cra / ccs suffixes are 65 and 64 characters (/4), ccs's with an EOS."""
    templates = {name: extraction_templates(load_intervention(name, "paper"))
                 for name in ("mms", "lat", "cra", "ccs", "logistic")}
    assert templates == {"mms": [("plain", 0.0)], "lat": [("plain", 0.0)],
                         "cra": [("cra_yes", 65 / 4), ("cra_no", 64 / 4)],
                         "ccs": [("ccs_yes", 65 / 4 + 1), ("ccs_no", 64 / 4 + 1)],
                         "logistic": [("plain", 0.0)]}
    assert extraction_templates(load_intervention("lat", "paper", stimulus=2)) == [("lat_stim_2", 135 / 4)]
    assert extraction_templates(load_intervention("ccs", "paper", no_template="ccs_no_legacy"))[1] == (
        "ccs_no_legacy", 63 / 4 + 1)
    assert extraction_templates(load_intervention("mms", "paper", template="cra_no")) == [("cra_no", 16.0)]
    assert extraction_templates(load_intervention("logistic", "paper", template="lat_stim_2")) == [
        ("lat_stim_2", 135 / 4)]
    assert extraction_templates(load_intervention("lora", "paper")) == []


# -- scoring (zero_shot, few_shot) --------------------------------------------------------------

def _check(work: Workload, memory: MemoryEstimate, flops: float, *, trains: bool = False) -> None:
    assert work.memory(False) == memory and work.memory(True) == memory
    assert work.flops(False) == flops and work.flops(True) == flops
    assert work.trains is trains and work.note == ""


def test_zero_shot_scoring_on_cpu() -> None:
    """The CPU budget of 2048 nodes a forward: the layer's working set (2048 * 352) beats the LM
    head's (2048 hidden states of 32 bytes and a 10240-byte chunk). FLOPs: 4 queries of 35 tokens
    through the decoder, the head at the 4 * 3 * 5 = 60 response tokens."""
    work = sizer().workload(load_intervention("zero_shot", "paper"), "predict", "d")
    _check(work, MemoryEstimate(LM, buffers=2048 * 352), 2560 * 140 + 160 * 60)


def test_zero_shot_scoring_with_a_small_budget_and_a_short_query() -> None:
    """batch_tokens 16 below the longest query (20): the query goes alone, 20 nodes; then the
    head's buffer (20 * 32 + 10240 = 10880) beats the layer's (20 * 352 = 7040)."""
    data = dataclasses.replace(DATA, longest_query=20)
    work = sizer(data).workload(load_intervention("zero_shot", "paper", batch_tokens=16), "predict", "d")
    _check(work, MemoryEstimate(LM, buffers=10880), 2560 * 140 + 160 * 60)
    work = sizer(data).workload(load_intervention("zero_shot", "paper", batch_tokens=100), "predict", "d")
    assert work.memory(False) == MemoryEstimate(LM, buffers=100 * 352)


def test_zero_shot_scoring_on_gpu_counts_the_dense_mask() -> None:
    """GPU: 32768 nodes a forward in dense rows of 384, a [nodes, 384] float32 mask."""
    work = sizer(gpu=True).workload(load_intervention("zero_shot", "paper"), "predict", "d")
    _check(work, MemoryEstimate(LM, buffers=32768 * 384 * 4 + 32768 * 352), 2560 * 140 + 160 * 60)


def test_quantized_scoring_counts_one_dequantized_weight() -> None:
    """4-bit: the largest linear weight (8 x 16) dequantized to the compute dtype, 128 * 4 bytes."""
    precision = Precision("float32", "4bit")
    weights = int(2 * 640 * NF4_BITS / 8 + (1480 - 1280) * 4)
    work = sizer(precision=precision).workload(load_intervention("zero_shot", "paper"), "predict", "d")
    _check(work, MemoryEstimate(weights, buffers=2048 * 352 + 128 * 4), 2560 * 140 + 160 * 60)


def test_few_shot_scoring_adds_its_demonstrations_to_every_query() -> None:
    """4 shots of a prompt, a response and a separator: 4 * (20 + 5 + 1) = 104 tokens more per
    query; with batch_tokens 100 the longest query (60 + 104) goes alone."""
    method = load_intervention("few_shot", "paper", batch_tokens=100)
    work = sizer().workload(method, "predict", "d")
    _check(work, MemoryEstimate(LM, buffers=164 * 352), 2560 * 4 * (35 + 104) + 160 * 60)
    two = sizer().workload(load_intervention("few_shot", "paper", num_shots=2), "predict", "d")
    _check(two, MemoryEstimate(LM, buffers=2048 * 352), 2560 * 4 * (35 + 52) + 160 * 60)


# -- hidden-state extraction (representation methods) -------------------------------------------

def test_extraction_of_the_test_split_on_cpu() -> None:
    """mms predicting: 4 texts of 35 tokens + BOS = 144 nodes (under the 2048 budget, above the
    longest query + BOS, 61); all 3 hidden states (embeddings + 2 layers) of every node kept."""
    work = sizer().workload(load_intervention("mms", "paper"), "predict", "d")
    _check(work, MemoryEstimate(LM, activations=3 * 144 * 8 * 4, buffers=144 * 352), 2560 * 144)


def test_extraction_of_the_train_split_and_without_extracting() -> None:
    """Fitting reads the 10 train texts: 360 nodes. An extraction an earlier job did costs no
    time again, but its memory still counts."""
    method = load_intervention("mms", "paper")
    _check(sizer().workload(method, "fit", "d"), MemoryEstimate(LM, activations=3 * 360 * 32, buffers=360 * 352),
           2560 * 360)
    _check(sizer().workload(method, "fit", "d", extract=False),
           MemoryEstimate(LM, activations=3 * 360 * 32, buffers=360 * 352), 0.0)


def test_extraction_batches_are_bounded_by_the_budget_and_the_longest_query() -> None:
    many = dataclasses.replace(DATA, train=100)  # 3600 nodes: one budget of 2048 at a time
    _check(sizer(many).workload(load_intervention("mms", "paper"), "fit", "d"),
           MemoryEstimate(LM, activations=3 * 2048 * 32, buffers=2048 * 352), 2560 * 3600)
    one = dataclasses.replace(DATA, test=1)  # 36 nodes, but the longest query + BOS is 61
    _check(sizer(one).workload(load_intervention("mms", "paper"), "predict", "d"),
           MemoryEstimate(LM, activations=3 * 61 * 32, buffers=61 * 352), 2560 * 36)


def test_extraction_on_gpu_counts_a_dense_mask_of_at_least_a_row() -> None:
    method = load_intervention("mms", "paper")
    many = dataclasses.replace(DATA, train=100)  # 3600 nodes: under the GPU budget of 32768
    _check(sizer(many, gpu=True).workload(method, "fit", "d"),
           MemoryEstimate(LM, activations=3 * 3600 * 32, buffers=3600 * 352 + 3600 * 384 * 4), 2560 * 3600)
    _check(sizer(gpu=True).workload(method, "predict", "d"),
           MemoryEstimate(LM, activations=3 * 144 * 32, buffers=144 * 352 + 144 * 384 * 4), 2560 * 144)
    long = dataclasses.replace(DATA, longest_query=499, test=1)  # a 500-token row is wider than 384
    _check(sizer(long, gpu=True).workload(method, "predict", "d"),
           MemoryEstimate(LM, activations=3 * 500 * 32, buffers=500 * 352 + 500 * 500 * 4), 2560 * 36)


def test_two_template_extraction_peaks_at_the_longer_and_times_both() -> None:
    """ccs reads every text twice: Yes adds 65/4 + 1 = 17.25 tokens a response, No 17. Yes:
    ceil(4 * (35 + 51.75 + 1)) = 351 nodes, No: 4 * (35 + 51 + 1) = 348; the peak is Yes's."""
    work = sizer().workload(load_intervention("ccs", "paper"), "predict", "d")
    _check(work, MemoryEstimate(LM, activations=3 * 351 * 32, buffers=351 * 352), 2560 * (351 + 348))
    one = dataclasses.replace(DATA, test=1)  # one text: the longest query + 52 + BOS = 113 nodes (Yes); time for 87.75 + 87 tokens
    _check(sizer(one).workload(load_intervention("ccs", "paper"), "predict", "d"),
           MemoryEstimate(LM, activations=3 * 113 * 32, buffers=113 * 352), 2560 * (87.75 + 87))
    quantized = sizer(precision=Precision("float32", "8bit")).workload(load_intervention("ccs", "paper"), "predict", "d")
    assert quantized.memory(False).buffers == 351 * 352 + 128 * 4


# -- reward models -------------------------------------------------------------------------------

def test_reward_model_parts_per_method() -> None:
    """(weights, trained parameters, optimizer bytes, layers with gradients), in bfloat16 so
    that full fine-tuning's float32 copy (4 bytes a parameter) differs from the adapters' base."""
    bf16 = sizer(precision=Precision("bfloat16"))
    # LoRA r 2 on q_proj and v_proj (8 -> 8 each): 2 * (8 + 8) * 2 modules = 64 a layer, + the score head's 8
    assert bf16.reward_model(load_intervention("lora", "paper", r=2)) == (2 * 1408, 136, 136 * 16, 2)
    assert bf16.reward_model(load_intervention("lora", "paper", r=2, last_layers=1)) == (2 * 1408, 72, 72 * 16, 1)
    assert bf16.reward_model(load_intervention("lora", "paper", r=2, last_layers=5)) == (2 * 1408, 136, 136 * 16, 2)
    # o_proj and down_proj: 2 * (8 + 8) + 2 * (16 + 8) = 80 a layer
    assert bf16.reward_model(load_intervention("lora", "paper", r=2, target_modules=["o_proj", "down_proj"])) == (
        2 * 1408, 168, 168 * 16, 2)
    assert bf16.reward_model(load_intervention("prompt_tuning", "paper", num_virtual_tokens=3)) == (
        2 * 1408, 3 * 8 + 8, 32 * 16, 2)
    assert bf16.reward_model(load_intervention("full_fine_tune", "paper")) == (4 * 1408, 1408, 1408 * 12, 2)
    # a reward model of another kind trains its score head only (the fallback for methods to come)
    assert bf16.reward_model(HeadOnly()) == (2 * 1408, 8, 8 * 16, 2)
    qlora = sizer(precision=Precision("bfloat16", "4bit")).reward_model(load_intervention("lora", "paper", r=2))
    assert qlora[0] == int(2 * 640 * NF4_BITS / 8 + (1408 - 1280) * 4)  # QLoRA: the rest in float32


@dataclass
class HeadOnly(PeftRewardModel):
    name = "head_only"


def _lora(**overrides: object) -> Intervention:
    settings = {"r": 2, "dropout": 0.1, "batch_size": 4, "steps": 3, "eval_batch_size": 6, **overrides}
    return load_intervention("lora", "paper", **settings)


def test_lora_training() -> None:
    """4 pairs of 30 tokens share one line, padded to 4 * 30 = 120 (above the longest row, 40).
    Saved per token and layer: 448 + 2 modules * (8 + 40) = 544; checkpointed: 32 a layer plus
    one layer's 544 recomputed. Buffers: the backward working set and a 120 x 120 mask.
    FLOPs: 3 steps of 4 pairs of 30 tokens, 2 forwards' worth each (3 with checkpointing)."""
    work = sizer().workload(_lora(), "fit", "d")
    weights, optimizer, buffers = LM + RM, 136 * 16, 120 * 224 + 120 * 120 * 4
    assert work.trains and work.note == ""
    assert work.memory(False) == MemoryEstimate(weights, activations=120 * 2 * 544, optimizer=optimizer,
                                                buffers=buffers)
    assert work.memory(True) == MemoryEstimate(weights, activations=120 * (2 * 32 + 544), optimizer=optimizer,
                                               buffers=buffers)
    assert (work.flops(False), work.flops(True)) == (2560 * 360 * 2, 2560 * 360 * 3)


def test_lora_on_a_quantized_base_saves_float32_activations() -> None:
    """QLoRA casts the embeddings to float32 and bitsandbytes' layers return their input's
    dtype, so a 4-bit base computing in bf16 saves what a float32 model saves (544 bytes a token
    and layer), not bf16's 312: counting bf16 put a 7B QLoRA step at 13.5 GiB where an H100
    measured 23.8. The mask stays in the compute dtype (2 bytes)."""
    def memory(precision: Precision) -> MemoryEstimate:
        return sizer(gpu=True, precision=precision).workload(_lora(), "fit", "d").memory(False)

    nf4 = memory(Precision("bfloat16", "4bit"))
    assert memory(Precision("bfloat16")).activations == 120 * 2 * 312
    assert nf4.activations == memory(Precision("float32")).activations == 120 * 2 * 544
    assert nf4.buffers == 120 * 224 + 120 * 120 * 2 + SHAPE.largest_linear * 2


def test_lora_training_without_dropout_saves_no_dropped_inputs() -> None:
    work = sizer().workload(_lora(dropout=0.0), "fit", "d")
    assert work.memory(False).activations == 120 * 2 * (448 + 2 * 8)


def test_lora_on_the_last_layer_caches_the_frozen_layers_outputs() -> None:
    """last_layers 1: one layer trains; the frozen one runs once per training row (10 rows of
    30 tokens) and its outputs are kept: 10 * 30 * 8 * 4 = 9600 bytes."""
    work = sizer().workload(_lora(last_layers=1), "fit", "d")
    assert work.memory(False) == MemoryEstimate(LM + RM, activations=120 * 544, optimizer=72 * 16,
                                                buffers=120 * 224 + 120 * 120 * 4 + 9600)
    assert work.memory(True).activations == 120 * (32 + 544)
    assert work.flops(False) == 1280 * 360 * 2 + 1280 * 300
    assert work.flops(True) == 1280 * 360 * 3 + 1280 * 300


def test_lora_frozen_outputs_above_the_cache_limit_are_recomputed(monkeypatch: pytest.MonkeyPatch) -> None:
    import genies.interventions._reward_packing as packing

    monkeypatch.setattr(packing, "CACHE_LIMIT_BYTES", 9600)  # exactly the outputs' size: still cached
    assert sizer().workload(_lora(last_layers=1), "fit", "d").memory(False).buffers == 120 * 224 + 57600 + 9600
    monkeypatch.setattr(packing, "CACHE_LIMIT_BYTES", 9599)
    work = sizer().workload(_lora(last_layers=1), "fit", "d")
    assert work.memory(False).buffers == 120 * 224 + 57600
    assert work.flops(False) == 1280 * 360 * 2 + 1280 * 360  # the frozen layer at every step


def test_lora_training_under_a_length_cap_and_micro_batches() -> None:
    """max_length 12: a training row is at most 2 * 12 = 24 tokens (4 rows: one line of 96)."""
    capped = sizer().workload(_lora(max_length=12), "fit", "d")
    assert capped.memory(False).activations == 96 * 2 * 544
    assert capped.memory(False).buffers == 96 * 224 + 96 * 96 * 4
    assert capped.flops(False) == 2560 * (3 * 4 * 24) * 2
    loose = sizer().workload(_lora(max_length=100), "fit", "d")  # a cap above every row changes nothing
    assert loose.memory(False) == sizer().workload(_lora(), "fit", "d").memory(False)
    alone = sizer().workload(_lora(max_length=12, micro_batch_size=1), "fit", "d")  # the longest row: 24, not 40
    assert alone.memory(False).activations == 24 * 2 * 544
    micro = sizer().workload(_lora(micro_batch_size=2), "fit", "d")  # 2 pairs a forward: 60 wide
    assert micro.memory(False).activations == 60 * 2 * 544 and micro.memory(False).buffers == 60 * 224 + 60 * 60 * 4
    assert micro.flops(False) == 2560 * 360 * 2  # the same step: 4 pairs


def test_prompt_tuning_training_pads_two_sequences_a_pair() -> None:
    """Unpacked: 8 sequences of the longest row (40) + 10 virtual tokens = 50 wide, 400 tokens."""
    work = sizer().workload(load_intervention("prompt_tuning", "paper", batch_size=4, steps=3), "fit", "d")
    assert work.memory(False) == MemoryEstimate(LM + RM, activations=400 * 2 * 448, optimizer=88 * 16,
                                                buffers=400 * 224 + 8 * 50 * 50 * 4)
    assert work.flops(False) == 2560 * 360 * 2
    capped = sizer().workload(load_intervention("prompt_tuning", "paper", batch_size=4, max_length=30), "fit", "d")
    assert capped.memory(False).buffers == 320 * 224 + 8 * 40 * 40 * 4  # each sequence at most 30 + 10


def test_full_fine_tuning_training() -> None:
    """Every weight trains: 96 bytes more saved per token and layer, 12 optimizer bytes per
    parameter, 3 forwards' worth per step (4 with checkpointing)."""
    method = load_intervention("full_fine_tune", "paper", batch_size=4, steps=3)
    work = sizer().workload(method, "fit", "d")
    assert work.memory(False) == MemoryEstimate(LM + 4 * 1408, activations=120 * 2 * 544, optimizer=1408 * 12,
                                                buffers=120 * 224 + 120 * 120 * 4)
    assert (work.flops(False), work.flops(True)) == (2560 * 360 * 3, 2560 * 360 * 4)
    assert work.note == ""
    quantized = sizer(precision=Precision("float32", "4bit")).workload(method, "fit", "d")
    assert quantized.note == "full fine-tuning cannot train quantized weights"
    assert sizer(precision=Precision("float32", "8bit")).workload(method, "fit", "d").note == quantized.note
    assert sizer(precision=Precision("float32", "4bit")).workload(_lora(), "fit", "d").note == ""


def test_quantized_training_counts_one_dequantized_weight() -> None:
    work = sizer(precision=Precision("float32", "4bit")).workload(_lora(), "fit", "d")
    assert work.memory(False).buffers == 120 * 224 + 120 * 120 * 4 + 128 * 4


def test_lora_scoring() -> None:
    """6 sequences a forward are 2 queries of 3 responses; two 35-token queries share a line of
    70 (above the longest query, 60). The float32 adapters and head (136 * 4) are put back."""
    work = sizer().workload(_lora(), "predict", "d")
    _check(work, MemoryEstimate(LM + RM + 136 * 4, buffers=70 * 352 + 70 * 32 + 70 * 70 * 4), 2560 * 140)


def test_reward_scoring_pads_to_the_longest_query_under_its_cap() -> None:
    """eval_batch_size 3: one query a line, padded to the longest (60); with max_length 10 each
    response keeps at most 10 tokens: the longest query is then 3 * 10 = 30, below the mean 35."""
    _check(sizer().workload(_lora(eval_batch_size=3), "predict", "d"),
           MemoryEstimate(LM + RM + 136 * 4, buffers=60 * 352 + 60 * 32 + 60 * 60 * 4), 2560 * 140)
    _check(sizer().workload(_lora(eval_batch_size=3, max_length=10), "predict", "d"),
           MemoryEstimate(LM + RM + 136 * 4, buffers=35 * 352 + 35 * 32 + 35 * 35 * 4), 2560 * 140)
    _check(sizer().workload(_lora(eval_batch_size=3, max_length=15), "predict", "d"),  # 45 tokens at most
           MemoryEstimate(LM + RM + 136 * 4, buffers=45 * 352 + 45 * 32 + 45 * 45 * 4), 2560 * 140)
    two = dataclasses.replace(DATA, responses=2, longest_query=30)  # 2 queries of 30 tokens a forward of 4
    _check(sizer(two).workload(_lora(eval_batch_size=4), "predict", "d"),
           MemoryEstimate(LM + RM + 136 * 4, buffers=60 * 352 + 60 * 32 + 60 * 60 * 4), 2560 * 4 * 30)
    quantized = sizer(precision=Precision("float32", "4bit")).workload(_lora(eval_batch_size=3), "predict", "d")
    assert quantized.memory(False).buffers == 60 * 352 + 60 * 32 + 60 * 60 * 4 + 128 * 4


def test_prompt_tuning_scoring_pads_one_sequence_per_response() -> None:
    """6 sequences of the longest query (60) + 10 virtual tokens; FLOPs for 4 * 3 sequences of a
    prompt, a response and the virtual tokens (20 + 5 + 10)."""
    method = load_intervention("prompt_tuning", "paper", eval_batch_size=6)
    _check(sizer().workload(method, "predict", "d"),
           MemoryEstimate(LM + RM + 88 * 4, buffers=420 * 352 + 420 * 32 + 6 * 70 * 70 * 4), 2560 * 12 * 35)
    capped = load_intervention("prompt_tuning", "paper", eval_batch_size=6, max_length=20)
    assert sizer().workload(capped, "predict", "d").memory(False).buffers == (
        180 * 352 + 180 * 32 + 6 * 30 * 30 * 4)


def test_full_fine_tune_scoring_uses_its_float32_copy_as_is() -> None:
    method = load_intervention("full_fine_tune", "paper", eval_batch_size=6)
    _check(sizer().workload(method, "predict", "d"),
           MemoryEstimate(LM + 4 * 1408, buffers=70 * 352 + 70 * 32 + 70 * 70 * 4), 2560 * 140)


# -- which workload a job gets -------------------------------------------------------------------

@dataclass
class Opaque(Intervention):
    """A method whose computation the planner cannot see (as a legacy or external script)."""

    name = "opaque"

    def fit(self, lm, train, ctx):  # pragma: no cover - never run
        raise NotImplementedError

    def scorer(self, lm, fitted, ctx):  # pragma: no cover - never run
        raise NotImplementedError


def test_workload_dispatch_and_the_distribution_it_reads() -> None:
    """Jobs that compute nothing on the model hold only the loaded LM; the others read the
    named distribution's shape (a job without one reads the name "")."""
    asked: list[str] = []
    small = dataclasses.replace(DATA, test=1)

    def data(name: str) -> DataShape:
        asked.append(name)
        return DATA if name == "d" else small

    s = Sizer(SHAPE, Precision("float32"), False, data)
    nothing = MemoryEstimate(LM)
    for name, kind in (("random", "fit"), ("random", "predict"), ("zero_shot", "fit"), ("few_shot", "fit")):
        work = s.workload(load_intervention(name, "paper"), kind, "d")
        assert (work.memory(False), work.memory(True), work.flops(False), work.note) == (nothing, nothing, 0.0, "")
    assert asked == []
    assert s.workload(load_intervention("zero_shot", "paper"), "predict", "d").flops(False) == 2560 * 140 + 160 * 60
    assert s.workload(load_intervention("zero_shot", "paper"), "predict", None).flops(False) == 2560 * 35 + 160 * 15
    assert s.workload(_lora(), "fit", None).memory(False).activations == 120 * 2 * 544
    assert s.workload(_lora(), "predict", None).flops(False) == 2560 * 35
    assert s.workload(load_intervention("mms", "paper"), "predict", None).flops(False) == 2560 * 36
    assert asked == ["d", "", "", "", ""]
    opaque = s.workload(Opaque(), "predict", "d")
    assert opaque.memory(False) == nothing and opaque.flops(False) == 0.0
    assert opaque.note == "opaque: not sized (runs code genies cannot see)"
    assert s.workload(Opaque(), "fit", "d").note == "opaque: not sized (runs code genies cannot see)"
    # a method that trains on nothing (an external judge) has nothing to size in its fit
    assert s.workload(Untrained(), "fit", "d").note == ""
    assert s.workload(Untrained(), "predict", "d").note == "untrained: not sized (runs code genies cannot see)"


@dataclass
class Untrained(Opaque):
    name = "untrained"
    needs_training_data = False
