"""Packed reward-model forward passes: all sequences that share a prompt go in one row.

Why: a prompt with four responses scored one sequence at a time runs the prompt through the
model four times, and a training pair runs it twice, forward and backward. A packed row is
`[shared prefix, rest of sequence 1, rest of sequence 2, ...]` with a block attention mask
(every token sees the shared prefix and the earlier tokens of its own sequence) and position ids
that continue from the prefix in every sequence, so each sequence is computed exactly as if it
were alone. Short rows share a line of the batch (block-diagonal mask) instead of being padded
to the longest. The shared prefix is the longest common prefix of the sequences' own token ids (not
a separate tokenization of the prompt), so every sequence is exactly what `encode` produced and
the reward -- the score head applied to the final hidden state at the sequence's last token (its
EOS) -- is the one of the unpacked path, even where the tokenizer merges characters across the
prompt/response boundary or `max_length` cut the sequences at different places.

Prefix trees (CPU scoring): the sequences of many prompts merged into one prefix tree
(`_external.PrefixTree`: every distinct token prefix one node, position id = depth) and run with
the scoring engine's segment-wise attention (`genies.models.tree_attention`): nothing masked is
computed and nothing is padded, so a prompt and a preamble shared by prompts are computed once.
On a GPU a dense masked kernel is cheap and many small per-chain calls are not, so rows stay
packed there.

Frozen lower layers: when the trainable parameters live only in the top decoder layers (lora's
`last_layers`), the layers below give the same output at every training step. `LayerCache`
computes the hidden states entering the first trainable layer once per training row and each
step then runs only the top layers from them (fed as `inputs_embeds` to the decoder with its
layer list cut to the top layers, so the model still builds its own rotary embeddings and
masks). Both shortcuts are checked once against the plain computation on the model itself (on
short probe sequences) and are not used when they do not match.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genies.interventions._external import PrefixTree
from genies.models.batching import shared_prefix_length
from genies.models.tree_attention import supports_tree_attention, tree_attention

CACHE_LIMIT_BYTES = 2 << 30  # frozen-layer hidden states kept for training; above this, no cache


@dataclass(frozen=True)
class PackedRow:
    """Sequences sharing a prefix, laid out as one row (see the module docstring)."""

    tokens: list[int]
    positions: list[int]
    segments: list[int]  # -1: the shared prefix; k: the own tokens of sequence k
    ends: list[int]  # index of each sequence's last token, where its reward is read

    @classmethod
    def pack(cls, sequences: Sequence[Sequence[int]]) -> PackedRow:
        shared = shared_prefix_length(sequences)
        tokens, positions, segments, ends = list(sequences[0][:shared]), list(range(shared)), [-1] * shared, []
        for k, seq in enumerate(sequences):
            tokens.extend(seq[shared:])
            positions.extend(range(shared, len(seq)))
            segments.extend([k] * (len(seq) - shared))
            ends.append(len(tokens) - 1)
        return cls(tokens, positions, segments, ends)

    def allowed(self) -> np.ndarray:
        """[n, n] bool: token i may attend to token j (causal, within the prefix or its own sequence)."""
        seg = np.asarray(self.segments)
        return np.tril((seg[None, :] == -1) | (seg[None, :] == seg[:, None]))


LINE_TOKENS = 256  # tokens of packed rows sharing one line of a batch (measured flat from 128 to 384)


def _lines(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Row indices grouped into lines of at most `budget` tokens, first-fit decreasing (a longer
    row gets a line of its own). Rows of a batch differ a lot in length (prompts do), so giving
    every row its own padded line wasted about 40% of the training step on padding."""
    lines: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = next((k for k, free in enumerate(room) if lengths[i] <= free), None)
        if k is None:
            lines.append([i])
            room.append(budget - lengths[i])
        else:
            lines[k].append(i)
            room[k] -= lengths[i]
    return lines


@dataclass
class Batch:
    """Packed rows laid side by side in right-padded lines, as model inputs, plus where to read
    each sequence's reward (in row order, then sequence order, whatever the layout)."""

    input_ids: torch.Tensor  # [lines, width]
    position_ids: torch.Tensor  # [lines, width]
    attention_mask: torch.Tensor  # [lines, 1, width, width] additive float mask, block-diagonal by row
    read_lines: torch.Tensor  # [sequences] line of each sequence's last token
    read_cols: torch.Tensor  # [sequences] column of each sequence's last token
    placement: list[tuple[int, int, int]]  # (line, start column, tokens) of each row

    @classmethod
    def collate(cls, rows: Sequence[PackedRow], pad_id: int, device: torch.device, dtype: torch.dtype,
                line_tokens: int = LINE_TOKENS) -> Batch:
        """A row sees only itself (its position ids restart at 0), pads see only themselves, so
        nothing mixes and softmax rows stay finite; the layout never changes a reward."""
        lines = _lines([len(r.tokens) for r in rows], line_tokens)
        placement: list[tuple[int, int, int]] = [(0, 0, 0)] * len(rows)
        for k, members in enumerate(lines):
            start = 0
            for i in members:
                placement[i] = (k, start, len(rows[i].tokens))
                start += len(rows[i].tokens)
        width = max(start + n for _, start, n in placement)
        ids = np.full((len(lines), width), pad_id, dtype=np.int64)
        pos = np.zeros((len(lines), width), dtype=np.int64)
        allowed = np.zeros((len(lines), width, width), dtype=bool)
        allowed[:, range(width), range(width)] = True
        read_lines, read_cols = [], []
        for row, (k, start, n) in zip(rows, placement):
            ids[k, start: start + n] = row.tokens
            pos[k, start: start + n] = row.positions
            allowed[k, start: start + n, start: start + n] = row.allowed()
            read_lines.extend([k] * len(row.ends))
            read_cols.extend(start + e for e in row.ends)
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~torch.from_numpy(allowed), torch.finfo(dtype).min)
        return cls(torch.from_numpy(ids).to(device), torch.from_numpy(pos).to(device), mask[:, None].to(device),
                   torch.tensor(read_lines, device=device), torch.tensor(read_cols, device=device), placement)


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_of(model: nn.Module) -> nn.Module:
    """The transformer under the sequence-classification head (LoRA layers are injected in place)."""
    base = base_model(model)
    return getattr(base, base.base_model_prefix)


def input_device(model: nn.Module) -> torch.device:
    """Where a batch's inputs go: the input embeddings' device (the first GPU of a sharded model,
    whose other layers accelerate's hooks feed from there)."""
    return decoder_of(model).get_input_embeddings().weight.device


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Half-precision bases train float32 copies of their trained tensors under autocast."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype != torch.float32)


def read_rewards(model: nn.Module, head: str, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The score head at each sequence's last token, in float32 (the head is per-position, so
    applying it to the gathered states equals gathering its per-position output). The states are
    read where the last layer left them: another GPU than the inputs' on a sharded model."""
    lines, cols = batch.read_lines.to(hidden.device), batch.read_cols.to(hidden.device)
    return getattr(base_model(model), head)(hidden[lines, cols])[..., 0].float()


def virtual_tokens(model: nn.Module) -> int | None:
    """Virtual tokens PEFT's prompt tuning prepends to every input inside its own forward: 0 for a
    model without, None for another prompt-learning method (prefix tuning: not packed)."""
    config = getattr(model, "active_peft_config", None)
    if not getattr(config, "is_prompt_learning", False):
        return 0
    return int(config.num_virtual_tokens) if str(config.peft_type) in ("PROMPT_TUNING", "PeftType.PROMPT_TUNING") \
        else None


def with_virtual(model: nn.Module, sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """Sequences as the packed and tree passes take them: prompt tuning's virtual tokens written
    out as ids -1 ... -V in front (positions 0 ... V-1, as PEFT places them), so they are the
    shared prefix of every row and tree and are computed once."""
    virtual = list(range(-1, -(virtual_tokens(model) or 0) - 1, -1))
    return [virtual + list(seq) for seq in sequences]


def decoder_inputs(model: nn.Module, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The decoder's token input: `input_ids`, or for prompt tuning `inputs_embeds` with the
    virtual tokens' trained embeddings at the negative ids (`with_virtual`)."""
    if not virtual_tokens(model):
        return {"input_ids": ids}
    embeds = decoder_of(model).get_input_embeddings()(ids.clamp(min=0))
    prompts = model.get_prompt(batch_size=1)[0].to(embeds.dtype)  # [V, hidden], trainable
    return {"inputs_embeds": torch.where((ids < 0)[..., None], prompts[(-ids - 1).clamp(min=0)], embeds)}


def packed_rewards(model: nn.Module, head: str, rows: Sequence[PackedRow], pad_id: int, device: torch.device,
                   compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reward of every sequence of every row, flat in row order then sequence order."""
    batch = Batch.collate(rows, pad_id, device, compute_dtype)
    with autocast(device, compute_dtype):
        hidden = decoder_of(model)(**decoder_inputs(model, batch.input_ids), attention_mask=batch.attention_mask,
                                   position_ids=batch.position_ids, use_cache=False).last_hidden_state
        return read_rewards(model, head, hidden, batch)


def _tolerance(dtype: torch.dtype, reference: torch.Tensor) -> float:
    return (1e-4 if dtype == torch.float32 else 2e-2) * max(1.0, reference.abs().max().item())


# In half precision a packed row may differ from the unpacked rewards by more than `_tolerance`
# through rounding alone: on a random LLaMA-7B shape in bf16 on an H100 by 0.039 (rewards up to
# 0.80), where ignoring the mask moves them by their own size. So there the packed pass is also
# accepted when it is this many times closer to the unpacked rewards than a pass that ignores the
# mask and the position ids (what an architecture that drops them computes). A decoder that kept
# the mask but dropped only the position ids errs less than that pass where positions are learned
# (gpt2, opt): the margin is sized for rotary models, whose relative positions the mask keeps.
HALF_MASK_MARGIN = 4.0


def _honours_mask(got: torch.Tensor, reference: torch.Tensor, *, ignored: Callable[[], torch.Tensor],
                  compute_dtype: torch.dtype) -> bool:
    """Whether packed rewards `got` match the unpacked `reference`: within `_tolerance`, or, in half
    precision, `HALF_MASK_MARGIN` times closer to it than the mask-ignoring rewards `ignored()`."""
    error = (got - reference).abs().max().item()
    if error <= _tolerance(compute_dtype, reference):
        return True
    return compute_dtype != torch.float32 and HALF_MASK_MARGIN * error <= (ignored() - reference).abs().max().item()


def _mask_ignored_rewards(model: nn.Module, head: str, rows: Sequence[PackedRow], pad_id: int, device: torch.device,
                          compute_dtype: torch.dtype) -> torch.Tensor:
    """What `packed_rewards` would return from a decoder that ignores the packed mask and
    position ids: each row read as one causal sequence from position 0."""
    batch = Batch.collate(rows, pad_id, device, compute_dtype)
    with autocast(device, compute_dtype):
        hidden = decoder_of(model)(**decoder_inputs(model, batch.input_ids), use_cache=False).last_hidden_state
        return read_rewards(model, head, hidden, batch)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _probes(model: nn.Module) -> list[list[int]]:
    """Two sequences sharing a prefix and a third: what the fast paths are checked on."""
    vocab = decoder_of(model).get_input_embeddings().num_embeddings
    return [[int(t) % vocab for t in ids] for ids in ([3, 4, 5, 6, 7, 8], [3, 4, 5, 9, 10], [11, 12])]


# model -> whether the packed path reproduces the unpacked rewards; weak keys so models can be freed
_PACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def can_pack(model: nn.Module, head: str, pad_id: int, device: torch.device, compute_dtype: torch.dtype,
             unpacked: Callable[[list[list[int]]], torch.Tensor]) -> bool:
    """Whether this model takes a 4-D mask and position ids through its decoder, checked once.

    Prompt tuning's virtual tokens, which PEFT prepends inside its own forward, are written out
    in front of every sequence (`with_virtual`); other prompt-learning methods never pack. An
    architecture that ignores or rejects the custom mask fails the comparison with `unpacked`
    (the reference path, which goes through the model's own forward) on two prefix-sharing probes.
    """
    if virtual_tokens(model) is None:
        return False
    known = _PACKS.get(model)
    if known is None:
        probes = _probes(model)
        with torch.no_grad(), _eval_mode(model):
            reference = unpacked(probes)
            try:
                rows = [PackedRow.pack(with_virtual(model, probes[:2])), PackedRow.pack(with_virtual(model, probes[2:]))]
                got = packed_rewards(model, head, rows, pad_id, device, compute_dtype)
                known = _honours_mask(got, reference, compute_dtype=compute_dtype, ignored=lambda: _mask_ignored_rewards(
                    model, head, rows, pad_id, device, compute_dtype))
            except (TypeError, ValueError, RuntimeError):  # a decoder signature without these inputs
                known = False
        _PACKS[model] = known
    return known


def tree_rewards(model: nn.Module, head: str, tree: PrefixTree, device: torch.device,
                 compute_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reward of every sequence of `tree`, in the order they were added, from one forward
    pass with segment-wise attention."""
    ids, positions, plan, ends = tree.inputs(device, compute_dtype)
    with tree_attention(base_model(model)), autocast(device, compute_dtype):
        hidden = decoder_of(model)(**decoder_inputs(model, ids), position_ids=positions, tree_plan=plan,
                                   use_cache=False).last_hidden_state
        return getattr(base_model(model), head)(hidden[0, ends.to(hidden.device)])[..., 0].float()


def prefix_tree(sequences: Sequence[Sequence[int]]) -> PrefixTree:
    tree = PrefixTree()
    for seq in sequences:
        tree.add(seq)
    return tree


# model -> whether the prefix-tree path reproduces the unpacked rewards; weak keys so models can be freed
_TREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def can_tree(model: nn.Module, head: str, device: torch.device, compute_dtype: torch.dtype,
             unpacked: Callable[[list[list[int]]], torch.Tensor]) -> bool:
    """Whether prefix trees with segment-wise attention give this model's unpacked rewards,
    checked once: the architecture must route attention through transformers' interface as
    plain softmax attention (`supports_tree_attention`) and pass the plan and position ids on.
    Prompt tuning's virtual tokens are the root of every tree (see `can_pack`)."""
    if virtual_tokens(model) is None:
        return False
    known = _TREES.get(model)
    if known is None:
        known = False
        if supports_tree_attention(base_model(model)):
            probes = _probes(model)
            with torch.no_grad(), _eval_mode(model):
                reference = unpacked(probes)
                try:
                    tree = prefix_tree(with_virtual(model, probes))
                    got = tree_rewards(model, head, tree, device, compute_dtype).to(reference.device)
                    known = bool(torch.allclose(got, reference, rtol=0, atol=_tolerance(compute_dtype, reference)))
                except (TypeError, ValueError, RuntimeError):  # a decoder that does not pass the plan on
                    known = False
        _TREES[model] = known
    return known


class _Stop(Exception):
    """Raised by the hook that captures the frozen layers' output, to skip the rest of the model."""


def layer_input(decoder: nn.Module, index: int, forward: Callable[[], object]) -> torch.Tensor:
    """The hidden states entering `decoder.layers[index]` during `forward()`, which is stopped
    there: the layers from `index` up are not run."""
    captured: list[torch.Tensor] = []

    def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])
        raise _Stop

    handle = decoder.layers[index].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        forward()
    except _Stop:
        pass
    finally:
        handle.remove()
    return captured[0]


@contextlib.contextmanager
def layers_from(decoder: nn.Module, first: int) -> Iterator[None]:
    """The decoder with its layer list cut to layers `first` and up for the duration of the block:
    fed cached states as `inputs_embeds`, it still builds its own rotary embeddings and masks."""
    full = decoder.layers
    decoder.layers = full[first:]
    try:
        yield
    finally:
        decoder.layers = full


class LayerCache:
    """Hidden states entering the first trainable decoder layer, computed once per training row,
    and the forward pass of the layers from there up (see the module docstring)."""

    def __init__(self, model: nn.Module, head: str, first: int, pad_id: int, device: torch.device,
                 compute_dtype: torch.dtype) -> None:
        self.model, self.head, self.first = model, head, first
        self.pad_id, self.device, self.compute_dtype = pad_id, device, compute_dtype
        self.decoder = decoder_of(model)
        self.rows: list[PackedRow] = []
        self.states: list[torch.Tensor] = []  # per row, unpadded [tokens, hidden]

    @staticmethod
    def first_trainable_layer(model: nn.Module) -> int | None:
        """Index of the lowest decoder layer with a trainable parameter when the embeddings and
        every layer below it are frozen and it is not the first; None when there is nothing to cache."""
        decoder = decoder_of(model)
        layers = getattr(decoder, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            return None
        if any(p.requires_grad for p in decoder.get_input_embeddings().parameters()):
            return None
        first = next((i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())), None)
        return first if first else None

    @staticmethod
    def fits(rows: Sequence[PackedRow], model: nn.Module, compute_dtype: torch.dtype) -> bool:
        """Whether the cached states stay under CACHE_LIMIT_BYTES."""
        hidden = int(base_model(model).config.get_text_config().hidden_size)
        return sum(len(r.tokens) for r in rows) * hidden * torch.finfo(compute_dtype).bits // 8 <= CACHE_LIMIT_BYTES

    def _bottom(self, batch: Batch) -> torch.Tensor:
        """Run the decoder up to the first trainable layer and capture that layer's input."""
        with torch.no_grad(), autocast(self.device, self.compute_dtype):
            return layer_input(self.decoder, self.first, lambda: self.decoder(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False))

    def _top(self, states: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Rewards from the top layers, the final norm and the head, starting from cached states."""
        with layers_from(self.decoder, self.first), autocast(self.device, self.compute_dtype):
            hidden = self.decoder(inputs_embeds=states, attention_mask=batch.attention_mask,
                                  position_ids=batch.position_ids, use_cache=False).last_hidden_state
            return read_rewards(self.model, self.head, hidden, batch)

    def matches_plain(self) -> bool:
        """Whether bottom-then-top equals the plain packed pass on a probe row (in eval mode:
        this checks the architecture plumbing, e.g. inputs_embeds taken as is and per-layer
        masks), and whether the frozen layers give the same output under two random seeds in the
        current (training) mode: a frozen layer drawing dropout would make a cached output
        differ from a fresh one. Probes, not a training row: the plumbing is the same at any
        length, and checking on the first training row ran it four times through the model,
        about a tenth of a fit on long texts (docs/PERFORMANCE.md, "Training")."""
        row = PackedRow.pack(with_virtual(self.model, _probes(self.model)[:2]))
        batch = self._collate([row])
        devices = [self.device] if torch.device(self.device).type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                with _eval_mode(self.model):
                    plain = packed_rewards(self.model, self.head, [row], self.pad_id, self.device, self.compute_dtype)
                    split = self._top(self._bottom(batch), batch)
                torch.manual_seed(0)
                once = self._bottom(batch)
                torch.manual_seed(1)
                again = self._bottom(batch)
        except (TypeError, ValueError, RuntimeError, IndexError, KeyError):
            return False
        return bool(torch.allclose(split, plain, rtol=0, atol=_tolerance(self.compute_dtype, plain))
                    and torch.allclose(once, again, rtol=0, atol=_tolerance(self.compute_dtype, once)))

    def _collate(self, rows: Sequence[PackedRow]) -> Batch:
        return Batch.collate(rows, self.pad_id, self.device, self.compute_dtype)

    def build(self, rows: Sequence[PackedRow], rows_per_pass: int, advance: Callable[[int], None]) -> None:
        """Compute and keep (unpadded) the frozen layers' output for every row; `advance` is
        told the rows done."""
        self.rows = list(rows)
        self.states = []
        for start in range(0, len(rows), rows_per_pass):
            batch = self._collate(rows[start: start + rows_per_pass])
            states = self._bottom(batch)
            self.states.extend(states[k, start: start + n].clone() for k, start, n in batch.placement)
            advance(len(batch.placement))

    def rewards(self, idx: Sequence[int]) -> torch.Tensor:
        """The rewards of rows `idx` (flat, row then sequence order) from their cached states."""
        batch = self._collate([self.rows[i] for i in idx])
        first = self.states[idx[0]]
        states = first.new_zeros((*batch.input_ids.shape, first.shape[-1]))
        for i, (k, start, n) in zip(idx, batch.placement):
            states[k, start: start + n] = self.states[i]
        return self._top(states, batch)
