"""Reward-model scoring benchmark: packed rows sharing each prompt (what `rm:` runs) against one
sequence per response (what reward-bench runs), side by side in one process.

Both paths encode the same inputs (`RewardModel.encode`: the chat template, the cut after the
last non-pad token) and read the same head at the same token, so their rewards agree to float
rounding (`max_abs_diff`). The naive path is the stronger form of it: sequences sorted by length
so its batches carry little padding, batched by the same token budget. Throughput is responses
scored per second, so `speedup_vs_naive` is the ratio of wall-clock times. The fast path is
the one `rm:` picks for the model (`choose_forward`: on CPU one unpadded prefix tree per pass
with segment-wise attention, on a GPU block-masked padded rows). Distributions run one
at a time, the two paths alternating which goes first, so that load from other processes on a
shared machine hits both alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from genies.bench.machine import describe_machine, peak_rss_mib
from genies.data.schema import Example, Query
from genies.interventions._rm_judge import RewardModel, choose_forward, score_queries, token_counts


@dataclass
class JudgeBenchResult:
    model: str
    parameters: int
    distributions: list[str]
    examples: int
    responses: int
    packed_tokens: int  # tokens the fast path computes: each shared prefix once (a tree's nodes, a row's tokens)
    naive_tokens: int  # tokens one sequence per response computes: the prompt again for every response
    packed_seconds: float
    naive_seconds: float
    packed_responses_per_s: float
    naive_responses_per_s: float
    speedup_vs_naive: float
    max_abs_diff: float  # largest |packed - naive| reward over all responses
    forward: str  # the path `rm:` chose for this model ("tree", "packed"; "unpacked": no faster path matched)
    batch_tokens: int
    peak_rss_mib: float
    machine: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_judge_bench(rm: RewardModel, datasets: Sequence[tuple[str, Sequence[Example]]], *, budget: int,
                    on_step: Callable[[str, str], None] | None = None) -> JudgeBenchResult:
    """Time the packed and the naive path on each (name, examples); `on_step(name, path)` reports progress."""
    queries = {name: [Query(ex.prompt, ex.responses) for ex in exs] for name, exs in datasets}
    warm = [q for qs in queries.values() for q in qs][:2]
    fast = choose_forward(rm, budget)  # what rm: runs
    paths = {"packed": fast, "naive": "unpacked"}
    for forward in paths.values():  # warm-up: kernel selection
        score_queries(rm, warm, max_length=None, budget=budget, forward=forward)
    seconds = {"packed": 0.0, "naive": 0.0}
    max_diff = 0.0
    for n, (name, qs) in enumerate(queries.items()):
        rewards = {}
        for path in (("packed", "naive") if n % 2 == 0 else ("naive", "packed")):
            if on_step:
                on_step(name, path)
            start = time.perf_counter()
            rewards[path], _ = score_queries(rm, qs, max_length=None, budget=budget, forward=paths[path])
            seconds[path] += time.perf_counter() - start
        for a, b in zip(rewards["packed"], rewards["naive"], strict=True):
            max_diff = max(max_diff, float(np.abs(a - b).max()))
    per_query = [[rm.encode(q.prompt, r) for r in q.responses] for qs in queries.values() for q in qs]
    packed_tokens, naive_tokens = token_counts(per_query, fast, budget)
    responses = sum(len(seqs) for seqs in per_query)
    return JudgeBenchResult(
        model=rm.name, parameters=sum(p.numel() for p in rm.model.parameters()), distributions=list(queries),
        examples=len(per_query), responses=responses, packed_tokens=packed_tokens, naive_tokens=naive_tokens,
        packed_seconds=seconds["packed"], naive_seconds=seconds["naive"],
        packed_responses_per_s=responses / seconds["packed"], naive_responses_per_s=responses / seconds["naive"],
        speedup_vs_naive=seconds["naive"] / seconds["packed"], max_abs_diff=max_diff, forward=fast,
        batch_tokens=budget, peak_rss_mib=peak_rss_mib(), machine=describe_machine())
