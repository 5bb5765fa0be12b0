"""Log-probability of each response given its prompt, for whole distributions, fast.

Tokenization (SPEC §5.1, the original zero-shot scorer): the prompt and `response + EOS` are
tokenized *separately* with `add_special_tokens=False` (no BOS) and their ids concatenated. A
tokenizer could merge characters across the prompt/response boundary if the texts were joined
first; tokenizing separately keeps every response's tokens identical whatever prompt precedes
it, and is exactly what both the engine and the naive reference score.

Engine: each example becomes one packed row `[prompt, r1+EOS, r2+EOS, ...]` with a block
attention mask (prompt tokens are causal among themselves; each response token sees the whole
prompt and the earlier tokens of its own response) and position ids that restart after the
prompt for every response. The prompt's forward pass is thus computed once and shared by all
of its responses. Rows are bucketed by length into batches of about `batch_tokens` padded
tokens; the LM head and log-softmax run only at the positions that predict response tokens.

Context overflow: when prompt + the longest response + EOS exceeds the context, the prompt is
truncated from the left (its end, next to the response, is kept). Every affected example is
counted in `ResponseScores.truncated_prompt_tokens` and logged; nothing is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from genies.data.schema import Example
from genies.models.base import LoadedModel

log = logging.getLogger(__name__)

CPU_BATCH_TOKENS = 2048
GPU_BATCH_TOKENS = 32768
HEAD_CHUNK = 1024  # positions per LM-head chunk: bounds the [chunk, vocab] logits buffer


@dataclass(frozen=True)
class ResponseScores:
    """Scores of one example's responses, in the example's response order."""

    sum: np.ndarray  # float64 [n_responses]: log P(response tokens + EOS | prompt)
    mean: np.ndarray  # float64 [n_responses]: sum / n_tokens
    n_tokens: np.ndarray  # int64 [n_responses]: scored tokens (response tokens + EOS)
    truncated_prompt_tokens: int = 0  # prompt tokens removed from the left to fit the context

    @property
    def truncated(self) -> bool:
        return self.truncated_prompt_tokens > 0


@dataclass(frozen=True)
class TokenizedExample:
    prompt: list[int]
    responses: list[list[int]]  # each ends with EOS
    truncated: int


def count_truncated(scores: Sequence[ResponseScores]) -> int:
    """How many examples had their prompt truncated to fit the context."""
    return sum(s.truncated for s in scores)


def context_length(lm: LoadedModel, max_length: int | None = None) -> int:
    """The longest sequence (prompt + one response + EOS) the model is asked to read."""
    if max_length is not None:
        return int(max_length)
    config = lm.model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    tok_max = getattr(lm.tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 10**7:
        return tok_max
    raise ValueError(f"model {lm.name}: cannot tell its context length; pass max_length")


def tokenize_examples(lm: LoadedModel, examples: Sequence[Example], max_length: int | None = None
                      ) -> list[TokenizedExample]:
    """Token ids per SPEC §5.1 (no BOS, response + EOS), prompts left-truncated to the context."""
    tokenizer = lm.tokenizer
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"model {lm.name}: tokenizer has no EOS token; the scorer appends EOS to responses")
    limit = context_length(lm, max_length)
    prompts = tokenizer([ex.prompt for ex in examples], add_special_tokens=False)["input_ids"] if examples else []
    flat = [r for ex in examples for r in ex.responses]
    flat_ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out, cursor = [], 0
    for i, ex in enumerate(examples):
        responses = [list(ids) + [eos] for ids in flat_ids[cursor: cursor + len(ex.responses)]]
        cursor += len(ex.responses)
        prompt = list(prompts[i])
        if not prompt:
            raise ValueError(f"example {i}: the prompt is empty after tokenization; the first response token "
                             "needs a preceding prompt token to be scored")
        longest = max(len(r) for r in responses)
        keep = limit - longest
        if keep < 1:
            raise ValueError(f"example {i}: a response has {longest} tokens with EOS but the context is {limit}; "
                             "it cannot be scored with any prompt (raise max_length or shorten the response)")
        removed = max(0, len(prompt) - keep)
        out.append(TokenizedExample(prompt[removed:], responses, removed))
    return out


def _finish(tok: TokenizedExample, sums: np.ndarray) -> ResponseScores:
    n = np.array([len(r) for r in tok.responses], dtype=np.int64)
    return ResponseScores(sum=sums, mean=sums / n, n_tokens=n, truncated_prompt_tokens=tok.truncated)


def _report_truncation(tokenized: Sequence[TokenizedExample], limit: int) -> None:
    n = sum(t.truncated > 0 for t in tokenized)
    if n:
        log.warning("%d of %d examples had their prompt truncated from the left to fit the %d-token context",
                    n, len(tokenized), limit)


def default_batch_tokens(lm: LoadedModel) -> int:
    return GPU_BATCH_TOKENS if lm.device.type == "cuda" else CPU_BATCH_TOKENS


def _batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
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


def _run_with_backoff(lm: LoadedModel, batches: list[list[int]], run: Callable[[list[int]], None]) -> None:
    """Run each batch; on CUDA out-of-memory split it in halves and retry (down to one row)."""
    queue = list(reversed(batches))
    while queue:
        batch = queue.pop()
        try:
            run(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            log.info("out of memory on a batch of %d rows; retrying as %d + %d", len(batch), half, len(batch) - half)
            queue.extend([batch[half:], batch[:half]])


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
        self.split = self.decoder is not None and self.decoder is not model and self._split_matches(lm)

    @torch.inference_mode()
    def _split_matches(self, lm: LoadedModel) -> bool:
        ids = torch.arange(3, 11, device=lm.device).remainder(self.head.weight.shape[0]).unsqueeze(0)
        try:
            hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
            split = self.head(hidden).float()
        except Exception:  # an exotic decoder signature: the full-model path is always correct
            return False
        full = self.model(input_ids=ids, use_cache=False).logits.float()
        tol = 1e-4 if lm.dtype == torch.float32 else 2e-2
        return torch.allclose(split, full, atol=tol * max(1.0, full.abs().max().item()), rtol=0)

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
            picked = logits.gather(1, targets[start: start + HEAD_CHUNK, None]).squeeze(1)
            out[start: start + HEAD_CHUNK] = picked - torch.logsumexp(logits, dim=1)
        return out


_HEADS: dict[int, _OutputHead] = {}


def _output_head(lm: LoadedModel) -> _OutputHead:
    key = id(lm.model)
    head = _HEADS.get(key)
    if head is None or head.model is not lm.model:
        head = _HEADS[key] = _OutputHead(lm)
    return head


def score_examples(
    lm: LoadedModel,
    examples: Sequence[Example],
    *,
    batch_tokens: int | None = None,
    max_length: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ResponseScores]:
    """Score every response of every example with shared prompt passes (see module docstring).

    `progress`, if given, is called with the number of examples finished after each batch.
    """
    tokenized = tokenize_examples(lm, examples, max_length)
    _report_truncation(tokenized, context_length(lm, max_length))
    head = _output_head(lm)
    results: list[ResponseScores | None] = [None] * len(tokenized)
    lengths = [len(t.prompt) + sum(len(r) for r in t.responses) for t in tokenized]

    def run(batch: list[int]) -> None:
        sums = _score_packed(lm, head, [tokenized[i] for i in batch])
        for i, s in zip(batch, sums):
            results[i] = _finish(tokenized[i], s)
        if progress is not None:
            progress(len(batch))

    with torch.inference_mode():
        _run_with_backoff(lm, _batches(lengths, batch_tokens or default_batch_tokens(lm)), run)
    return results  # type: ignore[return-value]


def _score_packed(lm: LoadedModel, head: _OutputHead, rows: Sequence[TokenizedExample]) -> list[np.ndarray]:
    """One forward pass over packed rows [prompt, r1, r2, ...]; per-response log-prob sums."""
    device = lm.device
    lengths = [len(t.prompt) + sum(len(r) for r in t.responses) for t in rows]
    width = max(lengths)
    left = lm.tokenizer.padding_side == "left"
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    seg = np.full((len(rows), width), -1, dtype=np.int64)  # -1 pad, 0 prompt, k+1 response k
    sel_row, sel_pos, targets, owner = [], [], [], []  # owner: flat response number
    n_resp = 0
    for b, t in enumerate(rows):
        at = width - lengths[b] if left else 0
        p = len(t.prompt)
        ids[b, at: at + p] = t.prompt
        pos[b, at: at + p] = np.arange(p)
        seg[b, at: at + p] = 0
        cursor = at + p
        for k, r in enumerate(t.responses):
            n = len(r)
            ids[b, cursor: cursor + n] = r
            pos[b, cursor: cursor + n] = np.arange(p, p + n)
            seg[b, cursor: cursor + n] = k + 1
            # the last prompt token predicts the first response token, then each token the next
            sel_pos.extend([at + p - 1, *range(cursor, cursor + n - 1)])
            sel_row.extend([b] * n)
            targets.extend(r)
            owner.extend([n_resp] * n)
            n_resp += 1
            cursor += n
    seg_t = torch.from_numpy(seg)
    idx = torch.arange(width)
    causal = idx[None, :] <= idx[:, None]
    sj, si = seg_t[:, None, :], seg_t[:, :, None]
    allowed = causal[None] & (sj >= 0) & ((sj == 0) | (sj == si))
    allowed |= torch.eye(width, dtype=torch.bool)[None]  # pad rows attend to themselves (no NaN)
    mask = torch.zeros(allowed.shape, dtype=lm.dtype).masked_fill_(~allowed, torch.finfo(lm.dtype).min)
    states = head.hidden(input_ids=torch.from_numpy(ids).to(device), position_ids=torch.from_numpy(pos).to(device),
                         attention_mask=mask[:, None].to(device))
    picked = states[torch.tensor(sel_row, device=device), torch.tensor(sel_pos, device=device)]
    logprobs = head.token_logprobs(picked, torch.tensor(targets, device=device))
    sums = torch.zeros(n_resp, dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), logprobs.double())
    sums_np = sums.cpu().numpy()
    out, start = [], 0
    for t in rows:
        out.append(sums_np[start: start + len(t.responses)])
        start += len(t.responses)
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
    left = lm.tokenizer.padding_side == "left"
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    device = lm.device

    def run(batch: list[int]) -> None:
        width = max(lengths[j] for j in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        for b, j in enumerate(batch):
            i, k = seqs[j]
            seq = tokenized[i].prompt + tokenized[i].responses[k]
            at = width - len(seq) if left else 0
            ids[b, at: at + len(seq)] = torch.tensor(seq)
            attn[b, at: at + len(seq)] = 1
        position_ids = (attn.cumsum(1) - 1).clamp(min=0)
        logits = lm.model(input_ids=ids.to(device), attention_mask=attn.to(device),
                          position_ids=position_ids.to(device), use_cache=False).logits
        for b, j in enumerate(batch):
            i, k = seqs[j]
            p, n = len(tokenized[i].prompt), len(tokenized[i].responses[k])
            at = width - lengths[j] if left else 0
            rows = logits[b, at + p - 1: at + p + n - 1].float().log_softmax(-1)
            target = torch.tensor(tokenized[i].responses[k], device=device)
            sums[i][k] = rows.gather(1, target[:, None]).double().sum().item()
        if progress is not None:
            progress(len(batch))

    with torch.inference_mode():
        _run_with_backoff(lm, _batches(lengths, batch_tokens or default_batch_tokens(lm)), run)
    return [_finish(t, s) for t, s in zip(tokenized, sums)]

