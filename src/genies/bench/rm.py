"""Reward-model scoring benchmark: a fitted lora reward model scoring with each prompt shared by
its responses (what its scorer runs) against one sequence per response, side by side in one
process.

The state both paths score with is built in the benchmark: a lora reward model trained for a few
steps on the first distribution's train pairs (so the adapters are non-zero, as a fitted state's
are), then put back into a freshly loaded reward model, exactly as a prediction job does. Both
paths encode the same inputs and read the head at the same token, so their rewards agree to float
rounding (`max_abs_diff`). The naive path is `score_responses_unpacked`: one padded sequence per
(prompt, response), sorted by length so its batches carry little padding. Distributions run one at
a time, the two paths alternating which goes first, so load from other processes hits both alike.

`fraction_of_limit` is the fast path's throughput against the machine: tokens it computes (a
prefix tree's nodes, or a packed row's tokens) per second over the matmul-bound limit, matmul
FLOP/s / (2 x N), where N counts the weight matrices of the decoder layers (`matmul_parameters`:
every token goes through each of them once, 2 FLOPs per weight) and leaves out the embedding table
(a lookup) and the one-output head (read at one token per response). The matmul FLOP/s is sampled
next to each timed run (`MatmulProbe`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from genies.bench.machine import MatmulProbe, describe_machine, peak_rss_mib
from genies.data.schema import Distribution, Query
from genies.interventions._external import tree_batches
from genies.interventions._reward_model import (
    RewardModelIntervention,
    encode_query,
    head_name,
    score_responses,
    score_responses_unpacked,
    scoring_forward,
)
from genies.interventions._reward_packing import PackedRow, decoder_of
from genies.interventions.context import FitContext
from genies.models.base import LoadedModel


@dataclass
class RewardModelBenchResult:
    model: str
    method: str  # the reward model's method and the hyperparameters that shape its forward pass
    state: str  # how the scored state was built
    matmul_parameters: int  # N of the limit: the decoder layers' weight matrices
    distributions: list[str]
    examples: int
    responses: int
    forward: str  # the fast path the scorer took: "tree", "packed" ("unpacked": none matched)
    packed_tokens: int  # tokens the fast path computes (tree nodes / packed rows' tokens)
    naive_tokens: int  # tokens one sequence per response computes
    packed_seconds: float
    naive_seconds: float
    packed_responses_per_s: float
    naive_responses_per_s: float
    speedup_vs_naive: float
    packed_tokens_per_s: float
    matmul_gflops: float
    limit_tokens_per_s: float
    fraction_of_limit: float
    max_abs_diff: float  # largest |packed - naive| reward over all responses
    max_length: int | None
    batch_tokens: int
    peak_rss_mib: float
    machine: str

    def to_dict(self) -> dict:
        return asdict(self)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder's module list with one entry per hidden layer (`layers`, GPT-2's `h`, ...)."""
    decoder = decoder_of(model)
    n_layers = int(decoder.config.get_text_config().num_hidden_layers)
    return next(m for m in decoder.modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers)


def matmul_parameters(model: nn.Module) -> list[int]:
    """Weights in matrices of each decoder layer (LoRA's included): what multiplies every token."""
    return [sum(p.numel() for p in layer.parameters() if p.dim() == 2) for layer in decoder_layers(model)]


def fast_path_tokens(per_query: Sequence[Sequence[list[int]]], forward: str, batch_tokens: int) -> int:
    """Tokens the scorer's `forward` path runs through the model for these inputs."""
    if forward == "tree":
        return sum(len(tree.tokens) for _, tree in tree_batches(per_query, batch_tokens))
    if forward == "packed":
        return sum(len(PackedRow.pack(seqs).tokens) for seqs in per_query)
    return sum(len(s) for seqs in per_query for s in seqs)


def run_rm_bench(lm: LoadedModel, method: RewardModelIntervention, datasets: Sequence[tuple[str, Distribution]], *,
                 n: int, train_steps: int = 2, on_step: Callable[[str, str], None] | None = None
                 ) -> RewardModelBenchResult:
    """Fit `method` for `train_steps` steps on the first distribution's first train prompts, then time
    both paths on the first `n` test examples of each; `on_step(name, path)` reports progress."""
    first_name, first = datasets[0]
    pairs = method.batch_size * train_steps  # the first prompts only: a fit builds its cache over all it is given
    fitted = dataclasses.replace(method, steps=train_steps).fit(lm, first.limited(max_train=pairs).train_only(),
                                                                FitContext(seed=0))
    model = method.load(lm, fitted)
    head = head_name(model)
    forward = scoring_forward(model, head, lm)
    queries = {name: [Query(ex.prompt, ex.responses) for ex in dist.test[:n]] for name, dist in datasets}
    ctx = FitContext()
    probe = MatmulProbe(device=lm.device, dtype=lm.dtype)
    paths: dict[str, Callable[[list[Query]], list[np.ndarray]]] = {
        "packed": lambda qs: score_responses(model, lm, qs, method.max_length, method.eval_batch_size, ctx,
                                             batch_tokens=method.batch_tokens, forward=forward, reuse_frozen=False),
        "naive": lambda qs: score_responses_unpacked(model, lm, qs, method.max_length, method.eval_batch_size, ctx),
    }
    warm = [q for qs in queries.values() for q in qs][:2]
    for path in paths.values():  # warm-up: kernel selection
        path(warm)
    seconds = {"packed": 0.0, "naive": 0.0}
    max_diff = 0.0
    for k, (name, qs) in enumerate(queries.items()):
        rewards = {}
        for path in (("packed", "naive") if k % 2 == 0 else ("naive", "packed")):
            if on_step:
                on_step(name, path)
            probe.sample()
            start = time.perf_counter()
            rewards[path] = paths[path](qs)
            seconds[path] += time.perf_counter() - start
        for a, b in zip(rewards["packed"], rewards["naive"], strict=True):
            max_diff = max(max_diff, float(np.abs(a - b).max()))
    probe.sample()
    per_query = [encode_query(lm, q, method.max_length) for qs in queries.values() for q in qs]
    packed_tokens = fast_path_tokens(per_query, forward, method.batch_tokens)
    responses = sum(len(seqs) for seqs in per_query)
    weights = sum(matmul_parameters(model))
    limit = probe.flops_per_s / (2.0 * weights)
    shape = {k: v for k, v in method.key_hparams().items() if k in ("r", "last_layers", "num_virtual_tokens")}
    return RewardModelBenchResult(
        model=lm.name, method=f"{method.name} {shape}", matmul_parameters=weights,
        state=f"{method.name} trained {train_steps} steps of {method.batch_size} pairs on the first {pairs} train "
              f"prompts of {first_name} (seed 0)",
        distributions=list(queries), examples=len(per_query), responses=responses, forward=forward,
        packed_tokens=packed_tokens, naive_tokens=sum(len(s) for seqs in per_query for s in seqs),
        packed_seconds=seconds["packed"], naive_seconds=seconds["naive"],
        packed_responses_per_s=responses / seconds["packed"], naive_responses_per_s=responses / seconds["naive"],
        speedup_vs_naive=seconds["naive"] / seconds["packed"], packed_tokens_per_s=packed_tokens / seconds["packed"],
        matmul_gflops=probe.flops_per_s / 1e9, limit_tokens_per_s=limit,
        fraction_of_limit=packed_tokens / seconds["packed"] / limit, max_abs_diff=max_diff,
        max_length=method.max_length, batch_tokens=method.batch_tokens, peak_rss_mib=peak_rss_mib(),
        machine=describe_machine())
