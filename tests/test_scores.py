"""Label-free `Scores` and the pipeline's one use of labels, `pair_with_labels`
(`genies.interventions.scores`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genies.data.schema import Example, eval_pairs
from genies.errors import JobError
from genies.interventions.scores import Scores, pair_with_labels, sigmoid

EXAMPLES = [Example("p", ("a", "b", "c"), 1), Example("q", ("x", "y"), 0), Example("r", ("u", "v", "w", "z"), 3)]


def test_sigmoid_neither_overflows_nor_loses_the_tails() -> None:
    x = np.array([-1000.0, -40.0, 0.0, 2.0, 40.0, 1000.0])
    with np.errstate(over="raise"):
        got = sigmoid(x)
    np.testing.assert_allclose(got[1:5], 1 / (1 + np.exp(-x[1:5])), rtol=1e-15)
    assert got[0] == 0.0 and got[-1] == 1.0 and got[1] > 0  # exp(-40) is representable: kept


def test_bradley_terry_is_the_sigmoid_of_score_differences() -> None:
    per_query = [np.array([0.0, 2.0, -1.0]), np.array([3.0, 3.5])]
    scores = Scores.bradley_terry(per_query)
    for s, beats in zip(per_query, scores.beats):
        assert beats.shape == (len(s), len(s))
        for i in range(len(s)):
            for j in range(len(s)):
                assert beats[i, j] == pytest.approx(1 / (1 + np.exp(-(s[i] - s[j]))), abs=1e-15)
    np.testing.assert_array_equal(scores.response_scores[0], per_query[0])
    halved = Scores.bradley_terry(per_query, scale=[2.0, 1.0])  # one scale per query
    assert halved.beats[0][1, 0] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert halved.beats[1][1, 0] == pytest.approx(1 / (1 + np.exp(-0.5)))


def test_pairwise_places_p_first_of_every_ordered_pair() -> None:
    """p_first gets global response rows (query after query); entry [i, j] of query q holds
    p_first(start_q + i, start_q + j)."""
    n_responses = [3, 2, 4]
    starts = np.concatenate([[0], np.cumsum(n_responses)])
    calls = []

    def p_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        calls.append((a.copy(), b.copy()))
        return (a * 10 + b) / 100.0  # encodes both rows

    scores = Scores.pairwise(n_responses, p_first)
    assert len(calls) == 1  # one batched call for the whole set
    assert len(calls[0][0]) == sum(n * n for n in n_responses)
    for q, n in enumerate(n_responses):
        assert scores.beats[q].shape == (n, n)
        for i in range(n):
            for j in range(n):
                a, b = starts[q] + i, starts[q] + j
                assert scores.beats[q][i, j] == pytest.approx((a * 10 + b) / 100.0), (q, i, j)
    assert scores.response_scores is None
    assert Scores.pairwise([], p_first).beats == []


def test_pair_with_labels_reads_preferred_over_dispreferred_for_every_pair() -> None:
    rng = np.random.default_rng(0)
    beats = [rng.uniform(size=(len(ex.responses),) * 2) for ex in EXAMPLES]
    pred = pair_with_labels(Scores(beats, info={"note": 1}), EXAMPLES, "d/test")
    pairs = eval_pairs(EXAMPLES)
    assert len(pred.p_preferred) == len(pairs) == 2 + 1 + 3
    for k, pair in enumerate(pairs):  # eval_pairs order, [preferred, dispreferred]
        assert (pred.example_index[k], pred.preferred_index[k], pred.dispreferred_index[k]) == (
            pair.example_index, pair.preferred_index, pair.dispreferred_index)
        assert pred.p_preferred[k] == beats[pair.example_index][pair.preferred_index, pair.dispreferred_index]
    assert pred.info == {"note": 1}


def test_a_missing_probability_fails_the_job_naming_where() -> None:
    beats = [np.full((len(ex.responses),) * 2, 0.5) for ex in EXAMPLES]
    beats[2][3, 1] = np.nan  # a pair the evaluation needs (preferred 3 over 1)
    with pytest.raises(JobError, match="d/test: the method gave no probability for 1 of 6 pairs.*example 2"):
        pair_with_labels(Scores(beats, info={"warning": "the script skipped some"}), EXAMPLES, "d/test")
    beats[2][3, 1] = 0.5
    beats[2][1, 3] = np.nan  # a pair no evaluation reads: fine
    beats[0][0, 0] = np.nan  # the diagonal is unused
    assert len(pair_with_labels(Scores(beats), EXAMPLES, "d/test").p_preferred) == 6


def test_wrong_counts_fail_the_job() -> None:
    beats = [np.full((len(ex.responses),) * 2, 0.5) for ex in EXAMPLES]
    with pytest.raises(JobError, match="d/test: the method scored 2 queries, the split has 3"):
        pair_with_labels(Scores(beats[:2]), EXAMPLES, "d/test")
    beats[1] = np.full((3, 3), 0.5)
    with pytest.raises(JobError, match="d/test, example 1: the method scored 3 responses of 2"):
        pair_with_labels(Scores(beats), EXAMPLES, "d/test")


def test_swapping_labels_turns_p_into_one_minus_p() -> None:
    """Scores never see labels: relabelling a two-response query reads the same matrix the other
    way round, which for a symmetric method (Bradley-Terry) is 1 - p."""
    two = [Example(f"p{i}", ("a", "b"), i % 2) for i in range(4)]
    swapped = [dataclasses.replace(ex, preferred=1 - ex.preferred) for ex in two]
    scores = Scores.bradley_terry([np.array([0.3 * i, -0.7]) for i in range(4)])
    p = pair_with_labels(scores, two, "d/test").p_preferred
    q = pair_with_labels(scores, swapped, "d/test").p_preferred
    np.testing.assert_allclose(q, 1 - p, atol=1e-15)
    assert not np.allclose(p, 0.5)


def test_scores_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="query 0: beats must be square"):
        Scores([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="1 response-score arrays for 2 queries"):
        Scores([np.zeros((2, 2))] * 2, [np.zeros(2)])
