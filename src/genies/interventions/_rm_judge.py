"""`rm:MODEL`: a trained sequence-classification reward model (TRL, OpenRLHF, ...) used as is.

Input: with the chat template (`template=chat`, the default when the tokenizer has one) the
conversation [user: prompt, assistant: response] as the template writes it, tokenized without
adding special tokens (the template writes them), which is how TRL's RewardTrainer feeds
conversational data; with `template=raw` the text prompt + response tokenized as the tokenizer
does by default (its BOS if it adds one) with EOS appended unless already last. `max_length`
keeps the last N tokens.

The reward is read as the model defines it: transformers' sequence-classification models apply
the score head at every position and keep the rightmost token that is not the config's
`pad_token_id` (the last token when there is none). Each input is cut right after that token
(causal attention: a later token never changes an earlier position's output), so every
computation below reads the head at the input's last token and gives that same number however
it is batched or padded; OpenRLHF's `normalize_reward` (config `mean`, `std`) is applied when
the config asks for it. P(i beats j) = sigmoid(r_i - r_j).

Speed: the prompt is computed once for all of its responses. On CPU the inputs of many prompts
go in one prefix tree per forward pass (`_external.PrefixTree`: every distinct prefix once - the
chat template's header and a preamble shared by prompts too -, segment-wise attention, no
padding); on a GPU all responses of a prompt share one block-masked row (`_reward_packing`),
rows batched by tokens. Once per model the fast path is compared with the one-sequence-per-
response forward pass (`unpacked_rewards`, what reward-bench runs) and used only where they
agree; the scores' `info["forward"]` says which ran ("tree", "packed" or "unpacked").
`genies bench judge` times the fast path against the reference.

Refused in one line, before any weight is read: a causal LM (no score head: use `dpo:` or
`judge:`), a classifier with more than one label, a checkpoint whose head weights are missing
(transformers would silently start a random head), an encoder classifier (packing and
last-token reading assume a decoder, which TRL and OpenRLHF reward models are).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from genies.data.schema import EvalSet, Query
from genies.errors import ConfigError, JobError
from genies.interventions._external import (
    TEMPLATES,
    scatter_per_query,
    ExternalFit,
    ExternalJudge,
    ExternalModel,
    PrefixTree,
    absolute_spec,
    cached_load,
    chat_text,
    template_kind,
    token_batches,
    tree_batches,
    tree_hidden,
)
from genies.interventions._reward_packing import (
    PackedRow,
    autocast,
    base_model,
    can_pack,
    decoder_of,
    input_device,
    packed_rewards,
)
from genies.interventions.base import Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores
from genies.models.placement import Placement
from genies.models.tree_attention import supports_tree_attention

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from genies.models.base import LoadedModel

HEAD_NAMES = ("score", "classifier")


@dataclass
class RewardModel:
    """A loaded reward model and how it reads its inputs (see the module docstring)."""

    name: str
    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    head: str
    template: str  # "chat" or "raw"
    pad_id: int  # what fills padding (never read)
    skip_id: int | None  # the config's pad_token_id: trailing tokens the model's pooling skips
    compute_dtype: torch.dtype
    normalization: tuple[float, float] | None = None  # OpenRLHF's (mean, std)

    @property
    def device(self) -> torch.device:
        return input_device(self.model)

    def encode(self, prompt: str, response: str, max_length: int | None = None) -> list[int]:
        """The token ids the reward is read from: the template's text, the last `max_length`
        tokens, cut after the last token that is not the config's pad token."""
        tok = self.tokenizer
        if self.template == "chat":
            ids = list(tok(chat_text(tok, prompt, response), add_special_tokens=False)["input_ids"])
        else:
            ids = list(tok(prompt + response)["input_ids"])
            if tok.eos_token_id is not None and (not ids or ids[-1] != tok.eos_token_id):
                ids.append(tok.eos_token_id)
        if max_length is not None:
            ids = ids[-max_length:]
        while ids and ids[-1] == self.skip_id:
            ids.pop()
        if not ids:
            raise JobError(f"rm: {self.name}: the input for ({prompt!r:.60}, {response!r:.60}) has no token that is "
                           "not the pad token")
        return ids

    def finish(self, raw: np.ndarray) -> np.ndarray:
        """The raw head output as the model's reward (OpenRLHF's normalisation when configured)."""
        raw = raw.astype(np.float64)
        return raw if self.normalization is None else (raw - self.normalization[0]) / self.normalization[1]


def head_outputs(model: ExternalModel) -> int | None:
    """Outputs of the classification head as saved (rows of its weight in the safetensors
    headers; no weight is read), or None when the files are pickled and cannot be inspected.
    0 when no head weight is saved at all."""
    from safetensors import safe_open

    files = sorted(model.folder.glob("*.safetensors"))
    if not files:
        return None
    for path in files:
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                parts = key.split(".")
                if len(parts) >= 2 and parts[-2] in HEAD_NAMES and parts[-1] == "weight":
                    return int(handle.get_slice(key).get_shape()[0])
    return 0


def check_reward_model(model: ExternalModel, trust_remote_code: bool) -> None:
    """Refuse, in one line each, a checkpoint `rm:` cannot read as a one-output decoder reward model."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    expected = "rm: expects a sequence-classification reward model with one output (num_labels=1)"
    if not model.is_classifier:
        if model.is_causal:
            raise ConfigError(f"rm: {model.spec} is a causal language model ({model.describe()}), not a reward model; "
                              f"{expected}; to judge with a causal LM use dpo:{model.spec} or judge:{model.spec}")
        raise ConfigError(f"rm: {model.spec} ({model.describe()}) is not a sequence-classification model; {expected}")
    custom = "auto_map" in model.config and trust_remote_code
    if model.config.get("model_type") not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not custom:
        raise ConfigError(f"rm: {model.spec} is an encoder classifier ({model.describe()}); rm: scores decoder reward "
                          "models (Llama, Qwen2, Mistral, Gemma, GPT-2 ... as TRL and OpenRLHF train them)")
    outputs = head_outputs(model)
    if outputs is None:  # pickled weights: only the config can say
        labels = model.config.get("id2label") or {}
        outputs = int(model.config.get("num_labels") or len(labels) or 1)
    if outputs == 0:
        raise ConfigError(f"rm: {model.spec} saves no classification head ({' or '.join(HEAD_NAMES)}.weight) in its "
                          f"weights: loading it would start a random head; {expected}")
    if outputs != 1:
        labels = ", ".join(map(str, (model.config.get("id2label") or {}).values()))
        raise ConfigError(f"rm: {model.spec} is a classifier with {outputs} labels{f' ({labels})' if labels else ''}; "
                          f"{expected}")


def head_name(model: nn.Module, spec: str) -> str:
    base = base_model(model)
    for name in HEAD_NAMES:
        if isinstance(getattr(base, name, None), nn.Module):
            return name
    raise ConfigError(f"rm: {spec}: {type(base).__name__} has no classification head named {' or '.join(HEAD_NAMES)}")


def load_reward_model(model: ExternalModel, placement: Placement, *, template: str, trust_remote_code: bool,
                      allow_pickle: bool, random_head: bool = False) -> RewardModel:
    """`model` as a `RewardModel`, loaded once per process at `placement`. `random_head` builds a
    reward model from a causal LM with a fresh head seeded 0 (benchmarks of speed only: its
    rewards mean nothing) instead of refusing it."""
    if not random_head:
        check_reward_model(model, trust_remote_code)

    def build() -> RewardModel:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from genies.models.loading import load_placed

        placement.check()
        if random_head:
            torch.manual_seed(0)
        net = load_placed(AutoModelForSequenceClassification, model.folder, placement, allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(model.folder, trust_remote_code=trust_remote_code)
        text_config = net.config.get_text_config()
        skip_id = text_config.pad_token_id
        fill = skip_id if skip_id is not None else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                                   else tokenizer.eos_token_id)
        if fill is None:
            raise ConfigError(f"rm: {model.spec}: neither the config nor the tokenizer names a pad or EOS token to "
                              "pad batches with")
        normalization = None
        if model.config.get("normalize_reward"):
            normalization = (float(model.config.get("mean", 0.0)), float(model.config.get("std", 1.0)))
        return RewardModel(model.spec, net, tokenizer, head_name(net, model.spec),
                           template_kind(template, tokenizer, "rm", model.spec), int(fill), skip_id,
                           placement.torch_dtype, normalization)

    key = ("reward", model.folder, model.fingerprint, placement, template, trust_remote_code, random_head)
    return cached_load(key, build)


def unpacked_rewards(rm: RewardModel, sequences: Sequence[list[int]], budget: int,
                     padding_side: str = "right") -> torch.Tensor:
    """The reference: each sequence alone in a padded batch through the model's own forward
    pass (what reward-bench runs), the head read at its last token, longest sequences first in
    batches of about `budget` padded tokens. `padding_side` left or right gives the same
    rewards: the position ids follow each sequence's own tokens."""
    out = torch.empty(len(sequences), dtype=torch.float32)
    lengths = [len(s) for s in sequences]
    order = sorted(range(len(sequences)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        width = lengths[order[start]]
        chunk = order[start: start + max(1, budget // width)]
        out[chunk] = _padded_forward(rm, [sequences[i] for i in chunk], padding_side).cpu()
        start += len(chunk)
    return out


def _padded_forward(rm: RewardModel, sequences: Sequence[list[int]], padding_side: str) -> torch.Tensor:
    device = rm.device
    lengths = torch.tensor([len(s) for s in sequences], device=device)
    width = int(lengths.max())
    ids = torch.full((len(sequences), width), rm.pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sequences), width), dtype=torch.long, device=device)
    for row, seq in enumerate(sequences):
        at = width - len(seq) if padding_side == "left" else 0
        ids[row, at: at + len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
        mask[row, at: at + len(seq)] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    ends = torch.full_like(lengths, width - 1) if padding_side == "left" else lengths - 1
    captured: list[torch.Tensor] = []
    handle = getattr(base_model(rm.model), rm.head).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.inference_mode(), autocast(device, rm.compute_dtype), _pad_defined(rm):
            rm.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
    finally:
        handle.remove()
    per_position = captured[-1][..., 0]
    rows = torch.arange(len(sequences), device=per_position.device)
    return per_position[rows, ends.to(per_position.device)].float()


@contextlib.contextmanager
def _pad_defined(rm: RewardModel) -> Iterator[None]:
    """The model's own pooling (unused: the head is read at each sequence's end) refuses a batch
    when the config has no pad token; lend it the fill id for the call."""
    config = rm.model.config.get_text_config()
    lend = config.pad_token_id is None
    if lend:
        config.pad_token_id = rm.pad_id
    try:
        yield
    finally:
        if lend:
            config.pad_token_id = None


def tree_rewards(rm: RewardModel, tree: PrefixTree) -> torch.Tensor:
    """The reward of every sequence of `tree` (in the order they were added) from one forward
    pass with segment-wise attention: nothing masked is computed, nothing is padded."""
    with autocast(rm.device, rm.compute_dtype):
        hidden = tree_hidden(rm.model, decoder_of(rm.model), tree, rm.device, rm.compute_dtype)
        return getattr(base_model(rm.model), rm.head)(hidden)[..., 0].float()


def _tree(sequences: Sequence[list[int]]) -> PrefixTree:
    tree = PrefixTree()
    for seq in sequences:
        tree.add(seq)
    return tree


# model -> whether tree attention gives the unpacked rewards; weak keys so models can be freed
_TREE_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tree_matches(rm: RewardModel, budget: int) -> bool:
    if rm.model not in _TREE_OK:
        ok = False
        if supports_tree_attention(rm.model):
            vocab = decoder_of(rm.model).get_input_embeddings().num_embeddings
            probes = [[int(t) % vocab for t in ids] for ids in ([3, 4, 5, 6, 7, 8], [3, 4, 5, 9, 10], [11, 12])]
            reference = unpacked_rewards(rm, probes, budget).to(rm.device)
            try:
                got = tree_rewards(rm, _tree(probes)).to(rm.device)
                tol = (1e-4 if rm.compute_dtype == torch.float32 else 2e-2) * max(1.0, reference.abs().max().item())
                ok = bool(torch.allclose(got, reference, rtol=0, atol=tol))
            except (TypeError, ValueError, RuntimeError):  # a decoder that does not pass the plan on
                ok = False
        _TREE_OK[rm.model] = ok
    return _TREE_OK[rm.model]


def choose_forward(rm: RewardModel, budget: int) -> str:
    """The fastest forward pass that reproduces `unpacked_rewards` on this model, checked once per
    model: "tree" on CPU (one unpadded prefix tree per pass), "packed" (block-masked padded rows,
    the GPU's choice: a dense masked kernel is cheap there and many small per-chain calls are
    not), else "unpacked"."""
    with torch.inference_mode():
        if torch.device(rm.device).type == "cpu" and _tree_matches(rm, budget):
            return "tree"
        packs = can_pack(rm.model, rm.head, rm.pad_id, rm.device, rm.compute_dtype,
                         lambda seqs: unpacked_rewards(rm, seqs, budget).to(rm.device))
    return "packed" if packs else "unpacked"


def packed_query_rewards(rm: RewardModel, per_query: Sequence[Sequence[list[int]]], budget: int, forward: str,
                         advance: Callable[[int], None] = lambda n: None) -> list[np.ndarray]:
    """Raw rewards of every query's sequences: prefix trees of about `budget` nodes ("tree"), or
    one block-masked row per query, rows batched by tokens ("packed")."""
    out: list[np.ndarray] = [np.zeros(0)] * len(per_query)

    def keep(batch: Sequence[int], values: torch.Tensor) -> None:
        scatter_per_query(out, batch, values, per_query)
        advance(len(batch))

    with torch.inference_mode():
        if forward == "tree":
            for batch, tree in tree_batches(per_query, budget):
                keep(batch, tree_rewards(rm, tree))
        else:
            rows = [PackedRow.pack(seqs) for seqs in per_query]
            for batch in token_batches([len(r.tokens) for r in rows], budget):
                keep(batch, packed_rewards(rm.model, rm.head, [rows[i] for i in batch], rm.pad_id, rm.device,
                                           rm.compute_dtype))
    return out


def score_queries(rm: RewardModel, queries: Sequence[Query], *, max_length: int | None, budget: int,
                  forward: str = "auto", advance: Callable[[int], None] = lambda n: None
                  ) -> tuple[list[np.ndarray], str]:
    """Every response's reward, and the forward pass that computed them ("tree", "packed" or
    "unpacked"; `forward="auto"` takes `choose_forward`'s)."""
    per_query = [[rm.encode(q.prompt, r, max_length) for r in q.responses] for q in queries]
    if forward == "auto":
        forward = choose_forward(rm, budget)
    if forward == "unpacked":
        flat = unpacked_rewards(rm, [s for seqs in per_query for s in seqs], budget).numpy()
        raw = np.split(flat, np.cumsum([len(seqs) for seqs in per_query])[:-1]) if per_query else []
        advance(len(queries))
    else:
        raw = packed_query_rewards(rm, per_query, budget, forward, advance)
    return [rm.finish(r) for r in raw], forward


@register("rm", family="external", description="A trained sequence-classification reward model used as is: rm:MODEL.")
@dataclass
class RewardModelJudge(ExternalJudge):
    model: str = hparam("", "the reward model: a local folder or a Hugging Face id in the local cache",
                        execution=True)
    template: str = hparam("auto", "auto = the chat template when the tokenizer has one, else raw; chat = "
                                   "[user: prompt, assistant: response] through the chat template; raw = prompt + "
                                   "response (+ EOS) as plain text", choices=TEMPLATES)
    max_length: int | None = hparam(None, "keep the last N tokens of each input (None = all)")

    usage = "rm:MODEL"

    @classmethod
    def spec_overrides(cls, argument: str) -> dict[str, Any]:
        return {"model": absolute_spec(argument)}

    def model_specs(self) -> tuple[str, ...]:
        return (self.model,)

    def check_model(self, model: ExternalModel) -> None:
        check_reward_model(model, self.trust_remote_code)

    def scorer(self, lm: LoadedModel | None, fitted: ExternalFit, ctx: FitContext) -> Scorer:
        (model,) = self.resolved()
        rm = load_reward_model(model, self.placement(), template=self.template,
                               trust_remote_code=self.trust_remote_code, allow_pickle=self.allow_pickle)

        def score(data: EvalSet) -> Scores:
            with ctx.progress_bar(f"rm: scoring {data.distribution}/{data.split}", len(data.queries)) as advance:
                rewards, forward = score_queries(rm, data.queries, max_length=self.max_length, budget=self.budget(),
                                                 advance=advance)
            return Scores.bradley_terry(rewards, {"forward": forward, "template": rm.template})
        return score


def token_counts(per_query: Sequence[Sequence[list[int]]], forward: str, budget: int) -> tuple[int, int]:
    """(tokens the `forward` path computes: prefix-tree nodes, or packed rows' tokens; tokens one
    sequence per response computes): what the benchmark reports beside its timings."""
    if forward == "tree":
        fast = sum(len(tree.tokens) for _, tree in tree_batches(per_query, budget))
    elif forward == "packed":
        fast = sum(len(PackedRow.pack(seqs).tokens) for seqs in per_query if seqs)
    else:
        fast = sum(len(s) for seqs in per_query for s in seqs)
    return fast, sum(len(s) for seqs in per_query for s in seqs)
