"""Shared machinery of the reward-model methods (lora, prompt_tuning, full_fine_tune).

A Bradley-Terry reward model (docs/methods.md#reward-models): the base model reloaded from
`lm.path` as a sequence-classification model with one output, input = prompt + response + EOS
without BOS, trained with loss = -log sigmoid(r_chosen - r_rejected) on one seeded pair per
source prompt. P(preferred beats dispreferred) = sigmoid(r_pref - r_disp).

Why the pooling is done here and not by the head: transformers' sequence-classification models
pool at the rightmost token that is not `pad_token_id`, which lands on the wrong token when the
pad token equals EOS (the EOS we append would count as padding) and, with prompt tuning, PEFT
feeds `inputs_embeds` so no pad can be detected at all. We right-pad, hook the score head to get
its per-position output and read it at the last real token (virtual prompt tokens are prepended,
so the offset is the difference in length). Right padding keeps the position ids of real tokens
the same whatever the batch, so scores do not depend on batch size or padding.

Speed: scoring computes each prompt once for all of its responses: on CPU the inputs of many
prompts form one prefix tree per forward pass of up to `batch_tokens` nodes (the scoring
engine's segment-wise tree attention: nothing masked is computed, nothing padded), on a GPU (and
where tree attention does not apply) a prompt's responses share one block-masked row; batches
are halved on out-of-memory (`batching.run_with_backoff`). A training pair is one row `[prompt,
chosen + EOS, rejected + EOS]`, so the prompt's forward and backward pass are shared by both
responses; with only the top layers trainable their input is computed once per pair
(`_reward_packing.LayerCache`). Each shortcut is checked against the unpacked `rewards` on the
model itself and skipped where it does not match. Prompt tuning's virtual tokens, which PEFT
prepends inside its forward, are written out as the shared prefix of every row and tree
(`_reward_packing.with_virtual`), so they too are computed once. `genies bench rm` and `genies bench train` time them
against the unpacked passes (docs/PERFORMANCE.md).

Precision and placement: the reward model is reloaded as the base model was loaded (its
`Placement`: dtype, 8-bit or 4-bit quantization, one device or sharded over GPUs). On a quantized
base the PEFT methods are QLoRA: `prepare_model_for_kbit_training` freezes the quantized weights and
keeps the rest in float32, then the adapters and the score head train in float32 on top;
full_fine_tune cannot train quantized weights and refuses. `gradient_checkpointing` trades compute
for activation memory and changes no number. Inputs go to the device of the reward model's input
embeddings and rewards are read on the device the head's output lands on, so a model sharded over
GPUs takes the same code paths.

Subclasses say how to wrap the model (`wrap`), which tensors form the state (`trainable_state`)
and how to put them back (`restore`); training, the fitted state (`RewardModelFit`) and scoring
are shared. `PeftRewardModel` supplies the last two for the PEFT methods (lora, prompt_tuning).
A scorer loads the reward model once and scores every `EvalSet` it is handed with it: loading
is the slow part (the base model read from disk), scoring a split is not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from genies.data.schema import Distribution, EvalSet, Example, Query
from genies.interventions import _soft_loss as S
from genies.interventions._external import scatter_per_query, tree_batches
from genies.interventions._frozen_tree import FrozenTreeScorer
from genies.interventions._reward_packing import (
    LayerCache,
    PackedRow,
    autocast,
    base_model,
    can_pack,
    can_tree,
    input_device,
    packed_rewards,
    prefix_tree,
    tree_rewards,
    with_virtual,
)
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.scores import Scores
from genies.models.base import LoadedModel, pad_token_id
from genies.models.batching import run_with_backoff
from genies.models.placement import Placement
from genies.models.scoring import encode_examples

HEAD_NAMES = ("score", "classifier")
CPU_BATCH_TOKENS = 2048  # prefix-tree nodes per scoring pass on CPU, as the scoring engine's


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading a causal-LM checkpoint into a classification model reports the fresh `score`
    head and the unused `lm_head` as a table; that is expected here, so keep it off the log."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def placement_of(lm: LoadedModel) -> Placement:
    """How to reload `lm`: the placement it was loaded with, at the dtype its weights have (a
    `LoadedModel` can be handed another model, e.g. a bf16 copy, and keep its old placement); for
    a model built without one, its device and dtype. A quantized placement is kept as it is: its
    dtype is the compute dtype, not one a weight would show."""
    dtype = str(lm.dtype).removeprefix("torch.")
    if lm.placement is None:
        return Placement(device=str(lm.device), dtype=dtype)
    return lm.placement if lm.placement.quantized else dataclasses.replace(lm.placement, dtype=dtype)


def load_reward_model(lm: LoadedModel) -> nn.Module:
    """`AutoModelForSequenceClassification(num_labels=1)` from the base model's safetensors folder,
    loaded as the base model was (`placement_of`: dtype, quantization, device or GPUs), with the
    pad token set in its config. Seed torch first: the score head is freshly initialised."""
    from transformers import AutoModelForSequenceClassification

    from genies.models.loading import load_placed

    with _quiet_transformers():
        model = load_placed(AutoModelForSequenceClassification, lm.path, placement_of(lm), num_labels=1,
                            trust_remote_code=lm.trust_remote_code)
    model.config.pad_token_id = pad_token_id(lm)
    model.config.use_cache = False
    return model


def checkpoint_activations(model: nn.Module) -> None:
    """Turn on gradient (activation) checkpointing of the decoder layers, non-reentrant: that
    variant needs no input that requires grad, so frozen embeddings and cached frozen-layer
    states work as they are. transformers 5 renamed the switch; both spellings are accepted."""
    base = base_model(model)
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def head_name(model: nn.Module) -> str:
    base = base_model(model)
    for name in HEAD_NAMES:
        if isinstance(getattr(base, name, None), nn.Module):
            return name
    raise ValueError(f"{type(base).__name__} has no classification head named {' or '.join(HEAD_NAMES)}")


def encode(lm: LoadedModel, prompt: str, response: str, max_length: int | None) -> list[int]:
    """Token ids of prompt + response + EOS without BOS, tokenized as the scoring engine does
    (`scoring.encode_examples`: prompt and response apart, so no token spans the seam); when
    too long, the start is cut so the response and its EOS (where the reward is read) survive."""
    (tokens,) = encode_examples(lm, [Example(prompt, (response,), 0)],
                                lambda _: f"reward-model input ({prompt!r:.60}, {response!r:.60})")
    ids = tokens.prompt + tokens.responses[0]
    return ids[-max_length:] if max_length is not None else ids


def encode_query(lm: LoadedModel, query: Query, max_length: int | None) -> list[list[int]]:
    """`encode` of each of the query's responses, the prompt tokenized once."""
    (tokens,) = encode_examples(lm, [Example(query.prompt, query.responses, 0)],
                                lambda _: f"reward-model input ({query.prompt!r:.60}, ...)")
    seqs = [tokens.prompt + response for response in tokens.responses]
    return [ids[-max_length:] for ids in seqs] if max_length is not None else seqs


def rewards(model: nn.Module, sequences: Sequence[list[int]], pad_id: int, device: torch.device,
            compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reward of each token sequence: the score head's output at its last real token.

    With a half-precision base model the trained tensors are kept in float32 (see
    `RewardModelIntervention.build`) and the forward pass runs under autocast in `compute_dtype`."""
    lengths = torch.tensor([len(s) for s in sequences], device=device)
    width = int(lengths.max())
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
    attention_mask = (torch.arange(width, device=device)[None, :] < lengths[:, None]).long()

    captured: list[torch.Tensor] = []
    head = getattr(base_model(model), head_name(model))
    handle = head.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with _quiet_transformers(), autocast(device, compute_dtype):
            # _quiet: the head's own pooling (unused here) warns about inputs_embeds
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        handle.remove()
    per_position = captured[-1][..., 0]  # [batch, virtual tokens + width], on the head's device
    offset = per_position.shape[1] - width
    rows = torch.arange(len(sequences), device=per_position.device)
    return per_position[rows, (offset + lengths - 1).to(per_position.device)].float()


@dataclass(frozen=True)
class RewardModelFit:
    """What a reward-model fit learned: the trained tensors (PEFT's state dict for lora and
    prompt tuning, every parameter for full_fine_tune), the name of the score head they include,
    the seed the model was built with (the head's random initialisation, which `restore` must
    find replaced), and how training went: pairs, loss per step, and the forward pass used
    ("layer-cache", "packed" or "unpacked", see `pair_scorer`)."""

    tensors: dict[str, torch.Tensor]
    head: str
    seed: int
    train_pairs: int
    train_loss: tuple[float, ...]
    forward: str


@dataclass
class RewardModelIntervention(Intervention[RewardModelFit]):
    """Hyperparameters and the fit/score loop shared by every reward-model method.

    How many pairs it trains on is the run's choice: one seeded pair per source prompt, and the
    run's `--max-train` caps the prompts. `micro_batch_size`, `eval_batch_size` and `batch_tokens` only split the
    same computation into smaller forward passes (tests/test_lora.py checks training and scores
    against it), so they are execution settings. One exception: with lora `dropout` > 0 the
    dropout masks are drawn per forward pass, so another micro batch size draws other masks -
    another sample of the same training noise, as another seed would."""

    learning_rate: float = hparam(2e-4, "AdamW learning rate (constant schedule)")
    steps: int = hparam(150, "optimizer steps")
    batch_size: int = hparam(16, "pairs per optimizer step")
    micro_batch_size: int | None = hparam(None, "pairs per forward pass (gradient accumulation; None = batch_size)",
                                          execution=True)
    max_grad_norm: float = hparam(0.3, "gradient clipping norm (0 = off)")
    weight_decay: float = hparam(0.0, "AdamW weight decay")
    max_length: int | None = hparam(None, "keep the last N tokens of prompt+response+EOS (None = all)")
    eval_batch_size: int = hparam(16, "sequences per forward pass when scoring on packed rows (GPU) or one "
                                      "sequence per response", execution=True)
    batch_tokens: int = hparam(CPU_BATCH_TOKENS, "prefix-tree nodes per forward pass when scoring on CPU",
                               execution=True)
    gradient_checkpointing: bool = hparam(False, "recompute each layer's activations in the backward pass instead "
                                                 "of keeping them: less memory, slower steps, same numbers",
                                          execution=True)
    loss: str = hparam("xent", "xent: Bradley-Terry cross-entropy against each pair's label (soft when it carries a "
                               "confidence) | aux_conf: with the auxiliary confidence loss (docs/w2s.md)",
                       choices=S.LOSSES)
    aux_max: float = hparam(0.75, "largest weight of the auxiliary confidence loss (loss=aux_conf)")

    def key_hparams(self) -> dict[str, Any]:
        """With `xent`, the loss every fit had before it was a choice, `loss` and `aux_max` stay out
        of the key, so those fits keep their keys."""
        values = super().key_hparams()
        if self.loss == "xent":
            del values["loss"], values["aux_max"]
        return values

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("steps", "batch_size", "eval_batch_size", "batch_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{self.name}: {name} must be >= 1, got {getattr(self, name)}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise ValueError(f"{self.name}: micro_batch_size must be >= 1 or None, got {self.micro_batch_size}")
        if self.learning_rate <= 0:
            raise ValueError(f"{self.name}: learning_rate must be > 0, got {self.learning_rate}")

    # -- what differs between methods -------------------------------------------------------
    def wrap(self, model: nn.Module, head: str) -> nn.Module:
        """Make the right parameters trainable (and add adapters). Default: all of them."""
        return model

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The trained parameters, on the CPU (where `save_fitted` writes them from): cloning on
        the device would hold a second full copy of the model in GPU memory. On a CPU model the
        tensors share the parameters' storage, which is safe: `fit` calls this last and then
        drops the model."""
        return {k: p.detach().cpu() for k, p in model.named_parameters() if p.requires_grad}

    def restore(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        missing = set(tensors) - {k for k, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"{self.name}: state tensors not in the model: {sorted(missing)[:5]}")
        model.load_state_dict(tensors, strict=False)

    def check_model(self, lm: LoadedModel) -> None:
        """Refuse a model the method cannot train as loaded (full_fine_tune on CPU or quantized)."""

    # -- shared ------------------------------------------------------------------------------
    def build(self, lm: LoadedModel, seed: int) -> tuple[nn.Module, str]:
        torch.manual_seed(seed)
        model = load_reward_model(lm)
        head = head_name(model)
        with warnings.catch_warnings():  # PEFT calls a transformers API deprecated for v6
            warnings.simplefilter("ignore", FutureWarning)
            if lm.quantize != "none":
                from peft import prepare_model_for_kbit_training

                # QLoRA: freeze the quantized weights, keep norms and embeddings in float32;
                # checkpointing is this class's own switch, so not turned on here.
                model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            model = self.wrap(model, head)
        # Optimizer updates of bf16/fp16 weights round away; train float32 copies under autocast.
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
        return model, head

    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> RewardModelFit:
        return self.train(lm, train, ctx)

    def train(self, lm: LoadedModel, train: Distribution, ctx: FitContext, forward: str = "auto") -> RewardModelFit:
        """`fit`, with the training pass chosen (`pair_scorer`): "auto" (the fastest that matches
        the unpacked pass on this model), "packed" (no frozen-layer cache) or "unpacked" (two
        sequences per pair: the reference `genies bench train` times the fast pass against)."""
        self.check_model(lm)
        pairs = train.train_pairs(ctx.seed)
        if not pairs:
            raise ValueError(f"{self.name}: source {train.id!r} has no training pairs")
        chosen = [encode(lm, p.prompt, p.preferred, self.max_length) for p in pairs]
        rejected = [encode(lm, p.prompt, p.dispreferred, self.max_length) for p in pairs]

        model, head = self.build(lm, ctx.seed)
        if self.gradient_checkpointing:
            checkpoint_activations(model)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, betas=(0.9, 0.999),
                                      weight_decay=self.weight_decay)
        micro = self.micro_batch_size or self.batch_size
        forward, pair_rewards = pair_scorer(model, head, lm, chosen, rejected, micro, ctx, f"{self.name}: {train.id}",
                                            forward)
        targets = torch.tensor([p.confidence for p in pairs], dtype=torch.float64)  # P(chosen preferred)
        flips = torch.arange(len(pairs)) % 2 == 1  # aux_conf's class balance needs pairs in both orders

        def margins(chunk: list[int]) -> torch.Tensor:
            r = pair_rewards(chunk)
            return r[:, 0] - r[:, 1]
        losses = []
        with ctx.progress_bar(f"{self.name}: training on {train.id}", self.steps) as advance:
            for step, batch in enumerate(step_batches(len(pairs), self.batch_size, self.steps, ctx.seed)):
                optimizer.zero_grad(set_to_none=True)
                total = 0.0
                target, flip = targets[batch], flips[batch]
                hard = None
                if self.loss == "aux_conf":  # hardened over the whole batch, whatever the micro batches
                    with torch.no_grad():
                        m = torch.cat([margins(batch[s: s + micro]) for s in range(0, len(batch), micro)])
                    hard = S.hardened(*S.oriented(m.float().cpu(), target, flip))
                alpha = S.aux_weight(step, self.steps, self.aux_max)
                for start in range(0, len(batch), micro):
                    part = slice(start, start + micro)
                    r = pair_rewards(batch[part])
                    m, t = S.oriented(r[:, 0] - r[:, 1], target[part].to(r.device, r.dtype),
                                      flip[part].to(r.device))
                    h = None if hard is None else hard[part].to(r.device, r.dtype)
                    loss = S.step_loss(self.loss, m, t, h, alpha).sum() / len(batch)
                    loss.backward()
                    total += float(loss.detach())
                if self.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                optimizer.step()
                losses.append(total)
                advance(1)
        return RewardModelFit(self.trainable_state(model), head, ctx.seed, len(pairs), tuple(losses), forward)

    def load(self, lm: LoadedModel, fitted: RewardModelFit) -> nn.Module:
        """The reward model as `fit` left it, in eval mode: rebuilt with the fit's seed and the
        trained tensors put back (`restore` checks they took)."""
        model, _ = self.build(lm, fitted.seed)
        self.restore(model, {k: v.to(lm.device) for k, v in fitted.tensors.items()})
        return model.eval()

    def scorer(self, lm: LoadedModel, fitted: RewardModelFit, ctx: FitContext) -> Scorer:
        model = self.load(lm, fitted)

        def score(data: EvalSet) -> Scores:
            return Scores.bradley_terry(score_responses(model, lm, data.queries, self.max_length,
                                                        self.eval_batch_size, ctx, batch_tokens=self.batch_tokens))
        return score


@dataclass
class PeftRewardModel(RewardModelIntervention):
    """A reward model whose trained tensors are a PEFT module's (lora's adapters, prompt
    tuning's virtual tokens) plus the score head: the state is PEFT's state dict, and a reload
    is checked. Subclasses say only how to wrap the model."""

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}

    def restore(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        """Load adapter + head tensors, then read them back and compare: a head or prompt left at
        its random initialisation would still give numbers, just meaningless ones."""
        from peft import get_peft_model_state_dict, set_peft_model_state_dict

        expected = set(get_peft_model_state_dict(model))
        if expected != set(tensors):
            raise ValueError(f"{self.name}: state tensors {sorted(expected ^ set(tensors))[:5]} do not match the model")
        set_peft_model_state_dict(model, tensors)
        loaded = get_peft_model_state_dict(model)
        wrong = [k for k, v in tensors.items() if not torch.equal(loaded[k].to(v.device, v.dtype), v)]
        if wrong:
            raise ValueError(f"{self.name}: tensors {wrong[:5]} did not load into the model")


def step_batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """`steps` batches of pair indices: seeded shuffles, one epoch after another, so every pair
    is seen before any repeats (a batch may straddle two epochs)."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order.extend(int(i) for i in rng.permutation(n))
        yield order[:batch_size]
        order = order[batch_size:]


PairRewards = Callable[[list[int]], torch.Tensor]  # pair indices -> [pairs, 2] (chosen, rejected) rewards


TRAINING_FORWARDS = ("auto", "packed", "unpacked")


def pair_scorer(model: nn.Module, head: str, lm: LoadedModel, chosen: Sequence[list[int]],
                rejected: Sequence[list[int]], rows_per_pass: int, ctx: FitContext, label: str,
                forward: str = "auto") -> tuple[str, PairRewards]:
    """The fastest training forward pass this model allows (at most `forward`, one of
    TRAINING_FORWARDS), and its name for the state info: "layer-cache" (frozen lower layers
    computed once, then packed rows through the top layers), "packed" (one row per pair: the
    prompt's forward and backward shared by both responses) or "unpacked" (two sequences per
    pair, the reference)."""
    if forward not in TRAINING_FORWARDS:
        raise ValueError(f"training forward must be one of {', '.join(TRAINING_FORWARDS)}; got {forward!r}")
    pad_id, device, dtype = pad_token_id(lm), input_device(model), lm.dtype

    def unpacked(seqs: list[list[int]]) -> torch.Tensor:
        return rewards(model, seqs, pad_id, device, dtype)

    if forward == "unpacked" or not can_pack(model, head, pad_id, device, dtype, unpacked):
        return "unpacked", lambda idx: unpacked([chosen[i] for i in idx] + [rejected[i] for i in idx]).view(2, -1).T
    rows = [PackedRow.pack(with_virtual(model, [c, r])) for c, r in zip(chosen, rejected)]
    first = LayerCache.first_trainable_layer(model)
    if forward == "auto" and first is not None and LayerCache.fits(rows, model, dtype):
        cache = LayerCache(model, head, first, pad_id, device, dtype)
        if cache.matches_plain():
            with ctx.progress_bar(f"{label}: frozen layers", len(rows)) as advance:
                cache.build(rows, rows_per_pass, advance)
            return "layer-cache", lambda idx: cache.rewards(idx).view(-1, 2)
    return "packed", lambda idx: packed_rewards(model, head, [rows[i] for i in idx], pad_id, device, dtype).view(-1, 2)


SCORING_FORWARDS = ("auto", "tree", "packed", "unpacked")


def scoring_forward(model: nn.Module, head: str, lm: LoadedModel) -> str:
    """The fastest scoring pass that reproduces the unpacked rewards on this model, checked once
    per model: "tree" on CPU (prefix trees of many prompts, segment-wise attention, no padding),
    "packed" (one block-masked row per prompt: the GPU's choice, and the fallback where tree
    attention does not apply) or "unpacked" (one sequence per response, the reference)."""
    pad_id, device = pad_token_id(lm), input_device(model)

    def unpacked(seqs: list[list[int]]) -> torch.Tensor:
        return rewards(model, seqs, pad_id, device, lm.dtype)

    with torch.inference_mode():
        if torch.device(device).type == "cpu" and can_tree(model, head, device, lm.dtype, unpacked):
            return "tree"
        return "packed" if can_pack(model, head, pad_id, device, lm.dtype, unpacked) else "unpacked"


def score_responses(model: nn.Module, lm: LoadedModel, queries: Sequence[Query], max_length: int | None,
                    batch_size: int, ctx: FitContext, *, batch_tokens: int = CPU_BATCH_TOKENS,
                    forward: str = "auto", reuse_frozen: bool = True) -> list[np.ndarray]:
    """The reward of every response of every query, each prompt computed once for all of its
    responses: prefix trees of up to `batch_tokens` nodes ("tree"), or one packed row per query
    with about `batch_size` responses per batch ("packed"); `forward="auto"` takes
    `scoring_forward`'s choice, "unpacked" is `score_responses_unpacked`. Queries are sorted so
    batches carry little padding (trees: so shared preambles meet); on out-of-memory a batch is
    halved. Scores depend neither on the order, the batch sizes nor the tokenizer's padding side.
    On trees, a model whose lower layers are frozen (lora's `last_layers`) computes them once per
    process for every scorer of the same base model (`_frozen_tree`, the same rewards);
    `reuse_frozen=False` runs every layer (what `genies bench rm` times)."""
    head = head_name(model)
    if forward == "auto":
        forward = scoring_forward(model, head, lm)
    if forward == "unpacked":
        return score_responses_unpacked(model, lm, queries, max_length, batch_size, ctx)
    pad_id, device = pad_token_id(lm), input_device(model)
    per_query = [encode_query(lm, q, max_length) for q in queries]
    scores: list[np.ndarray] = [np.zeros(0)] * len(queries)
    inputs = [with_virtual(model, seqs) for seqs in per_query]
    if forward == "tree":
        batches = [members for members, _ in tree_batches(inputs, batch_tokens)]
        split = FrozenTreeScorer.of(model, head, lm.fingerprint, device, lm.dtype) if reuse_frozen else None

        def values(batch: list[int]) -> torch.Tensor:
            tree = prefix_tree([s for i in batch for s in inputs[i]])
            return split.rewards(tree) if split is not None else tree_rewards(model, head, tree, device, lm.dtype)
    else:
        rows = [PackedRow.pack(seqs) for seqs in inputs]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].tokens))
        batches = _query_batches(order, [len(q.responses) for q in queries], batch_size)

        def values(batch: list[int]) -> torch.Tensor:
            return packed_rewards(model, head, [rows[i] for i in batch], pad_id, device, lm.dtype)

    with torch.inference_mode(), ctx.progress_bar("scoring responses", len(queries)) as advance:
        def run(batch: list[int]) -> None:
            scatter_per_query(scores, batch, values(batch), per_query)
            advance(len(batch))

        run_with_backoff(lm, batches, run)
    return scores


def _query_batches(order: Sequence[int], n_responses: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive queries of `order` grouped so a batch holds at most `batch_size` responses
    (a query with more responses than that goes alone)."""
    batches: list[list[int]] = []
    count = 0
    for i in order:
        if not batches or count + n_responses[i] > batch_size:
            batches.append([])
            count = 0
        batches[-1].append(i)
        count += n_responses[i]
    return batches


def score_responses_unpacked(model: nn.Module, lm: LoadedModel, queries: Sequence[Query],
                             max_length: int | None, batch_size: int, ctx: FitContext) -> list[np.ndarray]:
    """The reference: every (prompt, response) as its own sequence through the model's own
    forward pass, `batch_size` sequences at a time, sorted by length so batches carry little padding."""
    items = [(i, j, ids) for i, q in enumerate(queries) for j, ids in enumerate(encode_query(lm, q, max_length))]
    order = sorted(range(len(items)), key=lambda k: -len(items[k][2]))
    scores = [np.zeros(len(q.responses)) for q in queries]
    pad_id, device = pad_token_id(lm), input_device(model)
    with torch.inference_mode(), ctx.progress_bar("scoring responses", len(items)) as advance:
        def run(chunk: list[int]) -> None:
            values = rewards(model, [items[k][2] for k in chunk], pad_id, device, lm.dtype).cpu().numpy()
            for k, v in zip(chunk, values):
                scores[items[k][0]][items[k][1]] = float(v)
            advance(len(chunk))

        run_with_backoff(lm, [order[start: start + batch_size] for start in range(0, len(order), batch_size)], run)
    return scores
