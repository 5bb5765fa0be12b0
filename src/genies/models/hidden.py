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

Results do not depend on batch size or padding side: position ids are computed from the attention
mask, so left padding does not shift rotary or absolute positions. Texts longer than the model's
context are truncated from the LEFT (BOS kept), counted, and reported with a warning.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from genies.models.base import LoadedModel

SITES = ("residual", "heads")
POSITIONS = ("last", "mean")

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


class UnsupportedArchitectureError(ValueError):
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

    def __len__(self) -> int:
        return len(self.ids)


def _completion_starts(tokenizer, texts: list[str], prefixes: Sequence[str]) -> tuple[list[list[int]], list[int]]:
    """Tokenize whole texts and find the first token that covers a completion character."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        starts = []
        for offsets, prefix in zip(enc["offset_mapping"], prefixes, strict=True):
            cut = len(prefix)
            starts.append(next((t for t, (_, end) in enumerate(offsets) if end > cut), len(offsets)))
        return enc["input_ids"], starts
    # Slow tokenizers have no offsets: count the prefix's own tokens instead.
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    prefix_ids = tokenizer(list(prefixes), add_special_tokens=False)["input_ids"]
    return ids, [min(len(p), len(t)) for p, t in zip(prefix_ids, ids, strict=True)]


def encode_texts(
    tokenizer, prefixes: Sequence[str], completions: Sequence[str], *, add_bos: bool = True,
    add_eos: bool = False, max_length: int | None = None,
) -> EncodedTexts:
    """Token ids for `prefix + completion` with BOS/EOS, left-truncated to `max_length`."""
    if len(prefixes) != len(completions):
        raise ValueError(f"{len(prefixes)} prefixes but {len(completions)} completions")
    texts = [p + c for p, c in zip(prefixes, completions, strict=True)]
    raw_ids, starts = _completion_starts(tokenizer, texts, prefixes)
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
    return EncodedTexts(ids, comp_start, truncated)


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


def _pad(encoded: EncodedTexts, rows: np.ndarray, pad_id: int, side: str, device: torch.device):
    """Padded ids, mask, position ids, and the per-row pooling weights over the real tokens."""
    lengths = [len(encoded.ids[r]) for r in rows]
    width = max(lengths)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    last = torch.zeros(len(rows), dtype=torch.long)
    span = torch.zeros((len(rows), width), dtype=torch.float32)  # completion tokens, for "mean"
    for b, (r, n) in enumerate(zip(rows, lengths, strict=True)):
        offset = width - n if side == "left" else 0
        ids[b, offset:offset + n] = torch.tensor(encoded.ids[r])
        mask[b, offset:offset + n] = 1
        last[b] = offset + n - 1
        start = offset + int(encoded.completion_start[r])
        if start > last[b]:
            raise ValueError(f"text {int(r)}: the completion is empty, so position='mean' has no tokens to average")
        span[b, start:offset + n] = 1.0 / (offset + n - start)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device), last.to(device), span.to(device)


def _pooler(position: str, last: torch.Tensor, span: torch.Tensor):
    rows = torch.arange(last.shape[0], device=last.device)
    if position == "last":
        return lambda x: x[rows, last].float()
    return lambda x: torch.einsum("bt,btw->bw", span, x.float())


def _default_progress() -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )


def iter_hidden(
    lm: LoadedModel, encoded: EncodedTexts, *, sites: Sequence[str] = SITES, position: str = "last",
    batch_size: int = 8, padding_side: str = "right", progress: Progress | None = None,
) -> Iterator[HiddenBatch]:
    """Yield activations batch by batch (longest texts first), halving the batch on out-of-memory.

    Streaming lets the activation store write rows straight into memory-mapped files, so a
    split's activations never have to fit in RAM at once.
    """
    _check(sites, position)
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    layout = find_layout(lm.model)
    tok = lm.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    device = lm.model.get_input_embeddings().weight.device
    order = np.argsort([-len(ids) for ids in encoded.ids], kind="stable")
    captured: list[torch.Tensor | None] = [None] * len(layout.out_projs)
    state: dict = {}

    def make_hook(layer: int):
        def hook(module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            captured[layer] = state["pool"](x)
        return hook

    handles = []
    if "heads" in sites:
        handles = [p.register_forward_pre_hook(make_hook(i), with_kwargs=True) for i, p in enumerate(layout.out_projs)]
    own_progress = progress is None
    progress = _default_progress() if own_progress else progress
    try:
        with progress if own_progress else contextlib.nullcontext():
            task = progress.add_task(f"hidden states ({lm.name})", total=len(order))
            start, size = 0, max(1, batch_size)
            while start < len(order):
                rows = order[start:start + size]
                ids, mask, positions, last, span = _pad(encoded, rows, pad_id, padding_side, device)
                state["pool"] = _pooler(position, last, span)
                try:
                    with torch.inference_mode():
                        out = layout.base(input_ids=ids, attention_mask=mask, position_ids=positions,
                                          output_hidden_states="residual" in sites, use_cache=False)
                except torch.OutOfMemoryError:
                    if size == 1:
                        raise
                    size = max(1, size // 2)
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                values = {}
                if "residual" in sites:
                    values["residual"] = torch.stack([state["pool"](h) for h in out.hidden_states], 1).cpu().numpy()
                if "heads" in sites:
                    heads = torch.stack(captured, 1)
                    values["heads"] = heads.reshape(len(rows), len(captured), layout.num_heads, -1).cpu().numpy()
                yield HiddenBatch(rows, values)
                progress.advance(task, len(rows))
                start += len(rows)
    finally:
        for handle in handles:
            handle.remove()


def model_max_length(lm: LoadedModel) -> int | None:
    """The model's context length from its config (None if it names none): the truncation limit."""
    config = lm.model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(text, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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
    padding_side: str = "right", max_length: int | None = None, progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Activations of `prefix + completion` for each text, as float32 arrays keyed by site.

    residual: [N, num_layers + 1, hidden]; heads: [N, num_layers, num_heads, head_dim].
    `max_length` defaults to the model's context length.
    """
    _check(sites, position)
    max_length = max_length or model_max_length(lm)
    encoded = encode_texts(lm.tokenizer, prefixes, completions, add_bos=add_bos, add_eos=add_eos,
                           max_length=max_length)
    warn_truncated(encoded, max_length)
    result: dict[str, np.ndarray] = {}
    for batch in iter_hidden(lm, encoded, sites=sites, position=position, batch_size=batch_size,
                             padding_side=padding_side, progress=progress):
        for site, values in batch.values.items():
            if site not in result:
                result[site] = np.empty((len(encoded), *values.shape[1:]), np.float32)
            result[site][batch.indices] = values
    return result
