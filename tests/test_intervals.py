"""Known answers for the DE intervals and paired comparisons (genies.intervals), and the
two-level interval's coverage on a simulation with known per-shift and per-prompt variance."""

from __future__ import annotations

import numpy as np
import pytest

from genies import intervals, metrics
from genies.intervals import PromptHits


def hits(correct, sizes=None) -> PromptHits:
    correct = np.asarray(correct, dtype=np.float64)
    return PromptHits(correct, np.ones_like(correct) if sizes is None else np.asarray(sizes, dtype=np.float64))


def test_prompt_hits_pool_the_pairs_of_each_prompt():
    # prompt 0 has 3 pairs (2 right), prompt 1 one pair (wrong), prompt 2 two pairs (both right)
    ph = PromptHits.from_pairs([True, True, False, False, True, True], [0, 0, 0, 1, 2, 2], n_prompts=4)
    np.testing.assert_array_equal(ph.hits, [2, 0, 2, 0])
    np.testing.assert_array_equal(ph.sizes, [3, 1, 2, 0])
    draws = np.array([[0, 1, 2], [0, 0, 1], [2, 2, 2]])
    np.testing.assert_allclose(ph.resampled_accuracy(draws), [4 / 6, 4 / 7, 1.0])  # pooled, not mean of means


def test_de_replicates_by_hand():
    gen, base, tt = hits([1, 1, 0]), hits([0, 1, 0]), hits([1, 0, 1, 1])
    target = np.array([[0, 1, 2], [0, 0, 2]])
    reference = np.array([[0, 1, 2, 3], [1, 1, 1, 1]])
    got = intervals.de_replicates(gen, base, tt, target, reference)
    np.testing.assert_allclose(got[0], (2 / 3 - 1 / 3) / (3 / 4))
    assert np.isnan(got[1])  # a replicate with A_tt = 0 has no DE


def test_a_shift_interval_resamples_intervention_and_baseline_jointly():
    """Identical predictions for the intervention and the baseline: every joint replicate has
    DE exactly 0, which independent resampling of the two would not give."""
    rng = np.random.default_rng(0)
    same = hits(rng.random(30) < 0.6)
    draws = intervals.prompt_draws(30, 0, "tgt", "test")
    reps = intervals.de_replicates(same, same, hits(np.ones(30)), draws, draws)
    assert intervals.percentile_interval(reps) == (0.0, 0.0)


def test_prompt_draws_are_shared_by_every_method_and_differ_between_splits():
    a = intervals.prompt_draws(20, 3, "tgt", "test")
    np.testing.assert_array_equal(a, intervals.prompt_draws(20, 3, "tgt", "test"))
    assert a.shape == (intervals.N_BOOT, 20) and a.min() >= 0 and a.max() < 20
    assert not np.array_equal(a, intervals.prompt_draws(20, 3, "other", "test"))
    assert not np.array_equal(a, intervals.prompt_draws(20, 4, "tgt", "test"))


def test_percentile_interval_is_the_central_level():
    samples = np.arange(1001, dtype=np.float64)  # quantiles of 0..1000 are the values themselves
    assert intervals.percentile_interval(samples, 0.95) == pytest.approx((25.0, 975.0))
    assert intervals.percentile_interval(samples, 0.9) == pytest.approx((50.0, 950.0))
    assert intervals.percentile_interval(np.array([np.nan, 1.0, np.nan]), 0.95) == (1.0, 1.0)
    with pytest.raises(ValueError, match="level"):
        intervals.percentile_interval(samples, 1.0)


def test_one_shift_gets_its_prompt_level_interval_not_zero_width():
    reps = np.linspace(-0.2, 0.4, 1000)[None, :]
    low, high = intervals.two_level_interval(reps, seed=0)
    assert -0.2 < low < -0.15 and 0.35 < high < 0.4


def _simulated_shifts(rng, n_shifts, n_prompts, tau, mu, seed):
    """Per shift: true DE d_s ~ N(mu, tau); prompts where the intervention is right with
    probability 0.5 + d_s and the baseline with 0.5; A_tt = 1, so DE = A_gen - A_base."""
    d = mu + rng.normal(0, tau, n_shifts)
    reps, des = [], []
    for s in range(n_shifts):
        gen, base = rng.random(n_prompts) < 0.5 + d[s], rng.random(n_prompts) < 0.5
        draws = intervals.prompt_draws(n_prompts, seed, f"t{s}", "test")
        reps.append(intervals.de_replicates(hits(gen), hits(base), hits(np.ones(n_prompts)), draws, draws))
        des.append(gen.mean() - base.mean())
    return np.stack(reps), np.array(des)


def test_two_level_interval_covers_the_mean_de_at_its_level():
    """Three shifts of 40 prompts, prompt noise larger than the spread of shifts: the two-level
    95 % interval covers the true mean DE in 90-99 % of simulated runs; the shifts-only interval
    (what 0.1 reported) does not."""
    rng = np.random.default_rng(1)
    mu, runs = 0.1, 200
    two_level = shifts_only = 0
    for k in range(runs):
        reps, des = _simulated_shifts(rng, 3, 40, 0.05, mu, k)
        low, high = intervals.two_level_interval(reps, seed=k)
        two_level += low <= mu <= high
        _, low, high = metrics.mean_with_ci(des, seed=k)
        shifts_only += low <= mu <= high
    assert 0.9 <= two_level / runs <= 0.99
    assert shifts_only / runs < 0.85


def test_paired_comparison_by_hand_and_beyond_noise():
    de = {"a": {"s1": 0.3, "s2": 0.1, "s3": float("nan")}, "b": {"s1": 0.1, "s2": 0.2, "s3": 0.0},
          "c": {"s9": 0.0}}
    reps = {m: {s: np.full(50, v) for s, v in shifts.items()} for m, shifts in de.items()}
    [ab] = intervals.compare(de, reps, seed=0, n_boot=200)  # a-c and b-c share no shift
    assert (ab.a, ab.b, ab.n_shifts) == ("a", "b", 2)  # s3 left out: a's DE is NaN there
    assert ab.mean_difference == pytest.approx((0.2 - 0.1) / 2)
    assert ab.share_a_better == 0.5
    assert -0.1 - 1e-12 <= ab.ci_low <= ab.ci_high <= 0.2 + 1e-12 and not ab.beyond_noise
    # the same prompt draws for both methods: a constant per-prompt advantage is beyond noise
    rng = np.random.default_rng(0)
    shared = {f"s{i}": rng.normal(0, 0.3, 1000) for i in range(4)}
    de = {"a": {s: 0.05 for s in shared}, "b": {s: 0.0 for s in shared}}
    reps = {"a": {s: r + 0.05 for s, r in shared.items()}, "b": shared}
    [ab] = intervals.compare(de, reps, seed=0)
    assert ab.beyond_noise and ab.ci_low == pytest.approx(0.05) and ab.share_a_better == 1.0
