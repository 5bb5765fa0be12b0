"""Tree attention equals dense masked attention over the same prefix tree (known answers)."""

from __future__ import annotations

import pytest
import torch

from genies.models.tree_attention import plan_segments, supports_tree_attention, tree_attention, tree_attention_forward
from genies.models.testing import tiny_model

# nodes: 0-1-2 prompt, 3-4 a response under 2, 5 a second response under 2, 6-7 under 4 (a
# response sharing the opening 3-4), 8-9 a second prompt (a root)
PARENT = [-1, 0, 1, 2, 3, 2, 4, 6, -1, 8]
RUNS = [(0, 3), (3, 5), (5, 6), (6, 8), (8, 10)]


def _ancestor_mask(parent: list[int]) -> torch.Tensor:
    """The textbook definition: node i sees j iff j is i or one of its ancestors."""
    n = len(parent)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        j = i
        while j >= 0:
            allowed[i, j] = True
            j = parent[j]
    return allowed


def test_plan_lists_exactly_the_ancestors_of_each_chain() -> None:
    plan = plan_segments(PARENT, RUNS, dtype=torch.float32, device=torch.device("cpu"))
    nodes = list(range(len(PARENT)))
    keys = [nodes[s.keys] if isinstance(s.keys, slice) else s.keys.tolist() for s in plan.segments]
    assert keys == [[0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 5], [0, 1, 2, 3, 4, 6, 7], [8, 9]]
    assert isinstance(plan.segments[1].keys, slice)  # contiguous ancestors: a view, no gather
    assert not isinstance(plan.segments[2].keys, slice)  # 0 1 2 then 5: gathered
    assert plan.segments[0].mask is None and plan.segments[4].mask is None  # roots: plain causal
    blocked = plan.segments[3].mask == torch.finfo(torch.float32).min
    assert blocked.tolist() == [[False] * 6 + [True], [False] * 7]  # node 6 cannot see node 7
    with pytest.raises(ValueError, match="cover 9 nodes but the tree has 10"):
        plan_segments(PARENT, RUNS[:-1] + [(8, 9)], dtype=torch.float32, device=torch.device("cpu"))


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_tree_attention_equals_dense_masked_attention(kv_heads: int) -> None:
    torch.manual_seed(0)
    heads, n, dim = 4, len(PARENT), 8
    q, k, v = torch.randn(1, heads, n, dim), torch.randn(1, kv_heads, n, dim), torch.randn(1, kv_heads, n, dim)
    plan = plan_segments(PARENT, RUNS, dtype=torch.float32, device=torch.device("cpu"))
    out, weights = tree_attention_forward(torch.nn.Module(), q, k, v, None, scaling=0.3, tree_plan=plan)
    rep = heads // kv_heads
    dense = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=_ancestor_mask(PARENT), scale=0.3)
    assert weights is None
    torch.testing.assert_close(out, dense.transpose(1, 2), atol=1e-6, rtol=0)


def test_the_context_switches_attention_and_always_restores_it(tmp_path) -> None:
    model = tiny_model(tmp_path / "llama", "llama").model
    assert supports_tree_attention(model)
    before = model.config._attn_implementation
    with pytest.raises(RuntimeError, match="boom"), tree_attention(model):
        assert model.config._attn_implementation == "genies_tree"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == before


def test_sliding_window_models_are_not_supported(tmp_path) -> None:
    model = tiny_model(tmp_path / "qwen2", "qwen2").model
    assert supports_tree_attention(model)
    model.config.use_sliding_window, model.config.sliding_window = True, 4
    assert not supports_tree_attention(model)


@pytest.mark.parametrize("arch", ["gpt2", "opt", "llama"])
def test_the_engines_tree_forward_equals_each_sequence_alone(tmp_path, arch: str) -> None:
    """Every node of a packed tree, fed the engine's own tree inputs (`prefix_tree.tree_inputs`: ids, position
    ids, plan), gets the logits of its path run alone from position 0. On learned absolute
    positions (gpt2, opt) this checks the position ids as well, which a rotary model (llama)
    cannot: a constant shift of every position leaves rotary attention unchanged."""
    from genies.models.prefix_tree import TokenizedExample, TreeRow, tree_inputs

    lm = tiny_model(tmp_path / arch, arch)
    prompts = [[3, 4, 5, 6], [3, 4, 11]]  # a shared preamble
    responses = [[[7, 8], [7, 9, 10]], [[12]]]  # a shared response opening
    tokenized = [TokenizedExample(p, r, 0) for p, r in zip(prompts, responses)]
    row = TreeRow.build(tokenized, [0, 1])
    paths = []
    for node in range(len(row.tokens)):
        path, j = [], node
        while j >= 0:
            path.append(row.tokens[j])
            j = row.parent[j]
        paths.append(path[::-1])
    # the tree holds exactly the distinct prefixes of the prompt + response sequences
    prefixes = {tuple(p + r)[:n] for p, rs in zip(prompts, responses) for r in rs for n in range(1, len(p + r) + 1)}
    assert sorted(map(tuple, paths)) == sorted(prefixes)
    with torch.inference_mode(), tree_attention(lm.model):
        ids, pos, plan = tree_inputs(lm, row)
        tree = lm.model(input_ids=ids, position_ids=pos, tree_plan=plan, use_cache=False).logits[0]
    with torch.inference_mode():
        for node, path in enumerate(paths):
            alone = lm.model(input_ids=torch.tensor([path]), use_cache=False).logits[0, -1]
            torch.testing.assert_close(tree[node], alone, atol=1e-4, rtol=0, msg=f"node {node}, path {path}")
