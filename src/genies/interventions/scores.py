"""What a fitted intervention says (`Scores`, no labels) and what the pipeline makes of it
(`Predictions`, one probability per labelled evaluation pair).

A fitted method scores an `EvalSet` without seeing its labels: for every query it gives, for
every ordered pair of its responses (i, j), the probability that i beats j, plus each response's
own score where it has one. The pipeline then reads, for every (preferred, dispreferred) pair,
the entry [preferred, dispreferred]: the only place labels meet scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genies.data.schema import Example, eval_pairs
from genies.errors import JobError


def sigmoid(x: np.ndarray) -> np.ndarray:
    """A sigmoid that neither overflows nor loses the tails (exp only of non-positive values)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@dataclass(frozen=True)
class Scores:
    """A fitted method's judgement of every query of one EvalSet.

    `beats[q][i, j]` is P(response i beats response j) for query q (NaN where the method says
    nothing, e.g. a legacy script that only reports the pairs it was asked about; the diagonal is
    unused). `response_scores[q]` holds the method's raw score of each response, or is None for
    methods that only compare. `info` carries anything else the method reports (an adapter's own
    accuracy, warnings); it is kept with the predictions and shown in the report.
    """

    beats: list[np.ndarray]
    response_scores: list[np.ndarray] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for q, matrix in enumerate(self.beats):
            if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
                raise ValueError(f"query {q}: beats must be square, got shape {matrix.shape}")
        if self.response_scores is not None and len(self.response_scores) != len(self.beats):
            raise ValueError(f"{len(self.response_scores)} response-score arrays for {len(self.beats)} queries")

    @classmethod
    def bradley_terry(cls, scores: Sequence[np.ndarray], info: Mapping[str, Any] | None = None,
                      scale: float | Sequence[float] = 1.0) -> Scores:
        """From one scalar score per response: P(i beats j) = sigmoid((s_i - s_j) / scale), the
        softmax over a query's responses restricted to the pair. `scale` (one number, or one per
        query) divides the difference; 1 for a reward model."""
        arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
        scales = np.broadcast_to(np.asarray(scale, dtype=np.float64), (len(arrays),))
        beats = [sigmoid((s[:, None] - s[None, :]) / k) for s, k in zip(arrays, scales)]
        return cls(beats, arrays, dict(info or {}))

    @classmethod
    def pairwise(cls, n_responses: Sequence[int], p_first: Callable[[np.ndarray, np.ndarray], np.ndarray],
                 response_scores: Sequence[np.ndarray] | None = None,
                 info: Mapping[str, Any] | None = None) -> Scores:
        """From a pairwise probability: `p_first(rows_a, rows_b)` gives P(a beats b) for arrays of
        global response rows (responses numbered query after query), evaluated once for every
        ordered pair of every query."""
        starts = np.concatenate([[0], np.cumsum(n_responses)]).astype(np.int64)
        a_rows, b_rows = [], []
        for q, n in enumerate(n_responses):
            i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            a_rows.append(starts[q] + i.reshape(-1))
            b_rows.append(starts[q] + j.reshape(-1))
        a = np.concatenate(a_rows) if a_rows else np.zeros(0, np.int64)
        b = np.concatenate(b_rows) if b_rows else np.zeros(0, np.int64)
        p = np.clip(np.asarray(p_first(a, b), dtype=np.float64), 0.0, 1.0) if len(a) else np.zeros(0)
        beats, offset = [], 0
        for n in n_responses:
            beats.append(p[offset: offset + n * n].reshape(n, n))
            offset += n * n
        scores = None if response_scores is None else [np.asarray(s, dtype=np.float64) for s in response_scores]
        return cls(beats, scores, dict(info or {}))


@dataclass(frozen=True)
class Predictions:
    """One probability per evaluation pair of a split (the order of `Distribution.eval_pairs`),
    the stored output of a prediction job. `response_scores` and `info` come from `Scores`."""

    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: list[np.ndarray] | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.p_preferred)
        for name in ("example_index", "preferred_index", "dispreferred_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Predictions.{name} has {len(getattr(self, name))} entries, expected {n}")
        p = np.asarray(self.p_preferred, dtype=float)
        if np.isnan(p).any():
            raise ValueError("Predictions.p_preferred has no value for some pairs")
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ValueError("Predictions.p_preferred must lie in [0, 1]")


def pair_with_labels(scores: Scores, examples: Sequence[Example], where: str) -> Predictions:
    """The pipeline's one use of evaluation labels: P(preferred beats dispreferred) for every
    evaluation pair, read from the method's label-free `scores`. A method that left some pair
    without a probability fails its own job with a message naming `where` (distribution/split)."""
    if len(scores.beats) != len(examples):
        raise JobError(f"{where}: the method scored {len(scores.beats)} queries, the split has {len(examples)}")
    for q, (matrix, ex) in enumerate(zip(scores.beats, examples)):
        if matrix.shape[0] != len(ex.responses):
            raise JobError(f"{where}, example {q}: the method scored {matrix.shape[0]} responses of "
                           f"{len(ex.responses)}")
    pairs = eval_pairs(examples)
    p = np.array([scores.beats[x.example_index][x.preferred_index, x.dispreferred_index] for x in pairs],
                 dtype=np.float64)
    missing = np.flatnonzero(np.isnan(p))
    if missing.size:
        first = pairs[int(missing[0])]
        raise JobError(f"{where}: the method gave no probability for {missing.size} of {len(pairs)} pairs "
                       f"(first: example {first.example_index}){_reason(scores.info)}")
    return Predictions(
        example_index=np.array([x.example_index for x in pairs], dtype=np.int64),
        preferred_index=np.array([x.preferred_index for x in pairs], dtype=np.int64),
        dispreferred_index=np.array([x.dispreferred_index for x in pairs], dtype=np.int64),
        p_preferred=p,
        response_scores=scores.response_scores,
        info=dict(scores.info),
    )


def _reason(info: Mapping[str, Any]) -> str:
    warning = info.get("warning")
    return f": {warning}" if warning else ""
