"""Extraction benchmark: hidden states on the engine's machinery against the naive reference.

Both methods extract the same texts (every response of every example through a text template)
in the same process with the same dtype, threads, site, position and batch budget. Throughput
is defined identically for both as *text tokens per second* (every text's own tokens, BOS and
EOS included: what one-sequence-per-text processes), so `speedup_vs_naive` is the ratio of
wall-clock times. The engine is also measured against the machine as `genies bench scoring`
does: its *unique*-token throughput (each prompt's tokens once per prompt, plus each text's own
tokens: the nodes of the prompt's prefix tree) as a fraction of the matmul-bound limit, matmul
FLOP/s / (2 x parameters), the FLOP/s sampled next to each engine run (`MatmulProbe`).

Distributions are run one at a time, engine and naive alternating which goes first, so that
load from other processes on a shared machine hits both methods alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from genies.bench.machine import MatmulProbe, describe_machine, peak_rss_mib
from genies.data.schema import Example
from genies.models.base import LoadedModel, context_length
from genies.models.hidden import (encode_texts, extract_hidden, extract_hidden_naive, group_texts,
                                  resolve_attention)
from genies.models.prefix_tree import TreeRow
from genies.models.templates import get_template


@dataclass
class ExtractionBenchResult:
    model: str
    parameters: int
    distributions: list[str]
    examples: int
    texts: int  # (example, response) texts, each extracted once by both methods
    site: str
    template: str
    position: str
    unique_tokens: int  # prefix-tree nodes per prompt: what the engine must process
    naive_tokens: int  # every text's tokens: what naive processes
    engine_seconds: float
    naive_seconds: float
    engine_tokens_per_s: float  # text tokens (naive_tokens) per second, both methods alike
    naive_tokens_per_s: float
    speedup_vs_naive: float
    engine_unique_tokens_per_s: float
    matmul_gflops: float
    limit_tokens_per_s: float
    fraction_of_limit: float
    max_abs_diff: float  # engine vs naive, largest absolute difference of any extracted value
    max_abs_value: float  # the largest |value| extracted, the scale of max_abs_diff
    truncated_texts: int
    batch_tokens: int | None
    attention: str  # the engine's attention path: "tree" or "dense"
    peak_rss_mib: float
    machine: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Texts:
    prefixes: list[str]
    completions: list[str]
    add_eos: bool


def _texts(examples: Sequence[Example], template: str) -> _Texts:
    fill = get_template(template)
    filled = [fill(ex.prompt, r) for ex in examples for r in ex.responses]
    return _Texts([t.prefix for t in filled], [t.completion for t in filled], fill.add_eos)


def run_extraction_bench(
    lm: LoadedModel,
    datasets: Sequence[tuple[str, Sequence[Example]]],
    *,
    site: str = "heads",
    template: str = "plain",
    position: str = "last",
    batch_tokens: int | None = None,
    attention: str = "auto",
    on_step: Callable[[str, str], None] | None = None,
) -> ExtractionBenchResult:
    """Time engine and naive on each (name, examples) and summarise; `on_step(name, method)` reports progress."""
    probe = MatmulProbe(device=lm.device, dtype=lm.dtype)

    def engine(texts: _Texts) -> dict[str, np.ndarray]:
        return extract_hidden(lm, texts.prefixes, texts.completions, sites=(site,), position=position,
                              add_eos=texts.add_eos, batch_tokens=batch_tokens, attention=attention)

    def naive(texts: _Texts) -> dict[str, np.ndarray]:
        return extract_hidden_naive(lm, texts.prefixes, texts.completions, sites=(site,), position=position,
                                    add_eos=texts.add_eos, batch_tokens=batch_tokens)

    warm = _texts([ex for _, exs in datasets for ex in exs][:2], template)
    engine(warm)  # warm-up: kernel selection and the per-model tree-attention check
    naive(warm)
    engine_s = naive_s = 0.0
    max_diff = max_value = 0.0
    for n, (name, examples) in enumerate(datasets):
        texts = _texts(examples, template)
        timings = {}
        methods = [("engine", engine), ("naive", naive)]
        for method, fn in (methods if n % 2 == 0 else methods[::-1]):
            if method == "engine":
                probe.sample()
            if on_step:
                on_step(name, method)
            start = time.perf_counter()
            out = fn(texts)[site]
            timings[method] = (time.perf_counter() - start, out)
        engine_s += timings["engine"][0]
        naive_s += timings["naive"][0]
        max_diff = max(max_diff, float(np.abs(timings["engine"][1] - timings["naive"][1]).max()))
        max_value = max(max_value, float(np.abs(timings["naive"][1]).max()))
    probe.sample()
    flops = probe.flops_per_s

    all_examples = [ex for _, exs in datasets for ex in exs]
    texts = _texts(all_examples, template)
    max_length = context_length(lm)
    encoded = encode_texts(lm.tokenizer, texts.prefixes, texts.completions, add_eos=texts.add_eos,
                           max_length=max_length)
    groups = group_texts(encoded).examples
    unique = sum(len(TreeRow.build(groups, [g]).tokens) for g in range(len(groups)))
    naive_tokens = sum(len(ids) for ids in encoded.ids)
    params = sum(p.numel() for p in lm.model.parameters())
    limit = flops / (2.0 * params)
    return ExtractionBenchResult(
        model=lm.name, parameters=params, distributions=[name for name, _ in datasets],
        examples=len(all_examples), texts=len(encoded), site=site, template=template, position=position,
        unique_tokens=unique, naive_tokens=naive_tokens, engine_seconds=engine_s, naive_seconds=naive_s,
        engine_tokens_per_s=naive_tokens / engine_s, naive_tokens_per_s=naive_tokens / naive_s,
        speedup_vs_naive=naive_s / engine_s, engine_unique_tokens_per_s=unique / engine_s,
        matmul_gflops=flops / 1e9, limit_tokens_per_s=limit, fraction_of_limit=unique / engine_s / limit,
        max_abs_diff=max_diff, max_abs_value=max_value, truncated_texts=int(encoded.truncated.sum()),
        batch_tokens=batch_tokens, attention=resolve_attention(lm, attention), peak_rss_mib=peak_rss_mib(),
        machine=describe_machine(),
    )
