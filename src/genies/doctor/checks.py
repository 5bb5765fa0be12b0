"""The measurements both doctors make on a loaded model, each one check: scoring against the naive
reference, tree against dense attention, hidden states against a plain forward pass, LoRA
reward-model training steps; plus the examples and the lora method they use and 4-bit
quantization of a model built in memory.

Every check compares a fast path with a reference computed another way on the same inputs, so it
passes only when the installation computes the same numbers the tests check, whatever the
weights: a random-weights model is as good a witness as a trained one.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genies.data.schema import Example
from genies.doctor.report import CheckFailed, CheckSkipped, Outcome
from genies.models.base import LoadedModel, context_length
from genies.models.scoring import ResponseScores, score_examples, score_examples_naive, tokenize_examples

if TYPE_CHECKING:
    from genies.interventions.lora import Lora

# Largest accepted difference between two paths. fp32 paths differ only in summation order: the
# tests see under 1e-5 nats per scored token. Half-precision rounding grows with the scale of the
# logits, which trained weights have far more of than random ones, so there the bound is a
# fraction of the spread (standard deviation) of the reference's per-token scores: bf16 against
# fp32 differed by 4 % of it on random weights in the embedded shape and by 9 % on the embedded
# model itself, while scoring without most of the prompt moved scores by 290 % of it.
FP32_SCORE_TOLERANCE = 1e-4  # nats per scored token
HALF_SCORE_TOLERANCE = 0.25  # of the spread of the reference's per-token scores
# Hidden states, relative to the largest value: fp32 as above; bf16 differed by 5 % of it between
# tree and dense attention on the embedded model, a wrong mask moves states by their own size.
HIDDEN_TOLERANCE = {torch.float32: 1e-4}
HALF_HIDDEN_TOLERANCE = 0.15

_WORDS = ("the river runs past an old mill where children play in summer and their parents watch from a "
          "bridge of grey stone while birds sing over fields of wheat barley and green grass under a wide "
          "blue sky until evening brings cold wind rain and the long quiet night").split()
PREAMBLE = ("Below is an instruction that describes a task. Write a response that appropriately completes "
            "the request.\n\n### Instruction:\n")


def score_tolerance(dtype: torch.dtype, reference: Sequence[ResponseScores]) -> float:
    """The largest accepted per-token difference from `reference` for scores computed in `dtype`."""
    if dtype == torch.float32:
        return FP32_SCORE_TOLERANCE
    return HALF_SCORE_TOLERANCE * float(np.std(np.concatenate([s.mean for s in reference])))


def sample_examples(n: int, seed: int = 0, prompt_words: tuple[int, int] = (8, 24),
                    response_words: tuple[int, int] = (1, 8)) -> list[Example]:
    """`n` seeded examples shaped like GENIES data: a shared Alpaca-style preamble, an instruction,
    2-4 responses of which some share an opening, so every kind of prefix sharing the engine
    exploits (shared preamble, one prompt for many responses, common response openings) occurs."""
    rng = random.Random(seed)

    def words(lo: int, hi: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))

    out = []
    for _ in range(n):
        prompt = f"{PREAMBLE}{words(*prompt_words).capitalize()}.\n\n### Response:\n"
        opening = words(1, 3).capitalize()
        responses = tuple(f"{opening} {words(*response_words)}." if k % 2 else f"{words(*response_words)}."
                          for k in range(rng.randint(2, 4)))
        out.append(Example(prompt, responses, 0))
    return out


def max_diff_per_token(a: Sequence[ResponseScores], b: Sequence[ResponseScores]) -> float:
    """Largest |difference of summed log-probs| / scored tokens over all responses; a NaN score
    gives NaN, which fails every `diff <= tolerance` test."""
    return float(np.concatenate([np.abs(x.sum - y.sum) / x.n_tokens for x, y in zip(a, b, strict=True)]).max())


def processed_tokens(lm: LoadedModel, examples: Sequence[Example]) -> int:
    """Prompt tokens once plus every response's tokens: what the engine must compute."""
    return sum(len(t.prompt) + sum(len(r) for r in t.responses) for t in tokenize_examples(lm, examples))


def check_engine_vs_naive(lm: LoadedModel, examples: Sequence[Example]) -> Outcome:
    """The scoring engine (its default attention path) against the naive reference."""
    from genies.models.scoring import resolve_attention

    engine = score_examples(lm, examples)
    naive = score_examples_naive(lm, examples)
    diff, tol = max_diff_per_token(engine, naive), score_tolerance(lm.dtype, naive)
    responses = sum(len(ex.responses) for ex in examples)
    attention = resolve_attention(lm)
    metrics = {"examples": len(examples), "responses": responses, "max_diff_per_token": diff, "tolerance": tol,
               "attention": attention}
    if not diff <= tol:
        raise CheckFailed(f"engine and naive reference differ by {diff:.1e} nats/token (tolerance {tol:.1e}) "
                          f"on {len(examples)} examples", metrics)
    return Outcome(f"engine = naive reference on {len(examples)} examples, {responses} responses "
                   f"(max |diff| {diff:.1e} nats/token, {attention} attention)", metrics)


def tree_refusal(lm: LoadedModel) -> str | None:
    """Why the scoring engine would not use tree attention for `lm`, or None when it would."""
    from genies.models.scoring import resolve_attention
    from genies.models.tree_attention import supports_tree_attention

    if not supports_tree_attention(lm.model):
        return (f"tree attention does not apply to {type(lm.model).__name__} "
                f"({lm.model.config._attn_implementation} attention)")
    try:
        resolve_attention(lm, "tree")
    except ValueError:
        return (f"the engine turns tree attention down for this model in {str(lm.dtype).removeprefix('torch.')}: "
                "its own comparison with the dense path on a probe tree disagrees")
    return None


def check_tree_vs_dense(lm: LoadedModel, examples: Sequence[Example], batch_tokens: int | None = None) -> Outcome:
    """Tree attention against the dense 4-D mask: the same scores, and how fast each path is.
    Where the engine does not use tree attention the check is skipped, with the dense speed."""
    refused = tree_refusal(lm)
    seconds, scores = {}, {}
    for path in ("dense",) if refused else ("tree", "dense"):
        score_examples(lm, examples[:2], attention=path, batch_tokens=batch_tokens)  # warm-up
        start = time.perf_counter()
        scores[path] = score_examples(lm, examples, attention=path, batch_tokens=batch_tokens)
        seconds[path] = time.perf_counter() - start
    tokens = processed_tokens(lm, examples)
    metrics: dict = {"examples": len(examples), "tokens": tokens, "batch_tokens": batch_tokens}
    for path, s in seconds.items():
        metrics.update({f"{path}_seconds": s, f"{path}_tokens_per_s": tokens / s})
    if refused:
        raise CheckSkipped(f"{refused}; dense alone: {tokens / seconds['dense']:,.0f} tokens/s", metrics)
    diff, tol = max_diff_per_token(scores["tree"], scores["dense"]), score_tolerance(lm.dtype, scores["dense"])
    metrics.update(max_diff_per_token=diff, tolerance=tol, tree_speedup=seconds["dense"] / seconds["tree"])
    if not diff <= tol:
        raise CheckFailed(f"tree and dense attention differ by {diff:.1e} nats/token (tolerance {tol:.1e})", metrics)
    return Outcome(f"tree = dense on {len(examples)} examples (max |diff| {diff:.1e} nats/token); "
                   f"{tokens / seconds['tree']:,.0f} vs {tokens / seconds['dense']:,.0f} tokens/s "
                   f"(tree {seconds['dense'] / seconds['tree']:.2f}x dense)", metrics)


def check_hidden_states(lm: LoadedModel, examples: Sequence[Example], reference_texts: int = 4) -> Outcome:
    """Packed hidden-state extraction (both sites) against plain one-text forward passes."""
    from genies.models.hidden import encode_texts, extract_hidden

    prefixes = [ex.prompt for ex in examples for _ in ex.responses]
    completions = [r for ex in examples for r in ex.responses]
    got = extract_hidden(lm, prefixes, completions, position="last", add_eos=True)
    config = lm.model.config
    layers, heads = lm.num_layers, config.num_attention_heads
    want = {"residual": (len(prefixes), layers + 1, config.hidden_size), "heads": (len(prefixes), layers, heads)}
    shapes = {site: tuple(got[site].shape) for site in want}
    metrics: dict = {"texts": len(prefixes), **{f"{site}_shape": list(shape) for site, shape in shapes.items()}}
    wrong = [site for site, shape in want.items() if shapes[site][: len(shape)] != shape]
    if wrong:
        raise CheckFailed(f"hidden states have shape {shapes} where {want} was expected", metrics)
    if not all(np.isfinite(v).all() for v in got.values()):
        raise CheckFailed("hidden states hold NaN or inf", metrics)
    encoded = encode_texts(lm.tokenizer, prefixes[:reference_texts], completions[:reference_texts], add_eos=True,
                           max_length=context_length(lm))
    diffs = []
    with torch.inference_mode():
        for i, ids in enumerate(encoded.ids):
            states = lm.model(input_ids=torch.tensor([ids], device=lm.device), output_hidden_states=True,
                              use_cache=False).hidden_states
            ref = torch.stack([h[0, -1] for h in states]).float().cpu().numpy()
            diffs.append(np.abs(got["residual"][i] - ref).max() / max(1e-12, np.abs(ref).max()))
    worst = float(np.max(diffs))  # NaN-propagating, like the score comparisons
    tol = HIDDEN_TOLERANCE.get(lm.dtype, HALF_HIDDEN_TOLERANCE)
    metrics.update(max_relative_diff=worst, tolerance=tol, reference_texts=len(encoded.ids))
    if not worst <= tol:
        raise CheckFailed(f"packed residual stream differs from a plain forward pass by {worst:.1e} of its "
                          f"largest value (tolerance {tol:.1e})", metrics)
    return Outcome(f"residual {list(shapes['residual'])} and heads {list(shapes['heads'])} for {len(prefixes)} texts; "
                   f"= plain forward (max relative |diff| {worst:.1e})", metrics)


def lora_method(pairs: int) -> Lora:
    """The lora method the doctors train: rank 8 on PEFT's default modules, no dropout (so a step
    is deterministic and a step that changes nothing shows), one batch of all `pairs`."""
    from genies.interventions.lora import Lora

    return Lora(r=8, alpha=16, dropout=0.0, batch_size=pairs)


def training_pairs(lm: LoadedModel, examples: Sequence[Example]) -> list[tuple[list[int], list[int]]]:
    """(chosen, rejected) token ids of each example's first two responses, as the reward-model
    methods encode them."""
    from genies.interventions._reward_model import encode

    return [(encode(lm, ex.prompt, ex.responses[0], None), encode(lm, ex.prompt, ex.responses[1], None))
            for ex in examples]


def lora_step(model: nn.Module, lm: LoadedModel, pairs: Sequence[tuple[list[int], list[int]]],
              learning_rate: float = 1e-3, max_steps: int = 5) -> Outcome:
    """Bradley-Terry training steps of a LoRA-wrapped reward model of `lm`, through the forward
    pass the reward-model methods train with (`pair_scorer`: packed pairs where the model allows),
    and proof that it trains.

    Passes when the loss and every trainable gradient are finite, the gradient is not all zero,
    the base weight under the first adapter neither receives a gradient nor moves, and the
    loss on the same pairs falls below where it started within `max_steps` AdamW steps. One
    step is enough in fp32 (the embedded model: 0.70 -> 0.60); in bf16 a small random model's
    rewards move by less than their rounding in one step, so a few more are allowed. A step
    that updates nothing leaves the loss exactly where it was and fails."""
    from genies.interventions._reward_model import head_name, pair_scorer
    from genies.interventions.context import FitContext

    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen_name, frozen = next((n, p) for n, p in model.named_parameters() if ".base_layer." in n)
    frozen_before = frozen.detach().clone()
    chosen, rejected = [c for c, _ in pairs], [r for _, r in pairs]
    model.train()
    forward, pair_rewards = pair_scorer(model, head_name(model), lm, chosen, rejected, len(pairs), FitContext(),
                                        "doctor")
    everything = list(range(len(pairs)))

    def loss() -> torch.Tensor:
        r = pair_rewards(everything)
        return -F.logsigmoid(r[:, 0] - r[:, 1]).mean()

    current = loss()
    current.backward()
    losses = [current.item()]
    grads = [p.grad for p in trainable]
    missing = sum(g is None for g in grads)
    grad_norm = math.sqrt(sum(float(g.float().pow(2).sum()) for g in grads if g is not None))
    metrics: dict = {"pairs": len(pairs), "tokens": sum(map(len, chosen + rejected)), "forward": forward,
                     "learning_rate": learning_rate, "trainable_parameters": sum(p.numel() for p in trainable),
                     "loss_before": losses[0], "grad_norm": grad_norm}
    if not math.isfinite(losses[0]):
        raise CheckFailed(f"training loss is {losses[0]}", metrics)
    if missing or not math.isfinite(grad_norm):
        raise CheckFailed(f"{missing} of {len(grads)} trainable tensors got no gradient; gradient norm {grad_norm}",
                          metrics)
    if grad_norm == 0:
        raise CheckFailed("every gradient is zero: the step cannot train anything", metrics)
    optimizer = torch.optim.AdamW(trainable, lr=learning_rate)
    while True:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        current = loss()
        losses.append(current.item())
        if losses[-1] < losses[0] or len(losses) > max_steps:
            break
        current.backward()
    metrics.update(loss_after=losses[-1], steps=len(losses) - 1)
    if frozen.grad is not None or not torch.equal(frozen.detach(), frozen_before):
        raise CheckFailed(f"the frozen base weight {frozen_name} changed or received a gradient", metrics)
    steps = f"{len(losses) - 1} step{'s' if len(losses) > 2 else ''}"
    if not losses[-1] < losses[0]:
        raise CheckFailed(f"loss did not decrease in {steps} ({losses[0]:.4f} -> {losses[-1]:.4f})", metrics)
    return Outcome(f"{len(pairs)} pairs ({forward} forward), {metrics['trainable_parameters']:,} trainable "
                   f"parameters: loss {losses[0]:.4f} -> {losses[-1]:.4f} after {steps}, base weights frozen", metrics)


def quantizable_linears(model: nn.Module) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) of every `nn.Linear` but the output heads: what QLoRA quantizes."""
    from genies.interventions._reward_model import HEAD_NAMES

    keep = {*HEAD_NAMES, "lm_head"}
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if type(child) is nn.Linear and name not in keep]


def quantize_4bit(model: nn.Module, compute_dtype: torch.dtype) -> int:
    """Replace every `quantizable_linears` layer by bitsandbytes' NF4 `Linear4bit`, quantized
    where its weight already lies, and return how many were replaced.

    This is what loading with `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")`
    does to a checkpoint, applied to a model that was built in memory and has no checkpoint."""
    import bitsandbytes as bnb

    targets = quantizable_linears(model)
    for parent, name, linear in targets:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                  compute_dtype=compute_dtype, quant_type="nf4", device="meta")
        layer.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4",
                                         module=layer).to(linear.weight.device)
        if linear.bias is not None:
            layer.bias = linear.bias
        setattr(parent, name, layer)
    return len(targets)
