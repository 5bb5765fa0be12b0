"""Prefix-tree rows: the packing shared by the scoring engine and hidden-state extraction.

Several (prompt, responses) examples are packed into one row whose positions are the nodes of a
prefix tree: each distinct token prefix of every `prompt + response` is one node, its position
id is its depth and it attends to exactly its ancestors, so every sequence is computed exactly
as if it were alone while a prompt shared by several responses (and a common preamble of the
examples sharing a row) is computed once. A row runs either unpadded with tree attention
(`tree_inputs`, see `genies.models.tree_attention`) or padded with a dense 4-D ancestor mask
(`dense_inputs`), the fallback that works for every architecture.

It lives apart from both users so that each imports only this (an intervention's code
fingerprint follows imports): the scoring engine reads the nodes that predict response tokens,
extraction reads the nodes of each text (`TreeRow.paths`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from genies.models.base import LoadedModel, pad_token_id
from genies.models.batching import common_prefix_length
from genies.models.tree_attention import TreeAttentionPlan, plan_segments

CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 32768
ROW_TOKENS = 384  # nodes per dense prefix-tree row: short examples share rows, long ones stand alone (PERFORMANCE.md)
ATTENTION_CHOICES = ("auto", "tree", "dense")


def check_attention(attention: str) -> str:
    """`attention` itself if it names an attention path, else a ValueError listing the choices."""
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}; got {attention!r}")
    return attention


def default_batch_tokens(lm: LoadedModel) -> int:
    """Tokens (tree nodes, or padded tokens on the dense path) per forward pass on the model's device."""
    return GPU_BATCH_TOKENS if lm.device.type == "cuda" else CPU_BATCH_TOKENS


@dataclass(frozen=True)
class TokenizedExample:
    prompt: list[int]
    responses: list[list[int]]  # the scoring engine's end with EOS
    truncated: int


@dataclass
class TreeRow:
    """Several examples packed as one prefix tree: every distinct token prefix is one position.

    Node order is creation order, so a node's ancestors always come before it; the attention
    mask lets each node see exactly its ancestors and itself, and its position id is its depth.
    A prompt shared by several responses, a common prompt preamble (the Alpaca header) or a
    common response opening is therefore computed once.
    """

    tokens: list[int]
    depth: list[int]
    parent: list[int]
    examples: list[int]
    pred: list[int]  # node whose output predicts each response token (scoring)
    targets: list[int]
    owner: list[int]  # flat response number (in example order within the row) of each response token
    runs: list[tuple[int, int]]  # [start, end) of the new nodes of each walk: chains for tree attention
    paths: list[list[int]] = field(default_factory=list)  # per flat response: nodes of prompt + response

    @classmethod
    def build(cls, tokenized: Sequence[TokenizedExample], members: list[int]) -> TreeRow:
        row = cls([], [], [], members, [], [], [], [])
        children: dict[tuple[int, int], int] = {}

        def walk(node: int, ids: Sequence[int]) -> list[int]:
            path = []
            first_new = len(row.tokens)
            for tok in ids:
                child = children.get((node, tok))
                if child is None:
                    child = children[(node, tok)] = len(row.tokens)
                    row.tokens.append(tok)
                    row.parent.append(node)
                    row.depth.append(row.depth[node] + 1 if node >= 0 else 0)
                path.append(child)
                node = child
            if len(row.tokens) > first_new:  # a new node has no children yet, so new nodes form one chain
                row.runs.append((first_new, len(row.tokens)))
            return path

        n_resp = 0
        for i in members:
            t = tokenized[i]
            prompt_path = walk(-1, t.prompt)
            last = prompt_path[-1] if prompt_path else -1  # an empty prompt: extraction only, nothing is predicted
            for response in t.responses:
                path = walk(last, response)
                row.pred.extend([last, *path[:-1]])
                row.targets.extend(response)
                row.owner.extend([n_resp] * len(response))
                row.paths.append(prompt_path + path)
                n_resp += 1
        return row

    def ancestors(self, width: int, offset: int) -> np.ndarray:
        """[width, width] bool: node i may attend to node j (j is i or an ancestor); pads see themselves."""
        allowed = np.zeros((width, width), dtype=bool)
        for i, parent in enumerate(self.parent):
            if parent >= 0:
                allowed[offset + i, offset: offset + i] = allowed[offset + parent, offset: offset + i]
            allowed[offset + i, offset + i] = True
        pads = [j for j in range(width) if not offset <= j < offset + len(self.tokens)]
        allowed[pads, pads] = True
        return allowed


def pack_rows(tokenized: Sequence[TokenizedExample], row_tokens: int) -> list[list[int]]:
    """Group examples into prefix-tree rows of at most about `row_tokens` nodes.

    Sorting by prompt ids puts identical prompts and shared preambles next to each other, and
    in a sorted list the longest prefix shared with any earlier prompt is the one shared with
    the previous prompt, so the row's node count is tracked (as an upper bound) without
    building trees. Longer rows share more; with the dense mask they also cost attention
    quadratic in row length, with tree attention they do not.
    """
    order = sorted(range(len(tokenized)), key=lambda i: tokenized[i].prompt)
    rows: list[list[int]] = []
    size = 0
    prev: Sequence[int] = ()
    for i in order:
        t = tokenized[i]
        own = len(t.prompt) + sum(len(r) for r in t.responses)
        extra = own - common_prefix_length(prev, t.prompt) if rows else own
        if not rows or size + extra > row_tokens:
            rows.append([i])
            size = own
        else:
            rows[-1].append(i)
            size += extra
        prev = t.prompt
    return rows


def length_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Indices sorted by length, grouped so that rows x longest row <= batch_tokens (>= 1 row)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for idx in order:
        if current and (len(current) + 1) * lengths[idx] > batch_tokens:
            batches.append(current)
            current = []
        current.append(idx)
    if current:
        batches.append(current)
    return batches


def pad_offset(lm: LoadedModel, length: int, width: int) -> int:
    """Where a sequence of `length` starts in a padded row of `width`, per the tokenizer's padding side."""
    return width - length if lm.tokenizer.padding_side == "left" else 0


def dense_inputs(lm: LoadedModel, rows: Sequence[TreeRow]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded ids, position ids (depths) and the additive 4-D ancestor mask of a batch of rows."""
    width = max(len(r.tokens) for r in rows)
    ids = np.full((len(rows), width), pad_token_id(lm), dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    allowed = np.empty((len(rows), width, width), dtype=bool)
    for b, row in enumerate(rows):
        at = pad_offset(lm, len(row.tokens), width)
        ids[b, at: at + len(row.tokens)] = row.tokens
        pos[b, at: at + len(row.tokens)] = row.depth
        allowed[b] = row.ancestors(width, at)
    mask = torch.zeros(allowed.shape, dtype=lm.dtype).masked_fill_(~torch.from_numpy(allowed), torch.finfo(lm.dtype).min)
    return (torch.from_numpy(ids).to(lm.device), torch.from_numpy(pos).to(lm.device), mask[:, None].to(lm.device))


def tree_inputs(lm: LoadedModel, row: TreeRow) -> tuple[torch.Tensor, torch.Tensor, TreeAttentionPlan]:
    """Unpadded ids and position ids of one tree, and its segment-wise attention plan."""
    ids = torch.tensor([row.tokens], device=lm.device)
    pos = torch.tensor([row.depth], device=lm.device)
    return ids, pos, plan_segments(row.parent, row.runs, dtype=lm.dtype, device=lm.device)


def probe_row(vocab: int) -> TreeRow:
    """A small tree with every case a packer meets (a prompt with two responses that share their
    opening, a second prompt sharing the first one's opening), for the per-model checks that a
    fast path equals the dense one."""
    ids = [[(3 + t) % vocab for t in seq] for seq in ([1, 2, 3, 4], [5, 6], [5, 7, 8], [1, 2, 9], [10])]
    tokenized = [TokenizedExample(ids[0], [ids[1], ids[2]], 0), TokenizedExample(ids[3], [ids[4]], 0)]
    return TreeRow.build(tokenized, [0, 1])


def checked_once(cache: weakref.WeakKeyDictionary, model: torch.nn.Module, check: Callable[[], bool]) -> bool:
    """The result of a per-model fast-path check, computed on the model's first use only."""
    if model not in cache:
        cache[model] = check()
    return cache[model]


def agrees(lm: LoadedModel, got: torch.Tensor, want: torch.Tensor) -> bool:
    """Whether a fast path reproduces the reference path, within the rounding of the model's dtype."""
    tol = 1e-4 if lm.dtype == torch.float32 else 2e-2
    return torch.allclose(got, want, atol=tol * max(1.0, want.abs().max().item()), rtol=0)
