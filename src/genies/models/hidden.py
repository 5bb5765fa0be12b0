"""Hidden states for representation methods: the residual stream and per-head attention outputs.

One batched forward pass (no logits, no gradients) captures both sites for every text:

- `residual`: HF's `hidden_states` — the embedding output plus each layer's output, the last one
  after the final norm exactly as HF returns it — shape [N, num_layers + 1, hidden]. Methods slice
  what they need (LAT uses [:, :L], CCS [:, -1]).
- `heads`: the input of each layer's attention output projection (the concatenated per-head
  outputs before o_proj / dense / c_proj), captured with forward pre-hooks and reshaped to
  [N, num_layers, num_heads, head_dim].

Each text is `prefix + completion`, tokenized as ONE string (so token boundaries match feeding the
whole text to the model), with BOS prepended when asked and the tokenizer has one, and EOS appended
when asked. `position="last"` reads the last token (the EOS when added); `position="mean"` averages
over the completion's tokens (those covering any completion character, plus the EOS when added).

Texts with the same prefix (an example's responses) are packed into one row with a block mask, so
the prompt is read once for all of its responses; each text's tokens are still exactly those of
its own joint tokenization, and its position ids are those it would have alone. Results therefore
equal one-text-at-a-time forwards and do not depend on batch size or padding side (explicit
position ids keep left padding from shifting rotary or absolute positions). Texts longer than the model's
context are truncated from the LEFT (BOS kept), counted, and reported with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from genies.errors import GeniesError
from genies.models.base import LoadedModel, context_length, pad_token_id, tokenize
from genies.models.batching import run_with_backoff, shared_prefix_length
from genies.models.templates import POSITIONS, SITES


# Where decoder stacks live, relative to `model.base_model` (Llama/Qwen2/Gemma/Mistral/GPT-NeoX use
# `layers`, GPT-2/GPT-J/Falcon/Bloom `h`, OPT `decoder.layers`, MPT `blocks`).
LAYER_PATHS = ("layers", "h", "decoder.layers", "blocks", "language_model.layers", "model.layers", "transformer.h")
# The attention output projection inside one decoder layer, per family.
OUT_PROJ_PATHS = (
    "self_attn.o_proj",        # Llama, Qwen2, Gemma, Mistral, Phi-3
    "attention.dense",         # GPT-NeoX, Pythia
    "attn.c_proj",             # GPT-2
    "self_attn.out_proj",      # OPT
    "attn.out_proj",           # GPT-J
    "self_attention.dense",    # Falcon, Bloom
    "self_attn.dense",         # Phi-1/2
    "attn.o_proj",
    "attention.o_proj",
)


class UnsupportedArchitectureError(GeniesError, ValueError):
    """The model's layer layout is not one we know how to hook; the message lists what is."""


@dataclass(frozen=True)
class DecoderLayout:
    """The modules to hook in one model, found once per call."""

    base: nn.Module
    out_projs: tuple[nn.Module, ...]
    num_heads: int
    description: str


def _get_path(module: nn.Module, path: str) -> nn.Module | None:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _num_heads(config) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("num_attention_heads", "n_head", "num_heads"):
        value = getattr(text, name, None)
        if isinstance(value, int):
            return value
    return None


def find_layout(model: nn.Module) -> DecoderLayout:
    """Locate the decoder layers and their attention output projections, or explain what failed."""
    base = getattr(model, "base_model", model)
    kind = type(model).__name__
    for layers_path in LAYER_PATHS:
        layers = _get_path(base, layers_path)
        if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
            continue
        for proj_path in OUT_PROJ_PATHS:
            projs = [_get_path(layer, proj_path) for layer in layers]
            if all(p is not None for p in projs):
                heads = _num_heads(model.config)
                if heads is None:
                    raise UnsupportedArchitectureError(
                        f"{kind}: the config names no num_attention_heads / n_head, so the heads site cannot be split"
                    )
                return DecoderLayout(base, tuple(projs), heads, f"{layers_path}[i].{proj_path}")
        raise UnsupportedArchitectureError(
            f"{kind}: found decoder layers at {layers_path} ({type(layers[0]).__name__}) but no attention output "
            f"projection; supported: {', '.join(OUT_PROJ_PATHS)}"
        )
    raise UnsupportedArchitectureError(
        f"{kind}: no decoder layer list found; supported layouts: "
        f"<base model>.{{{', '.join(LAYER_PATHS)}}}[i].{{{', '.join(OUT_PROJ_PATHS)}}}"
    )


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids per text, where each completion starts, and which texts were truncated."""

    ids: list[list[int]]
    completion_start: np.ndarray  # token index of the first completion token, per text
    truncated: np.ndarray  # bool, per text
    group_keys: list[str]  # texts with equal keys (the same prefix) share one packed row

    def __len__(self) -> int:
        return len(self.ids)


def _completion_starts(tokenizer, texts: list[str], prefixes: Sequence[str], name: Callable[[int], str]
                       ) -> tuple[list[list[int]], list[int]]:
    """Tokenize whole texts and find the first token that covers a completion character."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenize(tokenizer, texts, name, return_offsets_mapping=True)
        starts = []
        for offsets, prefix in zip(enc["offset_mapping"], prefixes, strict=True):
            cut = len(prefix)
            starts.append(next((t for t, (_, end) in enumerate(offsets) if end > cut), len(offsets)))
        return enc["input_ids"], starts
    # Slow tokenizers have no offsets: count the prefix's own tokens instead.
    ids = tokenize(tokenizer, texts, name)["input_ids"]
    prefix_ids = tokenize(tokenizer, prefixes, name)["input_ids"]
    return ids, [min(len(p), len(t)) for p, t in zip(prefix_ids, ids, strict=True)]


def encode_texts(
    tokenizer, prefixes: Sequence[str], completions: Sequence[str], *, add_bos: bool = True,
    add_eos: bool = False, max_length: int | None = None, name: Callable[[int], str] = "text {}".format,
) -> EncodedTexts:
    """Token ids for `prefix + completion` with BOS/EOS, left-truncated to `max_length`.

    `name(i)` is how an error names text i when the tokenizer cannot encode it (a `JobError`);
    a caller that knows where the texts came from says so, e.g. "cola test, example 3, response 1".
    """
    if len(prefixes) != len(completions):
        raise ValueError(f"{len(prefixes)} prefixes but {len(completions)} completions")
    texts = [p + c for p, c in zip(prefixes, completions, strict=True)]
    raw_ids, starts = _completion_starts(tokenizer, texts, prefixes, name)
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    if add_eos and tokenizer.eos_token_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no EOS token, but the template asks for one")
    eos = [tokenizer.eos_token_id] if add_eos else []
    ids, comp_start, truncated = [], np.zeros(len(texts), np.int64), np.zeros(len(texts), bool)
    for i, (body, start) in enumerate(zip(raw_ids, starts, strict=True)):
        body = list(body) + eos
        if max_length is not None and len(bos) + len(body) > max_length:
            drop = len(bos) + len(body) - max_length
            if drop >= len(body):
                raise ValueError(f"text {i}: max_length {max_length} leaves no room for the text")
            body, start, truncated[i] = body[drop:], max(start - drop, 0), True
        ids.append(bos + body)
        comp_start[i] = len(bos) + start
    return EncodedTexts(ids, comp_start, truncated, list(prefixes))


@dataclass(frozen=True)
class HiddenBatch:
    """Activations for the texts at `indices` (positions in the caller's order)."""

    indices: np.ndarray
    values: dict[str, np.ndarray]


def _check(sites: Sequence[str], position: str) -> None:
    unknown = [s for s in sites if s not in SITES]
    if unknown or not sites:
        raise ValueError(f"unknown sites {unknown or list(sites)}; choose from {', '.join(SITES)}")
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r}; choose from {', '.join(POSITIONS)}")


def _groups(prefixes: Sequence[str]) -> list[list[int]]:
    """Texts that share a prefix string (an example's responses), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(prefix, []).append(i)
    return list(groups.values())


@dataclass(frozen=True)
class _Packed:
    """A batch of packed rows and, per text, the (row, position, weight) triples to pool."""

    ids: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor  # [B, 1, T, T] additive float mask
    texts: np.ndarray  # caller indices of the batch's texts
    pool_text: torch.Tensor
    pool_row: torch.Tensor
    pool_pos: torch.Tensor
    pool_weight: torch.Tensor


def _pack(encoded: EncodedTexts, groups: Sequence[list[int]], position: str, pad_id: int, side: str,
          dtype: torch.dtype, device: torch.device) -> _Packed:
    """One row per group: [shared tokens, own tokens of text 1, own tokens of text 2, ...].

    The block mask lets each text's own tokens see the shared tokens and their own earlier
    tokens, and position ids restart after the shared part, so every text is computed exactly as
    if it were alone while the shared tokens are computed once.
    """
    lengths, shared = [], []
    for g in groups:
        seqs = [encoded.ids[t] for t in g]
        shared.append(shared_prefix_length(seqs))
        lengths.append(shared[-1] + sum(len(s) - shared[-1] for s in seqs))
    width = max(lengths)
    ids = np.full((len(groups), width), pad_id, np.int64)
    pos = np.zeros((len(groups), width), np.int64)
    seg = np.full((len(groups), width), -1, np.int64)  # -1 pad, 0 shared, k + 1 text k of the group
    texts, p_text, p_row, p_pos, p_w = [], [], [], [], []
    for b, (g, c) in enumerate(zip(groups, shared, strict=True)):
        at = width - lengths[b] if side == "left" else 0
        first = encoded.ids[g[0]]
        ids[b, at:at + c], pos[b, at:at + c], seg[b, at:at + c] = first[:c], np.arange(c), 0
        cursor = at + c
        for k, t in enumerate(g):
            seq, n = encoded.ids[t], len(encoded.ids[t])
            ids[b, cursor:cursor + n - c] = seq[c:]
            pos[b, cursor:cursor + n - c] = np.arange(c, n)
            seg[b, cursor:cursor + n - c] = k + 1
            # where token j of this text sits in the row
            where = lambda j: at + j if j < c else cursor + j - c  # noqa: E731
            start = int(encoded.completion_start[t])
            if position == "last":
                span = [n - 1]
            elif start >= n:
                raise ValueError(f"text {t}: the completion is empty, so position='mean' has no tokens to average")
            else:
                span = range(start, n)
            local = len(texts)
            texts.append(t)
            for j in span:
                p_text.append(local)
                p_row.append(b)
                p_pos.append(where(j))
                p_w.append(1.0 / len(span))
            cursor += n - c
    seg_t = torch.from_numpy(seg)
    idx = torch.arange(width)
    sj, si = seg_t[:, None, :], seg_t[:, :, None]
    allowed = (idx[None, :] <= idx[:, None])[None] & (sj >= 0) & ((sj == 0) | (sj == si))
    allowed |= torch.eye(width, dtype=torch.bool)[None]  # pad rows see themselves: no NaN rows
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
    return _Packed(
        torch.from_numpy(ids).to(device), torch.from_numpy(pos).to(device), mask.to(device), np.array(texts),
        torch.tensor(p_text, device=device), torch.tensor(p_row, device=device),
        torch.tensor(p_pos, device=device), torch.tensor(p_w, dtype=torch.float32, device=device),
    )


def _pool(packed: _Packed, x: torch.Tensor) -> torch.Tensor:
    """Per text, the weighted sum of `x` [B, T, W] over its pooled positions, in float32 whatever
    the model computes in (bf16, or a quantized model's compute dtype), on the inputs' device:
    the layers of a model sharded over GPUs leave their outputs on their own GPU."""
    device = x.device
    rows, cols, text = packed.pool_row.to(device), packed.pool_pos.to(device), packed.pool_text.to(device)
    picked = x[rows, cols].float() * packed.pool_weight.to(device)[:, None]
    out = torch.zeros((len(packed.texts), x.shape[-1]), dtype=torch.float32, device=device)
    return out.index_add_(0, text, picked).to(packed.ids.device)


def _batches(groups: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Consecutive groups holding up to `batch_size` texts (a bigger group goes alone)."""
    batches: list[list[list[int]]] = []
    count = 0
    for g in groups:
        if batches and count + len(g) <= batch_size:
            batches[-1].append(g)
            count += len(g)
        else:
            batches.append([g])
            count = len(g)
    return batches


def _default_progress() -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )


def iter_hidden(
    lm: LoadedModel, encoded: EncodedTexts, *, sites: Sequence[str] = SITES, position: str = "last",
    batch_size: int = 8,
) -> Iterator[HiddenBatch]:
    """Yield activations batch by batch (longest prompts first).

    Texts with the same prefix string are packed into one row that computes their common leading
    tokens once (an example's prompt is read once for all of its responses); `batch_size` counts
    texts, and one prompt's texts always share a batch. A batch that runs out of memory is split
    in halves and retried (the scoring engine's back-off), and only that batch: the batches after
    it keep `batch_size`. Streaming lets the activation store write rows straight into
    memory-mapped files, so a split's activations never have to fit in RAM at once. Rows are
    padded on the tokenizer's `padding_side`; explicit position ids make the results the same.
    """
    _check(sites, position)
    layout = find_layout(lm.model)
    pad_id = pad_token_id(lm)
    # The embeddings say where inputs go and the dtype of the mask: the first GPU of a sharded
    # model, and the compute dtype of a quantized one (whose linear weights are packed integers).
    embeddings = lm.model.get_input_embeddings().weight
    device, dtype = embeddings.device, embeddings.dtype
    groups = sorted(_groups(encoded.group_keys), key=lambda g: -sum(len(encoded.ids[t]) for t in g))
    captured: list[torch.Tensor | None] = [None] * len(layout.out_projs)
    state: dict[str, _Packed] = {}
    done: list[HiddenBatch] = []

    def make_hook(layer: int):
        def hook(module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            captured[layer] = _pool(state["packed"], x)
        return hook

    def run(batch: list[list[int]]) -> None:
        packed = _pack(encoded, batch, position, pad_id, lm.tokenizer.padding_side, dtype, device)
        state["packed"] = packed
        with torch.inference_mode():
            out = layout.base(input_ids=packed.ids, attention_mask=packed.mask, position_ids=packed.positions,
                              output_hidden_states="residual" in sites, use_cache=False)
        values = {}
        if "residual" in sites:
            values["residual"] = torch.stack([_pool(packed, h) for h in out.hidden_states], 1).cpu().numpy()
        if "heads" in sites:
            heads = torch.stack(captured, 1)
            values["heads"] = heads.reshape(len(packed.texts), len(captured), layout.num_heads, -1).cpu().numpy()
        done.append(HiddenBatch(packed.texts, values))

    handles = []
    if "heads" in sites:
        handles = [p.register_forward_pre_hook(make_hook(i), with_kwargs=True) for i, p in enumerate(layout.out_projs)]
    progress = _default_progress()
    try:
        with progress:
            task = progress.add_task(f"hidden states ({lm.name})", total=len(encoded))
            for batch in _batches(groups, max(1, batch_size)):
                # One prompt's texts share a packed row, so the back-off splits a batch by groups
                # and gives up on a single group; the halves finish before the next batch starts.
                run_with_backoff(lm, [batch], run)
                while done:
                    finished = done.pop(0)
                    yield finished
                    progress.advance(task, len(finished.indices))
    finally:
        for handle in handles:
            handle.remove()


def warn_truncated(encoded: EncodedTexts, max_length: int | None) -> None:
    """Report left-truncated texts (count and the first indices); none are dropped."""
    hit = np.flatnonzero(encoded.truncated)
    if len(hit):
        shown = ", ".join(map(str, hit[:10])) + (" ..." if len(hit) > 10 else "")
        warnings.warn(
            f"{len(hit)} of {len(encoded)} texts exceed the model context of {max_length} tokens and were "
            f"truncated from the left (text indices: {shown})", stacklevel=3,
        )


def extract_hidden(
    lm: LoadedModel, prefixes: Sequence[str], completions: Sequence[str], *, sites: Sequence[str] = SITES,
    position: str = "last", add_bos: bool = True, add_eos: bool = False, batch_size: int = 8,
    max_length: int | None = None,
) -> dict[str, np.ndarray]:
    """Activations of `prefix + completion` for each text, as float32 arrays keyed by site.

    residual: [N, num_layers + 1, hidden]; heads: [N, num_layers, num_heads, head_dim].
    `max_length` defaults to the model's context length.
    """
    _check(sites, position)
    max_length = context_length(lm, max_length)
    encoded = encode_texts(lm.tokenizer, prefixes, completions, add_bos=add_bos, add_eos=add_eos,
                           max_length=max_length)
    warn_truncated(encoded, max_length)
    result: dict[str, np.ndarray] = {}
    for batch in iter_hidden(lm, encoded, sites=sites, position=position, batch_size=batch_size):
        for site, values in batch.values.items():
            if site not in result:
                result[site] = np.empty((len(encoded), *values.shape[1:]), np.float32)
            result[site][batch.indices] = values
    return result
