"""Prefix-tree packing without a model: rows, masks, batches and inputs checked against hand-computed
answers or the textbook ancestor definition (fakes stand in for the model where only its device,
dtype or tokenizer is read)."""

from __future__ import annotations

import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genies.models.prefix_tree import (CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, TokenizedExample, TreeRow, agrees,
                                       check_attention, checked_once, default_batch_tokens, dense_inputs,
                                       length_batches, pack_rows, pad_offset, probe_row, tree_inputs)


def _fake_lm(padding_side: str = "left", dtype: torch.dtype = torch.float32, device: str = "cpu") -> SimpleNamespace:
    """What the packing helpers read of a LoadedModel: tokenizer padding, pad id, dtype, device."""
    tokenizer = SimpleNamespace(pad_token_id=99, eos_token_id=98, padding_side=padding_side)
    return SimpleNamespace(name="fake", tokenizer=tokenizer, dtype=dtype, device=torch.device(device))


def _ancestor_mask(parent: list[int], width: int, offset: int) -> np.ndarray:
    """Textbook: node i (at offset + i) sees j iff j is i or an ancestor; a pad sees only itself."""
    allowed = np.zeros((width, width), dtype=bool)
    for i in range(len(parent)):
        j = i
        while j >= 0:
            allowed[offset + i, offset + j] = True
            j = parent[j]
    for p in range(width):
        if not offset <= p < offset + len(parent):
            allowed[p, p] = True
    return allowed


# Three examples: a prompt with two responses sharing their opening, a prompt sharing the first
# one's opening with a duplicate response (a walk that adds no node), and an empty prompt.
EXAMPLES = [
    TokenizedExample([1, 2, 3], [[4, 5], [4, 6]], 0),
    TokenizedExample([1, 2, 7], [[8], [8]], 0),
    TokenizedExample([], [[9, 10]], 0),
]


def test_build_known_answer() -> None:
    row = TreeRow.build(EXAMPLES, [0, 1, 2])
    assert row.examples == [0, 1, 2]
    # nodes: 0-2 the first prompt, 3-4 its first response, 5 the second one's own tail, 6 the
    # second prompt's own token under node 1, 7 its response, 8-9 the empty prompt's response (a root)
    assert row.tokens == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert row.parent == [-1, 0, 1, 2, 3, 3, 1, 6, -1, 8]
    assert row.depth == [0, 1, 2, 3, 4, 4, 2, 3, 0, 1]
    assert row.runs == [(0, 3), (3, 5), (5, 6), (6, 7), (7, 8), (8, 10)]  # the duplicate [8] adds none
    assert row.pred == [2, 3, 2, 3, 6, 6, -1, 8]  # the node before each response token
    assert row.targets == [4, 5, 4, 6, 8, 8, 9, 10]
    assert row.owner == [0, 0, 1, 1, 2, 3, 4, 4]
    assert row.paths == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 5], [0, 1, 6, 7], [0, 1, 6, 7], [8, 9]]


def test_build_takes_only_its_members_in_their_order() -> None:
    row = TreeRow.build(EXAMPLES, [1])
    assert row.examples == [1]
    assert row.tokens == [1, 2, 7, 8] and row.depth == [0, 1, 2, 3] and row.parent == [-1, 0, 1, 2]
    assert row.pred == [2, 2] and row.owner == [0, 1] and row.runs == [(0, 3), (3, 4)]


@pytest.mark.parametrize(("width", "offset"), [(10, 0), (13, 0), (13, 3)])
def test_ancestors_are_the_textbook_mask(width: int, offset: int) -> None:
    """Exact, including the pads on either side of the row (right padding, left padding)."""
    row = TreeRow.build(EXAMPLES, [0, 1, 2])
    allowed = row.ancestors(width, offset)
    assert allowed.dtype == bool
    np.testing.assert_array_equal(allowed, _ancestor_mask(row.parent, width, offset))


def test_pack_rows_fills_rows_up_to_the_budget_counting_shared_prefixes() -> None:
    tokenized = [
        TokenizedExample([9], [[1]], 0),  # 2 nodes
        TokenizedExample([1, 2, 5], [[6], [7]], 0),  # 5 nodes, 2 of them shared with [1, 2, 3]: 3 new
        TokenizedExample([1, 2, 3], [[4]], 0),  # 4 nodes
        TokenizedExample([9, 1], [[2]], 0),  # 3 nodes, 1 shared with [9]: 2 new
    ]
    # sorted by prompt: 2, 1, 0, 3; 4 + 3 = 7 nodes fit a budget of exactly 7, 7 + 2 do not, and
    # the new row counts from the example that opens it (2), so 2 + 2 fit
    assert pack_rows(tokenized, 7) == [[2, 1], [0, 3]]
    assert pack_rows(tokenized, 6) == [[2], [1], [0, 3]]
    assert pack_rows(tokenized, 9) == [[2, 1, 0], [3]]
    assert pack_rows(tokenized, 11) == [[2, 1, 0, 3]]
    assert pack_rows(tokenized, 1) == [[2], [1], [0], [3]]  # an example larger than the budget stands alone
    assert pack_rows([], 10) == []


def test_length_batches_bound_rows_times_longest() -> None:
    lengths = [5, 2, 3, 2]
    assert length_batches(lengths, 4) == [[1, 3], [2], [0]]  # 2 rows x 2 = 4 fits exactly
    assert length_batches(lengths, 9) == [[1, 3, 2], [0]]  # 3 x 3 = 9 fits, 4 x 5 does not
    assert length_batches(lengths, 20) == [[1, 3, 2, 0]]
    assert length_batches(lengths, 1) == [[1], [3], [2], [0]]  # a row longer than the budget stands alone
    assert length_batches([], 4) == []


def test_pad_offset_follows_the_padding_side() -> None:
    assert pad_offset(_fake_lm("left"), 3, 8) == 5
    assert pad_offset(_fake_lm("right"), 3, 8) == 0
    assert pad_offset(_fake_lm("left"), 8, 8) == 0


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dense_inputs_known_answer(side: str, dtype: torch.dtype) -> None:
    rows = [TreeRow.build(EXAMPLES, [0, 1]), TreeRow.build(EXAMPLES, [2])]  # 8 and 2 nodes
    ids, pos, mask = dense_inputs(_fake_lm(side, dtype), rows)
    short_at = 6 if side == "left" else 0
    want_ids = [[1, 2, 3, 4, 5, 6, 7, 8], [99] * 8]
    want_ids[1][short_at: short_at + 2] = [9, 10]
    want_pos = [[0, 1, 2, 3, 4, 4, 2, 3], [0] * 8]
    want_pos[1][short_at: short_at + 2] = [0, 1]
    assert ids.tolist() == want_ids and ids.dtype == torch.int64
    assert pos.tolist() == want_pos and pos.dtype == torch.int64
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == dtype
    for b, (row, at) in enumerate(zip(rows, (0, short_at))):
        allowed = torch.from_numpy(_ancestor_mask(row.parent, 8, at))
        want = torch.zeros(8, 8, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        assert torch.equal(mask[b, 0], want)


def test_inputs_go_to_the_models_device() -> None:
    """The meta device stands in for a GPU: every tensor handed to the model must be on its device."""
    row = TreeRow.build(EXAMPLES, [0, 1])
    assert [t.device.type for t in dense_inputs(_fake_lm(device="meta"), [row])] == ["meta"] * 3
    ids, pos, plan = tree_inputs(_fake_lm(device="meta"), row)
    assert ids.device.type == pos.device.type == "meta"
    gathered = plan.segments[4]  # node 7 under node 6, whose ancestors 0 1 6 are not contiguous
    assert gathered.keys.device.type == gathered.mask.device.type == "meta"


def test_tree_inputs_known_answer() -> None:
    row = TreeRow.build(EXAMPLES, [0, 1, 2])
    ids, pos, plan = tree_inputs(_fake_lm(dtype=torch.bfloat16), row)
    assert ids.tolist() == [row.tokens] and pos.tolist() == [row.depth]
    assert plan.n_nodes == 10 and [(s.start, s.end) for s in plan.segments] == row.runs
    nodes = list(range(10))
    keys = [nodes[s.keys] if isinstance(s.keys, slice) else s.keys.tolist() for s in plan.segments]
    assert keys == [[0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 3, 5], [0, 1, 6], [0, 1, 6, 7], [8, 9]]
    assert plan.segments[1].mask.dtype == torch.bfloat16


def test_check_attention_names_the_choices() -> None:
    assert [check_attention(a) for a in ("auto", "tree", "dense")] == ["auto", "tree", "dense"]
    with pytest.raises(ValueError) as err:
        check_attention("flash")
    assert str(err.value) == "attention must be one of auto, tree, dense; got 'flash'"


def test_default_batch_tokens_by_device() -> None:
    assert default_batch_tokens(SimpleNamespace(device=torch.device("cuda", 0))) == GPU_BATCH_TOKENS
    assert default_batch_tokens(SimpleNamespace(device=torch.device("cpu"))) == CPU_BATCH_TOKENS
    assert GPU_BATCH_TOKENS > CPU_BATCH_TOKENS


def _response_paths(row: TreeRow) -> list[tuple[list[int], list[int]]]:
    """(prompt nodes, response nodes) of each flat response of a row."""
    out = []
    for r, path in enumerate(row.paths):
        last = row.pred[row.owner.index(r)]  # the prompt's last node predicts the first response token
        cut = row.depth[last] + 1
        out.append((path[:cut], path[cut:]))
    return out


@pytest.mark.parametrize("vocab", [32, 256, 50_000])
def test_probe_row_has_every_case_a_packer_meets(vocab: int) -> None:
    row = probe_row(vocab)
    assert row.examples == [0, 1] and all(isinstance(t, int) and 0 <= t < vocab for t in row.tokens)
    (p0, r0), (p1, r1), (p2, r2) = _response_paths(row)
    # a prompt with two responses that share their opening, then diverge
    assert p0 == p1 and r0[0] == r1[0] and set(r0) - set(r1) and set(r1) - set(r0)
    # a second prompt sharing the first one's opening (one root), then diverging from it
    assert p2 != p0 and p2[0] == p0[0] and p2[-1] not in p0 and p0[-1] not in p2
    assert row.parent.count(-1) == 1 and len(r2) >= 1


def test_checked_once_caches_per_model() -> None:
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    a, b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    calls = []

    def check(result: bool):
        return lambda: calls.append(result) or result

    assert checked_once(cache, a, check(False)) is False
    assert checked_once(cache, a, check(True)) is False  # the first answer stands, not recomputed
    assert checked_once(cache, b, check(True)) is True
    assert calls == [False, True]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
def test_agrees_within_the_dtypes_rounding(dtype: torch.dtype, tol: float) -> None:
    lm = _fake_lm(dtype=dtype)
    want = torch.tensor([0.5, -0.25], dtype=torch.float64)  # |want| <= 1: the tolerance is absolute
    assert agrees(lm, want + 0.9 * tol, want)
    assert not agrees(lm, want + 1.1 * tol, want)
    big = torch.tensor([100.0, -3.0], dtype=torch.float64)  # scaled by the largest |want|, no relative term
    assert agrees(lm, big + 0.9 * tol * 100, big)
    assert not agrees(lm, big + torch.tensor([1.05 * tol * 100, 0.0], dtype=torch.float64), big)
