"""Hidden states for representation methods: the residual stream and per-head attention outputs.

One batched forward pass (no logits, no gradients) captures the requested sites for every text:

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

Extraction runs on the scoring engine's machinery (`genies.models.prefix_tree`): texts with the
same prefix (an example's responses) are one prefix-tree example whose prompt is their common
leading tokens, and examples are packed into prefix-tree rows in which every distinct token
prefix is one node that attends to exactly its ancestors, with its depth as position id. On CPU
one unpadded tree of up to `batch_tokens` nodes runs per forward with tree attention (checked
once per model against the dense path), else padded rows with a dense ancestor mask; a batch
that runs out of memory is split in halves. Each text's tokens are still exactly those of its
own joint tokenization and every node is computed as if its text were alone, so results equal
one-text-at-a-time forwards (`extract_hidden_naive`) and do not depend on the budget, the
attention path or the padding side. Only the requested sites are computed, at the requested
position. Texts longer than the model's context are truncated from the LEFT (BOS kept),
counted, and reported with a warning.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from genies.errors import GeniesError
from genies.models.base import LoadedModel, context_length, pad_token_id, tokenize
from genies.models.batching import run_with_backoff, shared_prefix_length
from genies.models.prefix_tree import (ROW_TOKENS, TokenizedExample, TreeRow, agrees, check_attention, checked_once,
                                       default_batch_tokens, dense_inputs, length_batches, pack_rows, pad_offset,
                                       probe_row, tree_inputs)
from genies.models.templates import POSITIONS, SITES
from genies.models.tree_attention import supports_tree_attention, tree_attention


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


@dataclass(frozen=True)
class TextGroups:
    """Texts that share a prefix string (an example's responses) as prefix-tree examples: the
    group's common leading tokens are its prompt, each text's remaining tokens a response."""

    examples: list[TokenizedExample]
    texts: list[list[int]]  # caller indices of each group's texts, in response order


def group_texts(encoded: EncodedTexts) -> TextGroups:
    members: dict[str, list[int]] = {}
    for i, key in enumerate(encoded.group_keys):
        members.setdefault(key, []).append(i)
    examples = []
    for texts in members.values():
        seqs = [encoded.ids[t] for t in texts]
        c = shared_prefix_length(seqs)
        examples.append(TokenizedExample(list(seqs[0][:c]), [list(s[c:]) for s in seqs], 0))
    return TextGroups(examples, list(members.values()))


@dataclass(frozen=True)
class _Pooling:
    """Which (row, column) positions of a forward's states each of its texts averages."""

    texts: np.ndarray  # caller indices of the batch's texts
    text: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    weight: torch.Tensor


def _pooling(encoded: EncodedTexts, groups: TextGroups, rows: Sequence[TreeRow], offsets: Sequence[int],
             position: str, device: torch.device) -> _Pooling:
    """Per text, the nodes to read: its last node, or the nodes of its completion tokens."""
    texts, p_text, p_row, p_col, p_w = [], [], [], [], []
    for b, (row, at) in enumerate(zip(rows, offsets, strict=True)):
        paths = iter(row.paths)
        for g in row.examples:
            for t in groups.texts[g]:
                path = next(paths)
                span = path[-1:] if position == "last" else path[int(encoded.completion_start[t]):]
                local = len(texts)
                texts.append(t)
                for node in span:
                    p_text.append(local)
                    p_row.append(b)
                    p_col.append(at + node)
                    p_w.append(1.0 / len(span))
    return _Pooling(np.array(texts), torch.tensor(p_text, device=device), torch.tensor(p_row, device=device),
                    torch.tensor(p_col, device=device), torch.tensor(p_w, dtype=torch.float32, device=device))


def _pool(pooling: _Pooling, x: torch.Tensor) -> torch.Tensor:
    """Per text, the weighted sum of `x` [B, T, W] over its pooled positions, in float32 whatever
    the model computes in (bf16, or a quantized model's compute dtype), on the inputs' device:
    the layers of a model sharded over GPUs leave their outputs on their own GPU."""
    device = x.device
    rows, cols, text = pooling.row.to(device), pooling.col.to(device), pooling.text.to(device)
    picked = x[rows, cols].float() * pooling.weight.to(device)[:, None]
    out = torch.zeros((len(pooling.texts), x.shape[-1]), dtype=torch.float32, device=device)
    return out.index_add_(0, text, picked).to(pooling.row.device)


# model -> whether tree attention gives the dense path's hidden states; weak keys so models can be freed
_TREE_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_attention(lm: LoadedModel, attention: str = "auto") -> str:
    """Which attention path extraction takes: "tree" (CPU, when the model supports it and its
    hidden states equal the dense path's, checked once per model) or "dense"."""
    check_attention(attention)
    if attention == "dense" or (attention == "auto" and lm.device.type != "cpu"):
        return "dense"
    ok = checked_once(_TREE_OK, lm.model, lambda: supports_tree_attention(lm.model) and _tree_matches_dense(lm))
    if attention == "tree" and not ok:
        raise ValueError(f"model {lm.name}: tree attention is not supported for this architecture "
                         "(use attention='dense')")
    return "tree" if ok else "dense"


@torch.inference_mode()
def _tree_matches_dense(lm: LoadedModel) -> bool:
    """Every layer's hidden states of a small tree, computed both ways."""
    base = find_layout(lm.model).base
    row = probe_row(lm.model.get_input_embeddings().weight.shape[0])
    ids, pos, mask = dense_inputs(lm, [row])
    dense = base(input_ids=ids, position_ids=pos, attention_mask=mask, output_hidden_states=True,
                 use_cache=False).hidden_states
    try:
        with tree_attention(lm.model):
            ids, pos, plan = tree_inputs(lm, row)
            tree = base(input_ids=ids, position_ids=pos, tree_plan=plan, output_hidden_states=True,
                        use_cache=False).hidden_states
    except Exception:  # an exotic forward signature: the dense path is always correct
        return False
    return len(tree) == len(dense) and all(
        t.shape == d.shape and agrees(lm, t.float(), d.float()) for t, d in zip(tree, dense, strict=True))


def _default_progress() -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not console.is_terminal,
    )


def _check_completions(encoded: EncodedTexts, position: str) -> None:
    if position == "mean":
        empty = [t for t, ids in enumerate(encoded.ids) if encoded.completion_start[t] >= len(ids)]
        if empty:
            raise ValueError(f"text {empty[0]}: the completion is empty, so position='mean' has no tokens to average")


def iter_hidden(
    lm: LoadedModel, encoded: EncodedTexts, *, sites: Sequence[str] = SITES, position: str = "last",
    batch_tokens: int | None = None, attention: str = "auto",
) -> Iterator[HiddenBatch]:
    """Yield activations batch by batch, on the scoring engine's machinery.

    Texts with the same prefix string are one prefix-tree example (their common leading tokens
    are its prompt), packed with the engine's rows (`genies.models.prefix_tree`): with tree
    attention (CPU) one unpadded tree of up to `batch_tokens` nodes per forward, else dense rows
    of up to `ROW_TOKENS` nodes bucketed by length into batches of `batch_tokens` padded tokens.
    One prompt's texts always share a forward. A batch that runs out of memory is split in
    halves and retried (only that batch). Only the requested `sites` are computed and read, at
    the requested `position`. Streaming lets the activation store write rows straight into
    memory-mapped files, so a split's activations never have to fit in RAM at once. Dense rows
    are padded on the tokenizer's `padding_side`; explicit position ids make the results the same.
    """
    _check(sites, position)
    _check_completions(encoded, position)
    layout = find_layout(lm.model)
    groups = group_texts(encoded)
    budget = batch_tokens or default_batch_tokens(lm)
    use_tree = resolve_attention(lm, attention) == "tree"
    captured: list[torch.Tensor | None] = [None] * len(layout.out_projs)
    state: dict[str, _Pooling] = {}
    done: list[HiddenBatch] = []

    def make_hook(layer: int):
        def hook(module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            captured[layer] = _pool(state["pooling"], x)
        return hook

    def forward(rows: Sequence[TreeRow], offsets: Sequence[int], **inputs) -> None:
        pooling = _pooling(encoded, groups, rows, offsets, position, lm.device)
        state["pooling"] = pooling
        out = layout.base(**inputs, output_hidden_states="residual" in sites, use_cache=False)
        values = {}
        if "residual" in sites:
            values["residual"] = torch.stack([_pool(pooling, h) for h in out.hidden_states], 1).cpu().numpy()
        if "heads" in sites:
            heads = torch.stack(captured, 1)
            values["heads"] = heads.reshape(len(pooling.texts), len(captured), layout.num_heads, -1).cpu().numpy()
        done.append(HiddenBatch(pooling.texts, values))

    if use_tree:  # a batch is the groups of one tree; on out-of-memory it splits into two trees

        def run(members: list[int]) -> None:
            row = TreeRow.build(groups.examples, members)
            ids, pos, plan = tree_inputs(lm, row)
            forward([row], [0], input_ids=ids, position_ids=pos, tree_plan=plan)

        batches = pack_rows(groups.examples, budget)
    else:  # a batch is a list of padded rows
        all_rows = [TreeRow.build(groups.examples, members) for members in pack_rows(groups.examples, ROW_TOKENS)]

        def run(members: list[int]) -> None:
            rows = [all_rows[r] for r in members]
            ids, pos, mask = dense_inputs(lm, rows)
            offsets = [pad_offset(lm, len(row.tokens), ids.shape[1]) for row in rows]
            forward(rows, offsets, input_ids=ids, position_ids=pos, attention_mask=mask)

        batches = length_batches([len(r.tokens) for r in all_rows], budget)

    handles = []
    if "heads" in sites:
        handles = [p.register_forward_pre_hook(make_hook(i), with_kwargs=True) for i, p in enumerate(layout.out_projs)]
    progress = _default_progress()
    try:
        with progress, torch.inference_mode(), (tree_attention(lm.model) if use_tree else nullcontext()):
            task = progress.add_task(f"hidden states ({lm.name})", total=len(encoded))
            for batch in batches:
                # the halves of a batch that ran out of memory finish before the next batch starts
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
    position: str = "last", add_bos: bool = True, add_eos: bool = False, batch_tokens: int | None = None,
    attention: str = "auto", max_length: int | None = None,
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
    for batch in iter_hidden(lm, encoded, sites=sites, position=position, batch_tokens=batch_tokens,
                             attention=attention):
        for site, values in batch.values.items():
            if site not in result:
                result[site] = np.empty((len(encoded), *values.shape[1:]), np.float32)
            result[site][batch.indices] = values
    return result


def extract_hidden_naive(
    lm: LoadedModel, prefixes: Sequence[str], completions: Sequence[str], *, sites: Sequence[str] = SITES,
    position: str = "last", add_bos: bool = True, add_eos: bool = False, batch_tokens: int | None = None,
    max_length: int | None = None,
) -> dict[str, np.ndarray]:
    """The reference: every text as its own padded sequence through the whole model.

    Same tokenization, truncation and dtype as `extract_hidden`, but no sharing: each text is
    one sequence (bucketed by length into batches of `batch_tokens` padded tokens, with a 2-D
    padding mask and position ids that skip the padding), the residual stream is the model's own
    `output_hidden_states` (logits included, as a plain forward computes them) and the heads
    are the inputs of the attention output projections; the positions are read afterwards.
    Used to test the extractor and as the benchmark baseline.
    """
    _check(sites, position)
    max_length = context_length(lm, max_length)
    encoded = encode_texts(lm.tokenizer, prefixes, completions, add_bos=add_bos, add_eos=add_eos,
                           max_length=max_length)
    _check_completions(encoded, position)
    layout = find_layout(lm.model)
    lengths = [len(ids) for ids in encoded.ids]
    result: dict[str, np.ndarray] = {}
    captured: list[torch.Tensor | None] = [None] * len(layout.out_projs)

    def make_hook(layer: int):
        def hook(module, args, kwargs):
            captured[layer] = args[0] if args else next(iter(kwargs.values()))
        return hook

    def store(site: str, j: int, value: torch.Tensor) -> None:
        if site not in result:
            result[site] = np.empty((len(encoded), *value.shape), np.float32)
        result[site][j] = value.float().cpu().numpy()

    def run(batch: list[int]) -> None:
        width = max(lengths[j] for j in batch)
        ids = torch.full((len(batch), width), pad_token_id(lm), dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for b, j in enumerate(batch):
            at = pad_offset(lm, lengths[j], width)
            ids[b, at: at + lengths[j]] = torch.tensor(encoded.ids[j])
            attn[b, at: at + lengths[j]] = 1
        position_ids = (attn.cumsum(1) - 1).clamp(min=0)
        out = lm.model(input_ids=ids.to(lm.device), attention_mask=attn.to(lm.device),
                       position_ids=position_ids.to(lm.device), output_hidden_states="residual" in sites,
                       use_cache=False)
        for b, j in enumerate(batch):
            at = pad_offset(lm, lengths[j], width)
            first = lengths[j] - 1 if position == "last" else int(encoded.completion_start[j])
            span = slice(at + first, at + lengths[j])
            if "residual" in sites:
                store("residual", j, torch.stack([h[b, span].float().mean(0) for h in out.hidden_states]))
            if "heads" in sites:
                heads = torch.stack([c[b, span].float().mean(0) for c in captured])
                store("heads", j, heads.reshape(len(captured), layout.num_heads, -1))

    handles = []
    if "heads" in sites:
        handles = [p.register_forward_pre_hook(make_hook(i), with_kwargs=True) for i, p in enumerate(layout.out_projs)]
    try:
        with torch.inference_mode():
            run_with_backoff(lm, length_batches(lengths, batch_tokens or default_batch_tokens(lm)), run)
    finally:
        for handle in handles:
            handle.remove()
    return result
