"""Scoring benchmark: the shared-prompt engine against the naive reference, side by side.

Both methods score the same examples in the same process with the same dtype, threads and
batch budget. Throughput is defined identically for both as *scored response tokens per
second* (response tokens + EOS whose log-probability is returned), so `speedup_vs_naive` is
simply the ratio of wall-clock times. The engine is additionally measured against the
machine: its *unique*-token throughput (each prompt token counted once, plus response tokens)
as a fraction of the matmul-bound limit, i.e. matmul FLOP/s / (2 x parameters), where the
matmul FLOP/s is sampled next to each engine run (see `MatmulProbe`).

Distributions are run one at a time, engine and naive alternating which goes first, so that
load from other processes on a shared machine hits both methods alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial

from genies.data.schema import Example
from genies.models.base import LoadedModel
from genies.models.scoring import (count_truncated, resolve_attention, score_examples, score_examples_naive,
                                   tokenize_examples)
from genies.bench.machine import MatmulProbe, describe_machine, peak_rss_mib


@dataclass
class ScoringBenchResult:
    model: str
    parameters: int
    distributions: list[str]
    examples: int
    responses: int
    response_tokens: int  # scored tokens (response + EOS), the same for both methods
    unique_tokens: int  # prompt tokens once + response tokens: what the engine must process
    naive_tokens: int  # prompt repeated per response + response tokens: what naive processes
    engine_seconds: float
    naive_seconds: float
    engine_tokens_per_s: float
    naive_tokens_per_s: float
    speedup_vs_naive: float
    engine_unique_tokens_per_s: float
    matmul_gflops: float
    limit_tokens_per_s: float
    fraction_of_limit: float
    max_abs_diff: float  # engine vs naive, largest per-response difference of summed log-probs
    truncated_examples: int
    batch_tokens: int | None
    attention: str  # the engine's attention path: "tree" or "dense"
    peak_rss_mib: float
    machine: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_scoring_bench(
    lm: LoadedModel,
    datasets: Sequence[tuple[str, Sequence[Example]]],
    *,
    batch_tokens: int | None = None,
    attention: str = "auto",
    on_step: Callable[[str, str], None] | None = None,
) -> ScoringBenchResult:
    """Time engine and naive on each (name, examples) and summarise; `on_step(name, method)` reports progress."""
    probe = MatmulProbe(device=lm.device, dtype=lm.dtype)
    warm = [ex for _, exs in datasets for ex in exs][:2]
    engine = partial(score_examples, attention=attention)
    engine(lm, warm, batch_tokens=batch_tokens)  # warm-up: kernel selection, head and tree-attention checks
    score_examples_naive(lm, warm, batch_tokens=batch_tokens)
    engine_s = naive_s = 0.0
    max_diff = 0.0
    truncated = 0
    for n, (name, examples) in enumerate(datasets):
        timings = {}
        methods = [("engine", engine), ("naive", score_examples_naive)]
        for method, fn in (methods if n % 2 == 0 else methods[::-1]):
            if method == "engine":
                probe.sample()
            if on_step:
                on_step(name, method)
            start = time.perf_counter()
            out = fn(lm, examples, batch_tokens=batch_tokens)
            timings[method] = (time.perf_counter() - start, out)
        engine_s += timings["engine"][0]
        naive_s += timings["naive"][0]
        truncated += count_truncated(timings["engine"][1])
        for a, b in zip(timings["engine"][1], timings["naive"][1], strict=True):
            max_diff = max(max_diff, float(abs(a.sum - b.sum).max()))
    probe.sample()
    flops = probe.flops_per_s

    all_examples = [ex for _, exs in datasets for ex in exs]
    tokenized = tokenize_examples(lm, all_examples)
    response_tokens = sum(len(r) for t in tokenized for r in t.responses)
    unique = sum(len(t.prompt) for t in tokenized) + response_tokens
    naive_tokens = sum(len(t.prompt) * len(t.responses) for t in tokenized) + response_tokens
    params = sum(p.numel() for p in lm.model.parameters())
    limit = flops / (2.0 * params)
    return ScoringBenchResult(
        model=lm.name, parameters=params, distributions=[name for name, _ in datasets],
        examples=len(all_examples), responses=sum(len(t.responses) for t in tokenized),
        response_tokens=response_tokens, unique_tokens=unique, naive_tokens=naive_tokens,
        engine_seconds=engine_s, naive_seconds=naive_s,
        engine_tokens_per_s=response_tokens / engine_s, naive_tokens_per_s=response_tokens / naive_s,
        speedup_vs_naive=naive_s / engine_s, engine_unique_tokens_per_s=unique / engine_s,
        matmul_gflops=flops / 1e9, limit_tokens_per_s=limit, fraction_of_limit=unique / engine_s / limit,
        max_abs_diff=max_diff, truncated_examples=truncated, batch_tokens=batch_tokens,
        attention=resolve_attention(lm, attention), peak_rss_mib=peak_rss_mib(), machine=describe_machine(),
    )
