"""`genies bench rm` and `genies bench train` on a tiny model: the numbers are computed, the fast
paths equal their naive references, the FLOP count follows its formula, and the CLI ends with
the JSON keys of `genies bench scoring`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genies.bench.rm import fast_path_tokens, matmul_parameters, run_rm_bench
from genies.bench.train import _Shape, run_train_bench, training_flops
from genies.cli import _build
from genies.data.schema import Distribution
from genies.interventions.lora import Lora
from genies.interventions.prompt_tuning import PromptTuning

from planted import planted  # tests/planted.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KEYS = ("speedup_vs_naive", "fraction_of_limit", "peak_rss_mib", "max_abs_diff")


def _dists() -> list[tuple[str, Distribution]]:
    return [(name, Distribution.from_examples(name, planted(8, seed=seed), planted(5, seed=seed + 1)))
            for name, seed in (("a", 0), ("b", 2))]


def test_rm_bench_scores_the_fitted_state_both_ways_alike(tiny_llama) -> None:
    method = Lora(r=4, dropout=0.0, batch_size=4, learning_rate=1e-2)
    result = run_rm_bench(tiny_llama, method, _dists(), n=3, train_steps=2)
    assert result.forward == "tree" and result.examples == 6 and result.responses == 12
    assert result.max_abs_diff < 1e-4
    assert result.naive_tokens > result.packed_tokens > 0  # each prompt once
    assert all(getattr(result, k) > 0 for k in KEYS if k != "max_abs_diff")
    assert result.state == "lora trained 2 steps of 4 pairs on the first 8 train prompts of a (seed 0)"


def test_fast_path_tokens_count_each_prefix_once() -> None:
    per_query = [[[1, 2, 3, 9], [1, 2, 4, 9]], [[1, 2, 5]]]
    assert fast_path_tokens(per_query, "unpacked", 100) == 11
    assert fast_path_tokens(per_query, "packed", 100) == 6 + 3  # [1 2 3 9 4 9], [1 2 5]
    assert fast_path_tokens(per_query, "tree", 100) == 7  # 1 2 (3 9) (4 9) 5: one tree
    assert fast_path_tokens(per_query, "tree", 6) == 6 + 3  # two trees


def test_matmul_parameters_are_the_decoder_layers_weight_matrices(tiny_llama) -> None:
    model, _ = Lora(r=4).build(tiny_llama, 0)
    hidden, inter, kv = 32, 64, 16  # tiny llama: 4 heads of 8, 2 key-value heads
    lora = 4 * (hidden + hidden) + 4 * (hidden + kv)  # q_proj and v_proj adapters, r 4
    assert matmul_parameters(model) == [2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter + lora] * 2


def test_training_flops_follow_the_formula() -> None:
    """Hand-counted: layers of 10, 20 and 30 weights, backward down to layer 1, 4 trained."""
    shape = _Shape(layers=[10, 20, 30], first=1, trained=4, virtual=0)
    chosen, rejected = [[1, 2, 3, 4], [5, 6]], [[1, 2, 9], [5, 7, 8]]
    steps = [[0, 1], [0]]
    per_token = 2 * 60 + 2 * 50 + 2 * 4
    pair_tokens = (4 + 3 + 2 + 3) + (4 + 3)
    assert training_flops(shape, "unpacked", chosen, rejected, steps) == (per_token * pair_tokens, pair_tokens)
    # rows [1 2 3 4 9] and [5 6 7 8]: 5 and 4 tokens; step 1 visits both, step 2 the first
    assert training_flops(shape, "packed", chosen, rejected, steps) == (per_token * (5 + 4 + 5), pair_tokens)
    cached = 2 * 10 * (5 + 4) + (2 * 50 + 2 * 50 + 2 * 4) * (5 + 4 + 5)
    assert training_flops(shape, "layer-cache", chosen, rejected, steps) == (cached, pair_tokens)
    virtual = _Shape(layers=[10, 20, 30], first=0, trained=0, virtual=2)  # prompt tuning: 4N per token
    assert training_flops(virtual, "unpacked", chosen, rejected, [[1]]) == (4 * 60 * (2 + 3 + 4), 9)


@pytest.mark.parametrize("method", [Lora(r=4, batch_size=4, last_layers=1), Lora(r=4, batch_size=4),
                                    PromptTuning(batch_size=4)], ids=["layer-cache", "packed", "prompt_tuning"])
def test_train_bench_trains_the_same_tensors_both_ways(tiny_llama, method) -> None:
    dists = [(name, dist.limited(max_train=6)) for name, dist in _dists()]
    result = run_train_bench(tiny_llama, dataclasses.replace(method, steps=2), dists)
    assert result.forward == ("layer-cache" if getattr(method, "last_layers", None) else "packed")
    assert result.pairs == 12 and result.steps == 2
    assert result.max_abs_diff < 1e-5 and result.max_loss_diff < 1e-5
    assert all(getattr(result, k) > 0 for k in KEYS if k != "max_abs_diff")
    assert result.new_tflops <= result.naive_tflops
    assert result.first_trained_layer == (1 if result.forward == "layer-cache" else 0)


def _toy(tmp_path: Path) -> Path:
    folder = tmp_path / "toy"
    folder.mkdir()
    for split, seed in (("train", 1), ("test", 2)):
        (folder / f"{split}.json").write_text(json.dumps([ex.to_record() for ex in planted(6, seed)]))
    return folder


@pytest.mark.parametrize("command", [["rm", "-n", "3", "--train-steps", "1"], ["train", "--pairs", "4", "--steps", "1"]])
def test_cli_json_last_line(tiny_llama, tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(_build(), ["bench", *command, "--model", str(tiny_llama.path), "--dist",
                                           str(_toy(tmp_path)), "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(k in last for k in KEYS)
    assert last["max_abs_diff"] < 1e-4


def test_cli_refuses_a_method_that_is_not_a_reward_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(_build(), ["bench", "train", "--dist", str(tmp_path), "-i", "mms"])
    assert result.exit_code == 2
    assert "--intervention must be one of lora, prompt_tuning, full_fine_tune; got 'mms'" in result.output
