"""Log-probability of each response given its prompt, for whole distributions, fast.

Tokenization (the original zero-shot scorer's, docs/methods.md#zero_shot): the prompt and
`response + EOS` are tokenized *separately* with `add_special_tokens=False` (no BOS) and their
ids concatenated. A tokenizer could merge characters across the prompt/response boundary if the
texts were joined first; tokenizing separately keeps every response's tokens identical whatever
prompt precedes it, and is exactly what both the engine and the naive reference score.

Engine: examples are packed into prefix-tree rows. Each distinct token prefix of every
`prompt + response + EOS` in a row is one position; the attention mask lets a position see
exactly its ancestors, and its position id is its depth, so every sequence is computed exactly
as if it were alone. A prompt's forward pass is thus computed once and shared by all of its
responses, and so are identical prompts, common prompt preambles and common response openings
of the examples sharing a row (examples are sorted by prompt ids so that those land together).
The LM head and log-softmax run only at the positions that predict response tokens.

Attention over a tree, two ways. *Tree attention* (the default on CPU, see
`genies.models.tree_attention`): one unpadded tree of up to `batch_tokens` nodes per forward,
each chain of new nodes attending only to its ancestors, so nothing masked is computed.
*Dense*: rows of up to `row_tokens` nodes, padded and bucketed by length into batches of about
`batch_tokens` tokens, with a 4-D ancestor mask through the model's own attention; it works for
every architecture and is the fallback (and the default on GPUs, where a dense masked kernel is
cheap and many small per-chain calls are not). Both give the naive reference's numbers.

Context overflow: when prompt + the longest response + EOS exceeds the context, the prompt is
truncated from the left (its end, next to the response, is kept). Every affected example is
counted in `ResponseScores.truncated_prompt_tokens` and logged; nothing is dropped.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from genies.data.schema import Example
from genies.models.base import LoadedModel, context_length, pad_token_id, tokenize
from genies.models.batching import run_with_backoff
from genies.models.prefix_tree import (ROW_TOKENS, TokenizedExample, TreeRow, agrees, check_attention, checked_once,
                                       default_batch_tokens, dense_inputs, length_batches, pack_rows, pad_offset,
                                       probe_row, tree_inputs)
from genies.models.tree_attention import supports_tree_attention, tree_attention

log = logging.getLogger(__name__)

HEAD_CHUNK = 128  # positions per LM-head chunk: bounds the [chunk, vocab] logits buffer


@dataclass(frozen=True)
class ResponseScores:
    """Scores of one example's responses, in the example's response order."""

    sum: np.ndarray  # float64 [n_responses]: log P(response tokens + EOS | prompt)
    mean: np.ndarray  # float64 [n_responses]: sum / n_tokens
    n_tokens: np.ndarray  # int64 [n_responses]: scored tokens (response tokens + EOS)
    truncated_prompt_tokens: int = 0  # prompt tokens removed from the left to fit the context
    padded_length: int = 0  # L: prompt + the longest response + EOS, the length the original padded to

    @property
    def truncated(self) -> bool:
        return self.truncated_prompt_tokens > 0


def count_truncated(scores: Sequence[ResponseScores]) -> int:
    """How many examples had their prompt truncated to fit the context."""
    return sum(s.truncated for s in scores)


def encode_examples(lm: LoadedModel, examples: Sequence[Example], name: Callable[[int], str] = "example {}".format
                    ) -> list[TokenizedExample]:
    """Token ids as the original zero-shot scorer made them, untruncated: the prompt, and each
    response + EOS, tokenized apart without BOS. The one tokenization of prompts and responses in genies: the reward-model
    methods use it too. A text the tokenizer cannot encode raises a `JobError` that names it
    "`name(i)`, prompt" or "`name(i)`, response k"."""
    eos = lm.tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"model {lm.name}: tokenizer has no EOS token; every response is scored with EOS appended")
    if not examples:
        return []
    prompts = tokenize(lm.tokenizer, [ex.prompt for ex in examples], lambda i: f"{name(i)}, prompt")["input_ids"]
    owners = [(i, k) for i, ex in enumerate(examples) for k in range(len(ex.responses))]
    flat_ids = tokenize(lm.tokenizer, [r for ex in examples for r in ex.responses],
                        lambda j: f"{name(owners[j][0])}, response {owners[j][1]}")["input_ids"]
    out, cursor = [], 0
    for prompt, ex in zip(prompts, examples):
        responses = [list(ids) + [eos] for ids in flat_ids[cursor: cursor + len(ex.responses)]]
        out.append(TokenizedExample(list(prompt), responses, 0))
        cursor += len(ex.responses)
    return out


def tokenize_examples(lm: LoadedModel, examples: Sequence[Example], max_length: int | None = None
                      ) -> list[TokenizedExample]:
    """`encode_examples`, prompts left-truncated so that each example fits the context."""
    limit = context_length(lm, max_length)
    out = []
    for i, tok in enumerate(encode_examples(lm, examples)):
        if not tok.prompt:
            raise ValueError(f"example {i}: the prompt is empty after tokenization; the first response token "
                             "needs a preceding prompt token to be scored")
        if not tok.responses:
            raise ValueError(f"example {i}: no responses to score")
        longest = max(len(r) for r in tok.responses)
        keep = limit - longest
        if keep < 1:
            raise ValueError(f"example {i}: a response has {longest} tokens with EOS but the context is {limit}; "
                             "it cannot be scored with any prompt (raise max_length or shorten the response)")
        removed = max(0, len(tok.prompt) - keep)
        out.append(TokenizedExample(tok.prompt[removed:], tok.responses, removed))
    return out


def _finish(tok: TokenizedExample, sums: np.ndarray) -> ResponseScores:
    n = np.array([len(r) for r in tok.responses], dtype=np.int64)
    return ResponseScores(sum=sums, mean=sums / n, n_tokens=n, truncated_prompt_tokens=tok.truncated,
                          padded_length=len(tok.prompt) + int(n.max()))


def _report_truncation(tokenized: Sequence[TokenizedExample], limit: int) -> None:
    n = sum(t.truncated > 0 for t in tokenized)
    if n:
        log.warning("%d of %d examples had their prompt truncated from the left to fit the %d-token context",
                    n, len(tokenized), limit)


class _OutputHead:
    """hidden states -> logits without running the LM head over prompt positions.

    The decoder's last hidden state times the output embedding equals the model's logits for
    most architectures, but some post-process logits (soft-capping, scaling). This is checked
    once per model against a full forward; if it does not match, the full model is used.
    """

    def __init__(self, lm: LoadedModel) -> None:
        model = lm.model
        self.model = model
        self.decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"model {lm.name}: has no language-model head (a sequence-classification reward "
                             "model?); log-probability scoring needs a causal LM")
        if self.decoder is None or self.decoder is model:
            self.split = False
        else:
            self.split = checked_once(_SPLIT_OK, model, lambda: self._split_matches(lm))

    @torch.inference_mode()
    def _split_matches(self, lm: LoadedModel) -> bool:
        ids = torch.arange(3, 11, device=lm.device).remainder(self.head.weight.shape[0]).unsqueeze(0)
        try:
            hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
            split = self.head(hidden).float()
        except Exception:  # an exotic decoder signature: the full-model path is always correct
            return False
        full = self.model(input_ids=ids, use_cache=False).logits.float()
        return agrees(lm, split.to(full.device), full)  # a sharded model's head may sit on another GPU

    def hidden(self, **inputs) -> torch.Tensor:
        """Last hidden states (split path) or logits (fallback path) for every position."""
        if self.split:
            return self.decoder(**inputs, use_cache=False).last_hidden_state
        return self.model(**inputs, use_cache=False).logits

    def token_logprobs(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log P(target) at each selected position, in float32, computed in chunks."""
        out = torch.empty(states.shape[0], dtype=torch.float32, device=states.device)
        for start in range(0, states.shape[0], HEAD_CHUNK):
            chunk = states[start: start + HEAD_CHUNK]
            logits = (self.head(chunk) if self.split else chunk).float()
            picked = logits.gather(1, targets[start: start + HEAD_CHUNK, None].to(logits.device)).squeeze(1)
            # logsumexp in place: the [chunk, vocab] buffer is the largest tensor of the pass, so
            # one fewer full-size temporary matters on memory-bound CPUs
            top = logits.amax(dim=1, keepdim=True)
            lse = logits.sub_(top).exp_().sum(dim=1).log_().add_(top.squeeze(1))
            out[start: start + HEAD_CHUNK] = (picked - lse).to(out.device)
        return out


# model -> whether hidden-state x head equals its logits; weak keys so models can be freed
_SPLIT_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def score_examples(
    lm: LoadedModel,
    examples: Sequence[Example],
    *,
    batch_tokens: int | None = None,
    max_length: int | None = None,
    progress: Callable[[int], None] | None = None,
    attention: str = "auto",
    row_tokens: int = ROW_TOKENS,
) -> list[ResponseScores]:
    """Score every response of every example with shared prefix passes (see module docstring).

    `attention` picks how a packed tree attends: "tree" computes only the blocks each node
    sees (one unpadded tree of up to `batch_tokens` nodes per forward), "dense" uses a 4-D mask
    over padded rows of up to `row_tokens` nodes, and "auto" takes "tree" on CPU when the model
    supports it and matches the dense path, else "dense". `progress`, if given, is called with
    the number of examples finished after each batch.
    """
    tokenized = tokenize_examples(lm, examples, max_length)
    _report_truncation(tokenized, context_length(lm, max_length))
    head = _OutputHead(lm)
    use_tree = _use_tree_attention(lm, head, attention)
    budget = batch_tokens or default_batch_tokens(lm)
    results: list[ResponseScores | None] = [None] * len(tokenized)

    def record(rows: Sequence[TreeRow], sums: Sequence[np.ndarray]) -> None:
        for row, row_sums in zip(rows, sums):
            start = 0
            for i in row.examples:
                n = len(tokenized[i].responses)
                results[i] = _finish(tokenized[i], row_sums[start: start + n])
                start += n
        if progress is not None:
            progress(sum(len(row.examples) for row in rows))

    if use_tree:  # a batch is the examples of one tree; on out-of-memory it splits into two trees

        def run(members: list[int]) -> None:
            row = TreeRow.build(tokenized, members)
            record([row], _score_tree(lm, head, row))

        batches = pack_rows(tokenized, budget)
    else:  # a batch is a list of padded rows
        rows = [TreeRow.build(tokenized, members) for members in pack_rows(tokenized, row_tokens)]

        def run(members: list[int]) -> None:
            batch_rows = [rows[r] for r in members]
            record(batch_rows, _score_dense_rows(lm, head, batch_rows))

        batches = length_batches([len(r.tokens) for r in rows], budget)
    with torch.inference_mode(), (tree_attention(lm.model) if use_tree else nullcontext()):
        run_with_backoff(lm, batches, run)
    return results  # type: ignore[return-value]


def resolve_attention(lm: LoadedModel, attention: str = "auto") -> str:
    """Which attention path `score_examples(lm, ..., attention=attention)` takes: "tree" or "dense"."""
    return "tree" if _use_tree_attention(lm, _OutputHead(lm), attention) else "dense"


def _use_tree_attention(lm: LoadedModel, head: _OutputHead, attention: str) -> bool:
    check_attention(attention)
    if attention == "dense" or (attention == "auto" and lm.device.type != "cpu"):
        return False
    known = checked_once(_TREE_OK, lm.model,
                          lambda: supports_tree_attention(lm.model) and _tree_matches_dense(lm, head))
    if attention == "tree" and not known:
        raise ValueError(f"model {lm.name}: tree attention is not supported for this architecture "
                         "(use attention='dense')")
    return known


# model -> whether tree attention gives the dense path's hidden states; weak keys so models can be freed
_TREE_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.inference_mode()
def _tree_matches_dense(lm: LoadedModel, head: _OutputHead) -> bool:
    """Run a small tree (shared prompt, shared response opening, a second prompt) both ways."""
    row = probe_row(head.head.weight.shape[0])
    ids_t, pos, mask = dense_inputs(lm, [row])
    dense = head.hidden(input_ids=ids_t, position_ids=pos, attention_mask=mask).float()
    try:
        with tree_attention(lm.model):
            ids_t, pos, plan = tree_inputs(lm, row)
            tree = head.hidden(input_ids=ids_t, position_ids=pos, tree_plan=plan).float()
    except Exception:  # an exotic forward signature: the dense path is always correct
        return False
    return tree.shape == dense.shape and agrees(lm, tree, dense)


def _score_tree(lm: LoadedModel, head: _OutputHead, row: TreeRow) -> list[np.ndarray]:
    """One forward pass over one unpadded tree with segment-wise attention."""
    ids, pos, plan = tree_inputs(lm, row)
    states = head.hidden(input_ids=ids, position_ids=pos, tree_plan=plan)
    return _response_sums(head, states, [row], [0])


def _score_dense_rows(lm: LoadedModel, head: _OutputHead, rows: Sequence[TreeRow]) -> list[np.ndarray]:
    """One forward pass over a padded batch of rows with a dense 4-D ancestor mask."""
    ids, pos, mask = dense_inputs(lm, rows)
    states = head.hidden(input_ids=ids, position_ids=pos, attention_mask=mask)
    width = ids.shape[1]
    return _response_sums(head, states, rows, [pad_offset(lm, len(row.tokens), width) for row in rows])


def _response_sums(head: _OutputHead, states: torch.Tensor, rows: Sequence[TreeRow],
                   offsets: Sequence[int]) -> list[np.ndarray]:
    """Per-response log-prob sums per row from the last hidden states (or logits) of a batch."""
    device = states.device  # the last layer's device: not the input's when the model is sharded
    sel_row, sel_pos, targets, owner = [], [], [], []
    n_resp = 0
    for b, (row, at) in enumerate(zip(rows, offsets)):
        sel_row.extend([b] * len(row.pred))
        sel_pos.extend(at + p for p in row.pred)
        targets.extend(row.targets)
        owner.extend(n_resp + o for o in row.owner)
        n_resp += max(row.owner) + 1
    picked = states[torch.tensor(sel_row, device=device), torch.tensor(sel_pos, device=device)]
    logprobs = head.token_logprobs(picked, torch.tensor(targets, device=device))
    sums = torch.zeros(n_resp, dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), logprobs.double())
    sums_np = sums.cpu().numpy()
    out, start = [], 0
    for row in rows:
        n = max(row.owner) + 1
        out.append(sums_np[start: start + n])
        start += n
    return out


def score_examples_naive(
    lm: LoadedModel,
    examples: Sequence[Example],
    *,
    batch_tokens: int | None = None,
    max_length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ResponseScores]:
    """The reference: every prompt + response as its own padded sequence through the full model.

    Same tokenization, truncation, dtype, length bucketing and batch budget as the engine, but
    the prompt is recomputed for every response and the standard `model(...).logits` is taken
    for every position. Used to test the engine and as the benchmark baseline. `progress` is
    called with the number of (prompt, response) sequences finished after each batch.
    """
    tokenized = tokenize_examples(lm, examples, max_length)
    _report_truncation(tokenized, context_length(lm, max_length))
    seqs = [(i, k) for i, t in enumerate(tokenized) for k in range(len(t.responses))]
    lengths = [len(tokenized[i].prompt) + len(tokenized[i].responses[k]) for i, k in seqs]
    sums = [np.zeros(len(t.responses)) for t in tokenized]
    device = lm.device

    def run(batch: list[int]) -> None:
        width = max(lengths[j] for j in batch)
        ids = torch.full((len(batch), width), pad_token_id(lm), dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for b, j in enumerate(batch):
            i, k = seqs[j]
            seq = tokenized[i].prompt + tokenized[i].responses[k]
            at = pad_offset(lm, len(seq), width)
            ids[b, at: at + len(seq)] = torch.tensor(seq)
            attn[b, at: at + len(seq)] = 1
        position_ids = (attn.cumsum(1) - 1).clamp(min=0)
        logits = lm.model(input_ids=ids.to(device), attention_mask=attn.to(device),
                          position_ids=position_ids.to(device), use_cache=False).logits
        for b, j in enumerate(batch):
            i, k = seqs[j]
            p, n = len(tokenized[i].prompt), len(tokenized[i].responses[k])
            at = pad_offset(lm, lengths[j], width)
            rows = logits[b, at + p - 1: at + p + n - 1].float().log_softmax(-1)
            target = torch.tensor(tokenized[i].responses[k], device=device)
            sums[i][k] = rows.gather(1, target[:, None]).double().sum().item()
        if progress is not None:
            progress(len(batch))

    with torch.inference_mode():
        run_with_backoff(lm, length_batches(lengths, batch_tokens or default_batch_tokens(lm)), run)
    return [_finish(t, s) for t, s in zip(tokenized, sums)]

