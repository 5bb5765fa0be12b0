"""`judge:MODEL`: an instruct model asked which of two responses follows the instruction better.

The question is fixed (`QUESTION`, documented in docs/judges.md) so that every judge is asked the
same thing. With the chat template (`template=chat`, the default when the tokenizer has one) it
is the user turn, followed by the template's generation prompt, and the answer tokens are "A" and
"B"; with `template=raw` it is plain text ending in `RAW_CUE` and the answer tokens are " A" and
" B". Each answer must be one token of the model's vocabulary (else one line says so).

Nothing is generated: the next-token logits of the two answer tokens give P(A) = sigmoid(l_A -
l_B), the probability that the response shown first is the better one. Every ordered pair of a
prompt's responses is asked in both orders, and P(i beats j) is the mean of P(i better) over the
two orders, which cancels a constant preference for a position. That preference itself is the
*position bias* reported in `Scores.info`: the mean of P(A) over every presentation, minus 0.5
(+0.5: always answers A; 0: no preference for either slot), beside `order_agreement`, the share
of pairs whose two orders pick the same response.

Speed: the presentations of a prompt share the question's opening, the prompt and, two by two,
their first response, and prompts share the chat template's header, so on CPU the presentations
of many prompts go in one prefix tree (`_external.PrefixTree`: each distinct prefix computed
once, segment-wise attention, no padding); on a GPU the presentations of a prompt share one
block-masked row (`_reward_packing.PackedRow`). Only the last position of each goes through the
LM head. Once per model these are compared with the model's own forward pass on padded single
sequences; a model where they differ (logit soft-capping, an exotic mask) takes that plain path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genies.data.schema import EvalSet, Query
from genies.errors import ConfigError, JobError
from genies.interventions._external import (
    TEMPLATES,
    scatter_per_query,
    ExternalFit,
    ExternalJudge,
    PrefixTree,
    absolute_spec,
    chat_text,
    load_causal_lm,
    template_kind,
    token_batches,
    tree_batches,
    tree_hidden,
)
from genies.interventions._reward_packing import Batch, PackedRow
from genies.interventions.base import Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores, sigmoid
from genies.models.base import context_length, pad_token_id
from genies.models.tree_attention import supports_tree_attention

if TYPE_CHECKING:
    from genies.models.base import LoadedModel

QUESTION = (
    "Which response follows the instruction better?\n\n"
    "### Instruction:\n{prompt}\n\n"
    "### Response A:\n{first}\n\n"
    "### Response B:\n{second}\n\n"
    "Answer with a single letter: A or B."
)
RAW_CUE = "\n\nThe better response is Response"
ANSWERS = {"chat": ("A", "B"), "raw": (" A", " B")}


@dataclass
class JudgeModel:
    """A causal LM set up as a judge: how it is asked (`template`) and its two answer tokens."""

    lm: LoadedModel
    template: str  # "chat" or "raw"
    answer_ids: tuple[int, int]
    max_text_chars: int | None = None

    @classmethod
    def of(cls, lm: LoadedModel, template: str, max_text_chars: int | None = None) -> JudgeModel:
        kind = template_kind(template, lm.tokenizer, "judge", lm.name)
        ids = []
        for answer in ANSWERS[kind]:
            tokens = lm.tokenizer(answer, add_special_tokens=False)["input_ids"]
            if len(tokens) != 1:
                raise ConfigError(f"judge: {lm.name} spells the answer {answer!r} with {len(tokens)} tokens; the judge "
                                  f"reads one token per answer (try --set judge.template="
                                  f"{'raw' if kind == 'chat' else 'chat'})")
            ids.append(int(tokens[0]))
        return cls(lm, kind, (ids[0], ids[1]), max_text_chars)

    def text(self, prompt: str, first: str, second: str) -> str:
        """The judge's input text for one presentation, each text cut to `max_text_chars`."""
        cut = (lambda t: t[: self.max_text_chars]) if self.max_text_chars is not None else (lambda t: t)
        question = QUESTION.format(prompt=cut(prompt), first=cut(first), second=cut(second))
        return chat_text(self.lm.tokenizer, question) if self.template == "chat" else question + RAW_CUE

    def encode(self, prompt: str, first: str, second: str) -> list[int]:
        text = self.text(prompt, first, second)
        tok = self.lm.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"] if self.template == "chat" else tok(text)["input_ids"]
        limit = context_length(self.lm)
        if len(ids) > limit:
            raise JobError(f"judge: a presentation of the prompt {prompt!r:.60} needs {len(ids)} tokens, more than "
                           f"{self.lm.name}'s context of {limit}; set judge.max_text_chars to shorten the texts")
        return list(ids)


def presentations(n: int) -> list[tuple[int, int]]:
    """Every ordered pair (first, second) of n responses."""
    return [(a, b) for a in range(n) for b in range(n) if a != b]


def _plain_logits(judge: JudgeModel, sequences: Sequence[list[int]]) -> torch.Tensor:
    """[n, 2] answer logits through the model's own forward pass, right-padded, at each last token."""
    lm = judge.lm
    device = lm.device
    lengths = torch.tensor([len(s) for s in sequences], device=device)
    width = int(lengths.max())
    ids = torch.full((len(sequences), width), pad_token_id(lm), dtype=torch.long, device=device)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
    mask = (torch.arange(width, device=device)[None, :] < lengths[:, None]).long()
    logits = lm.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                      use_cache=False).logits
    rows = torch.arange(len(sequences), device=logits.device)
    return logits[rows, (lengths - 1).to(logits.device)][:, list(judge.answer_ids)].float()


def _packed_logits(judge: JudgeModel, rows: Sequence[PackedRow]) -> torch.Tensor:
    """[sequences, 2] answer logits of packed rows (row order, then sequence order): the decoder
    over the block-masked rows, the LM head only at each sequence's last token."""
    lm = judge.lm
    batch = Batch.collate(rows, pad_token_id(lm), lm.device, lm.dtype)
    hidden = lm.model.get_decoder()(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                    position_ids=batch.position_ids, use_cache=False).last_hidden_state
    picked = hidden[batch.read_lines.to(hidden.device), batch.read_cols.to(hidden.device)]
    head = lm.model.get_output_embeddings()
    return head(picked.to(head.weight.device))[:, list(judge.answer_ids)].float()


def _tree_logits(judge: JudgeModel, tree: PrefixTree) -> torch.Tensor:
    """[sequences, 2] answer logits from one forward pass over a prefix tree (segment-wise
    attention), the LM head only at each sequence's last token."""
    lm = judge.lm
    hidden = tree_hidden(lm.model, lm.model.get_decoder(), tree, lm.device, lm.dtype)
    head = lm.model.get_output_embeddings()
    return head(hidden.to(head.weight.device))[:, list(judge.answer_ids)].float()


# model -> the fastest forward pass matching the plain one; weak keys so models can be freed
_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def choose_forward(judge: JudgeModel) -> str:
    """"tree" on CPU, else "packed", where they reproduce `_plain_logits` on two prefix-sharing
    probes and one alone (checked once per model), else "plain"."""
    model = judge.lm.model
    if model not in _FORWARD:
        vocab = model.get_output_embeddings().weight.shape[0]
        probes = [[int(t) % vocab for t in ids] for ids in ([3, 4, 5, 6, 7, 8], [3, 4, 5, 9, 10], [11, 12])]
        tree = PrefixTree()
        for seq in probes:
            tree.add(seq)
        candidates = {"packed": lambda: _packed_logits(judge, [PackedRow.pack(probes[:2]), PackedRow.pack(probes[2:])])}
        if judge.lm.device.type == "cpu" and supports_tree_attention(model):
            candidates = {"tree": lambda: _tree_logits(judge, tree), **candidates}
        _FORWARD[model] = "plain"
        with torch.inference_mode():
            plain = _plain_logits(judge, probes)
            tol = (1e-4 if judge.lm.dtype == torch.float32 else 2e-2) * max(1.0, plain.abs().max().item())
            for name, compute in candidates.items():
                try:
                    if torch.allclose(compute().to(plain.device), plain, rtol=0, atol=tol):
                        _FORWARD[model] = name
                        break
                except (TypeError, ValueError, RuntimeError, AttributeError):  # a decoder without these inputs
                    continue
    return _FORWARD[model]


def answer_logits(judge: JudgeModel, per_query: Sequence[Sequence[list[int]]], budget: int,
                  advance: Callable[[int], None] = lambda n: None, forward: str = "auto"
                  ) -> tuple[list[np.ndarray], str]:
    """Per query, the [presentations, 2] logits of the answers (A, B), and the forward pass used
    ("tree": prefix trees of about `budget` nodes; "packed": one block-masked row per query;
    "plain": one padded sequence per presentation; "auto": `choose_forward`'s)."""
    out: list[np.ndarray] = [np.zeros((0, 2))] * len(per_query)
    forward = choose_forward(judge) if forward == "auto" else forward

    def keep(batch: Sequence[int], values: torch.Tensor) -> None:
        scatter_per_query(out, batch, values, per_query)
        advance(len(batch))

    with torch.inference_mode():
        if forward == "tree":
            for batch, tree in tree_batches(per_query, budget):
                keep(batch, _tree_logits(judge, tree))
        elif forward == "packed":
            live = [i for i, seqs in enumerate(per_query) if seqs]
            rows = {i: PackedRow.pack(per_query[i]) for i in live}
            for batch in token_batches([len(rows[i].tokens) for i in live], budget):
                members = [live[k] for k in batch]
                keep(members, _packed_logits(judge, [rows[i] for i in members]))
        else:
            flat = [(i, k) for i, seqs in enumerate(per_query) for k in range(len(seqs))]
            values = torch.zeros((len(flat), 2))
            for batch in token_batches([len(per_query[i][k]) for i, k in flat], budget):
                values[batch] = _plain_logits(judge, [per_query[flat[j][0]][flat[j][1]] for j in batch]).cpu()
            keep(range(len(per_query)), values)
    return out, forward


def judge_scores(n_responses: Sequence[int], logits: Sequence[np.ndarray], info: dict[str, Any]) -> Scores:
    """Scores from each query's answer logits (rows in `presentations` order): P(i beats j) is
    the mean over the two orders; `info` gains the position bias and the order agreement."""
    beats, first_wins, agree = [], [], []
    for n, values in zip(n_responses, logits):
        p_first = sigmoid(values[:, 0] - values[:, 1]) if len(values) else np.zeros(0)
        shown = {pair: p for pair, p in zip(presentations(n), p_first)}
        matrix = np.full((n, n), 0.5)
        for (a, b), p in shown.items():
            matrix[a, b] = (p + 1.0 - shown[(b, a)]) / 2.0
            if a < b:
                agree.append((p > 0.5) == (shown[(b, a)] < 0.5))
        beats.append(matrix)
        first_wins.extend(p_first)
    info = {**info, "presentations": len(first_wins),
            "position_bias": float(np.mean(first_wins)) - 0.5 if first_wins else None,
            "order_agreement": float(np.mean(agree)) if agree else None}
    return Scores(beats, None, info)


@register("judge", family="external",
          description="An instruct model asked which of two responses follows the instruction better: judge:MODEL.")
@dataclass
class LlmJudge(ExternalJudge):
    model: str = hparam("", "the judging instruct model: `default` (the embedded SmolLM2-135M-Instruct), a local "
                            "folder, a .gguf file or a cached hub id", execution=True)
    template: str = hparam("auto", "auto = the chat template when the tokenizer has one, else raw; chat = the "
                                   "question as the user turn, answers 'A'/'B'; raw = plain text ending in 'The "
                                   "better response is Response', answers ' A'/' B'", choices=TEMPLATES)
    max_text_chars: int | None = hparam(None, "cut the prompt and each response to their first N characters "
                                              "(None = whole; a presentation longer than the context is an error)")

    usage = "judge:MODEL (judge:default for the embedded model)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_text_chars is not None and self.max_text_chars < 1:
            raise ConfigError(f"judge.max_text_chars must be >= 1 or None, got {self.max_text_chars}")

    @classmethod
    def spec_overrides(cls, argument: str) -> dict[str, Any]:
        return {"model": absolute_spec(argument)}

    def model_specs(self) -> tuple[str, ...]:
        return (self.model,)

    def scorer(self, lm: LoadedModel | None, fitted: ExternalFit, ctx: FitContext) -> Scorer:
        (model,) = self.resolved()
        loaded = load_causal_lm(model, self.placement(), method="judge", trust_remote_code=self.trust_remote_code,
                                allow_pickle=self.allow_pickle, run_lm=lm)
        judge = JudgeModel.of(loaded, self.template, self.max_text_chars)

        def score(data: EvalSet) -> Scores:
            return score_queries(judge, data.queries, self.budget(), ctx, f"{data.distribution}/{data.split}")
        return score


def score_queries(judge: JudgeModel, queries: Sequence[Query], budget: int, ctx: FitContext, where: str) -> Scores:
    """Ask the judge about every ordered pair of every query's responses (see the module docstring)."""
    per_query = [[judge.encode(q.prompt, q.responses[a], q.responses[b]) for a, b in presentations(len(q.responses))]
                 for q in queries]
    with ctx.progress_bar(f"judge: {where}", len(queries)) as advance:
        logits, forward = answer_logits(judge, per_query, budget, advance)
    info = {"template": judge.template, "answers": list(ANSWERS[judge.template]), "forward": forward}
    return judge_scores([len(q.responses) for q in queries], logits, info)
