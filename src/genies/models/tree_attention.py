"""Attention over a prefix-tree packed sequence that computes only what each node can see.

The scoring engine packs many (prompt, responses) examples into one sequence whose positions
are the nodes of a prefix tree (see `genies.models.scoring`). With a dense 4-D mask, attention
costs the whole square of the sequence although a node sees only its ancestors: the other
examples and its sibling responses are masked out but still computed. This module computes
attention *per segment* instead: a segment is a run of consecutive nodes created by one walk
down the tree (a new prompt, or the new tail of a response), so its nodes form a chain whose
keys are the chain's ancestors followed by the chain itself, causally. Per layer that is one
small SDPA call per segment over exactly the keys it needs, so packing many examples into one
long unpadded sequence costs no extra attention, and padding disappears.

It plugs into transformers through the `AttentionInterface` under the name `genies_tree`: the
model's attention implementation is switched only inside `tree_attention(model)`, the plan is
passed to every layer as the `tree_plan` keyword argument, and a forward without a plan falls
back to SDPA. Models whose attention is not plain softmax attention over all visible keys
(sliding windows, logit soft-capping, attention sinks, ALiBi) are left on the dense-mask path;
`genies.models.scoring` additionally checks the result against that path once per model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

NAME = "genies_tree"

# config attributes that change attention beyond "softmax over the visible keys"
_UNSUPPORTED_CONFIG = ("attn_logit_softcapping", "final_logit_softcapping", "alibi", "use_alibi", "sliding_window_pattern")


@dataclass(frozen=True)
class TreeSegment:
    """Nodes [start, end) form a chain; they attend to `keys` (ancestors, then the chain itself)."""

    start: int
    end: int
    keys: torch.Tensor | slice  # node indices, or a slice when they are contiguous (no copy)
    mask: torch.Tensor | None  # additive [end - start, n_keys]; None when plain causal suffices


@dataclass(frozen=True)
class TreeAttentionPlan:
    """How every node of one packed sequence attends; shared by all layers of a forward."""

    segments: tuple[TreeSegment, ...]
    n_nodes: int


def plan_segments(parent: Sequence[int], runs: Sequence[tuple[int, int]], *, dtype: torch.dtype,
                  device: torch.device) -> TreeAttentionPlan:
    """Build the plan of a tree given each node's parent (-1 for roots) and its chains of new nodes.

    `runs` are the [start, end) ranges created by one walk each: inside a run every node's
    parent is the node before it, and the run's first node hangs off an earlier node (or is a
    root). Together the runs must cover every node exactly once.
    """
    segments = []
    covered = 0
    for start, end in runs:
        covered += end - start
        ancestors = []
        node = parent[start]
        while node >= 0:
            ancestors.append(node)
            node = parent[node]
        ancestors.reverse()
        n_own = end - start
        if ancestors and ancestors == list(range(ancestors[0], start)):
            keys: torch.Tensor | slice = slice(ancestors[0], end)
        elif ancestors:
            keys = torch.tensor([*ancestors, *range(start, end)], dtype=torch.long, device=device)
        else:
            keys = slice(start, end)
        mask = None
        if ancestors:
            own = torch.ones(n_own, n_own, dtype=torch.bool, device=device).triu_(1)
            mask = torch.zeros(n_own, len(ancestors) + n_own, dtype=dtype, device=device)
            mask[:, len(ancestors):].masked_fill_(own, torch.finfo(dtype).min)
        segments.append(TreeSegment(start, end, keys, mask))
    if covered != len(parent):
        raise ValueError(f"tree plan: runs cover {covered} nodes but the tree has {len(parent)}")
    return TreeAttentionPlan(tuple(segments), len(parent))


def tree_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                           tree_plan: TreeAttentionPlan | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """`AttentionInterface` function: segment-wise attention when a plan is given, else SDPA.

    query [1, heads, nodes, dim], key/value [1, kv_heads, nodes, dim]; returns [1, nodes, heads, dim].
    """
    if tree_plan is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or query.shape[2] != tree_plan.n_nodes:
        raise ValueError(f"tree attention expects one packed sequence of {tree_plan.n_nodes} nodes, "
                         f"got query of shape {tuple(query.shape)}")
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])
    for seg in tree_plan.segments:
        q = query[:, :, seg.start: seg.end]
        if isinstance(seg.keys, slice):
            k, v = key[:, :, seg.keys], value[:, :, seg.keys]
        else:
            k, v = key.index_select(2, seg.keys), value.index_select(2, seg.keys)
        o = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=seg.mask, dropout_p=dropout, is_causal=seg.mask is None, scale=scaling)
        out[:, seg.start: seg.end] = o.transpose(1, 2)
    return out, None


AttentionInterface.register(NAME, tree_attention_forward)


def supports_tree_attention(model: torch.nn.Module) -> bool:
    """Whether the model dispatches attention through `AttentionInterface` as plain softmax attention."""
    config = getattr(model, "config", None)
    if config is None or not getattr(model, "_supports_attention_backend", False):
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False
    if any(getattr(config, name, None) for name in _UNSUPPORTED_CONFIG):
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False
    return not config.sub_configs


@contextmanager
def tree_attention(model: torch.nn.Module) -> Iterator[None]:
    """Route the model's attention through `tree_attention_forward` for the duration of the block."""
    previous = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
