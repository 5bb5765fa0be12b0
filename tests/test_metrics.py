"""Known answers for every metric, computed by hand, plus the published DE columns recomputed."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from genies import metrics as m


def test_accuracy_counts_strict_wins_and_seeded_ties():
    assert m.accuracy([0.9, 0.2, 0.6, 0.4]) == 0.5
    assert m.accuracy([1.0, 0.51, 0.0]) == pytest.approx(2 / 3)
    # Ties follow one coin per position: a tie's outcome does not depend on the other pairs.
    all_ties = m.pair_correct([0.5] * 8, seed=3)
    mixed = m.pair_correct([0.5, 0.9, 0.5, 0.1, 0.5, 0.5, 0.0, 0.5], seed=3)
    ties = [0, 2, 4, 5, 7]
    assert list(mixed[ties]) == list(all_ties[ties])
    assert list(mixed[[1, 3, 6]]) == [True, False, False]
    coins = np.random.default_rng(3).random(8) < 0.5
    assert list(all_ties) == list(coins)
    # Always-0.5 predictions score about chance, not 0 (the original's random baseline bug).
    assert abs(m.accuracy(np.full(10_000, 0.5), seed=0) - 0.5) < 0.02


def test_brier_and_average_probability():
    assert m.brier([1.0, 0.5, 0.0]) == pytest.approx((0 + 0.25 + 1) / 3)
    assert m.average_probability([1.0, 0.5, 0.0]) == 0.5


@pytest.mark.parametrize("bad", [[], [0.2, float("nan")], [1.2], [-0.1]])
def test_bad_probabilities_are_rejected(bad):
    with pytest.raises(ValueError):
        m.accuracy(bad)


def test_rms_and_ece_use_the_bins_own_label_mean():
    # 0.75 on three pairs and 0.25 on one: in the 0.7-0.8 bin, 3 of 4 items are wins -> calibrated.
    assert m.rms_calibration_error([0.75, 0.75, 0.75, 0.25]) == pytest.approx(0.0)
    assert m.expected_calibration_error([0.75, 0.75, 0.75, 0.25]) == pytest.approx(0.0)
    # Two bins. Items (confidence, outcome): (.9,1) (.8,1) (.3,1) (.1,0) (.2,0) (.7,0).
    # Low bin: confidence mean .2, outcome mean 1/3; high bin: .8 vs 2/3; equal weights.
    p = [0.9, 0.8, 0.3]
    assert m.rms_calibration_error(p, n_bins=2) == pytest.approx(math.sqrt((1 / 3 - 0.2) ** 2))
    assert m.expected_calibration_error(p, n_bins=2) == pytest.approx(abs(1 / 3 - 0.2))
    # Floating-point edges: 1 - 0.9 shares the 0.1 bin. Bins hold (.1, win) x3 + (.1, loss) x2
    # and (.9, win) x2 + (.9, loss) x3: error .5 in both.
    assert m.rms_calibration_error([0.1, 0.1, 0.1, 0.9, 0.9]) == pytest.approx(0.5)
    # Confident and always right is calibrated only at 1.0 (included in the last bin).
    assert m.rms_calibration_error([1.0, 1.0]) == 0.0
    # Bins are weighted by count: 0.95 x3 (outcomes 1) and 0.05 x3 (outcomes 0) in the outer
    # bins, 0.55 x1 and 0.45 x1 in the middle ones: error .05 on 6 of 8 items, .45 on 2 of 8.
    p = [0.95, 0.95, 0.95, 0.55]
    expected = math.sqrt(6 / 8 * 0.05**2 + 2 / 8 * 0.45**2)
    assert m.rms_calibration_error(p) == pytest.approx(expected)


def test_legacy_rms_reproduces_the_original_formula():
    # random.seed(42); [random.choice([0, 1]) for _ in range(40)] has 15 ones.
    # p = .9: 15 items q=.9 (bin 5, fewer than 20: skipped), 25 items q=.1 (bin 1).
    # Global label mean .375 -> sqrt((.375 - .1)^2) = .275.
    assert m.legacy_rms_calibration_error([0.9] * 40) == pytest.approx(0.275)
    # 60 items: 25 ones, both bins count, unweighted mean of the two squared gaps.
    mean_l = 25 / 60
    assert m.legacy_rms_calibration_error([0.9] * 60) == pytest.approx(
        math.sqrt(((mean_l - 0.9) ** 2 + (mean_l - 0.1) ** 2) / 2))
    # q == 1.0 lies outside every np.digitize bin: only the 25 zeros (q = 0) count.
    assert m.legacy_rms_calibration_error([1.0] * 40) == pytest.approx(0.375)
    assert math.isnan(m.legacy_rms_calibration_error([0.9] * 10))


def test_legacy_rms_leaves_the_global_random_state_alone():
    import random
    random.seed(7)
    expected = random.random()
    random.seed(7)
    m.legacy_rms_calibration_error([0.6] * 30)
    assert random.random() == expected


def test_differential_elicitation_and_elicitation():
    assert m.differential_elicitation(0.6, 0.5, 0.8) == pytest.approx(0.125)
    assert m.elicitation(0.6, 0.8) == pytest.approx(0.75)
    assert m.differential_elicitation(0.4, 0.5, 0.5) == pytest.approx(-0.2)
    assert math.isnan(m.differential_elicitation(0.6, 0.5, 0.0))


def test_differential_elicitation_rounds_as_the_published_formula():
    """DE is `(g - b) / t` in float64, bit for bit (the published columns are recomputed with
    `==`). The same algebra written `g / t - b / t` rounds differently in the last bit:
    0.4 - 0.1 is 0.30000000000000004, so (0.4 - 0.1) / 0.8 is 0.37500000000000006, while
    0.4 / 0.8 - 0.1 / 0.8 = 0.5 - 0.125 = 0.375 exactly; 0.5 - 0.3 is 0.2 (the double nearest
    0.2), so (0.5 - 0.3) / 0.8 is 0.25 exactly, while 0.3 / 0.8 is 0.37499999999999994 and
    0.625 - 0.37499999999999994 = 0.25000000000000006."""
    assert m.differential_elicitation(0.4, 0.1, 0.8) == 0.37500000000000006
    assert m.differential_elicitation(0.5, 0.3, 0.8) == 0.25
    assert m.differential_elicitation(0.5, 0.2, 0.8) == 0.37499999999999994
    assert m.differential_elicitation(0.3, 0.3, 0.7) == 0.0
    assert m.elicitation(0.3, 0.7) == 0.3 / 0.7


def normal_interval(centre: float, se: float, level: float) -> tuple[float, float]:
    """The central `level` interval of Normal(centre, se^2): what a percentile bootstrap of a
    mean over many values converges to."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return centre - z * se, centre + z * se


def assert_interval(got: tuple[float, float], expected: tuple[float, float], se: float) -> None:
    """Each end within 0.15 standard errors of the known answer (the Monte Carlo error of a
    4000-draw percentile is about 0.05 se), and the width within 6 %. Reporting the interval of
    the wrong level moves the ends by 0.3 se (95 % vs 90 %) or more."""
    assert got[0] == pytest.approx(expected[0], abs=0.15 * se), (got, expected)
    assert got[1] == pytest.approx(expected[1], abs=0.15 * se), (got, expected)
    assert got[1] - got[0] == pytest.approx(expected[1] - expected[0], rel=0.06), (got, expected)


def binomial_quantile(n: int, q: float, prob: float = 0.5) -> int:
    """Smallest k with P(Binomial(n, prob) <= k) >= q."""
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * prob**k * (1 - prob) ** (n - k)
        if cdf >= q:
            return k
    return n


@pytest.mark.parametrize("level", [0.95, 0.9, 0.5])
def test_interval_levels_have_the_known_width(level):
    """A level-L interval is the (1-L)/2 and (1+L)/2 percentiles of the bootstrap means: for a
    mean over many values that is mean +- z_{(1+L)/2} * sd / sqrt(n). An interval reported for
    the wrong level (e.g. the 90 % one as 95 %: alpha = 1 - L) is 16 % narrower at 95 % and has
    zero width at 50 %."""
    n = 100
    values = np.array([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)])  # mean 0, spread known
    se = float(values.std()) / math.sqrt(n)  # sd of the bootstrap mean (population sd / sqrt(n))
    for seed in (0, 1):
        mean, low, high = m.mean_with_ci(values, seed=seed, n_boot=4000, level=level)
        assert mean == pytest.approx(0.0, abs=1e-12)
        assert_interval((low, high), normal_interval(0.0, se, level), se)
    # Accuracy over 1000 independent pairs, half right: se = sqrt(0.25 / 1000).
    p = [0.9, 0.1] * 500
    se = math.sqrt(0.25 / 1000)
    for seed in (0, 1):
        assert_interval(m.bootstrap_accuracy_ci(p, seed=seed, n_boot=4000, level=level),
                        normal_interval(0.5, se, level), se)


def test_bootstrap_accuracy_ci():
    assert m.bootstrap_accuracy_ci([0.9] * 10) == (1.0, 1.0)
    assert m.bootstrap_accuracy_ci([0.1] * 10, groups=list(range(10))) == (0.0, 0.0)
    p = [0.9, 0.8, 0.7, 0.2] * 250
    assert m.bootstrap_accuracy_ci(p, seed=1) == m.bootstrap_accuracy_ci(p, seed=1)
    assert m.bootstrap_accuracy_ci(p, seed=1) != m.bootstrap_accuracy_ci(p, seed=2)
    with pytest.raises(ValueError, match="level"):
        m.bootstrap_accuracy_ci(p, level=95)
    with pytest.raises(ValueError, match="groups has 3 entries, expected 1000"):
        m.bootstrap_accuracy_ci(p, groups=[0, 1, 2])


def test_grouped_interval_resamples_prompts():
    """100 prompts of 5 pairs each, all 5 right or all 5 wrong (half and half): the number of
    right prompts in a resample is Binomial(100, 1/2), so the 95 % interval is [40, 60] / 100,
    twice as wide as resampling the 500 pairs independently would make it (about +- 0.044)."""
    p = [0.9] * 250 + [0.1] * 250
    groups = np.repeat(np.arange(100), 5)
    assert binomial_quantile(100, 0.025) == 40 and binomial_quantile(100, 0.975) == 60
    # Group ids are labels only: any values, in any order. The percentile of 4000 draws lands on
    # 40 (60) or a neighbour of it.
    for ids in (groups, 1000 - 7 * groups):
        low, high = m.bootstrap_accuracy_ci(p, groups=ids, n_boot=4000)
        assert 0.39 <= low <= 0.41 and 0.59 <= high <= 0.61, (low, high)


def test_grouped_interval_is_the_pooled_ratio_not_the_mean_of_group_means():
    """Unequal prompt sizes: 50 prompts with one right pair and 50 with nine wrong pairs,
    interleaved. Accuracy is the pooled ratio 50 / 500 = 0.1 (the mean of the prompts' own
    accuracies would be 0.5). A resample with K one-pair prompts (K ~ Binomial(100, 1/2)) scores
    K / (K + 9 (100 - K)), increasing in K, so the 95 % interval is f(40) = 0.069 .. f(60) = 0.143;
    the mean of group means would give 0.40 .. 0.60, and resampling pairs alone 0.074 .. 0.126."""
    p: list[float] = []
    groups: list[int] = []
    for prompt in range(100):
        size, prob = (1, 0.9) if prompt % 2 == 0 else (9, 0.1)
        p += [prob] * size
        groups += [prompt] * size
    assert m.accuracy(p) == 0.1

    def f(k: int) -> float:
        return k / (k + 9 * (100 - k))

    k_low, k_high = binomial_quantile(100, 0.025), binomial_quantile(100, 0.975)
    for seed in (0, 1, 2):
        low, high = m.bootstrap_accuracy_ci(p, seed=seed, groups=groups, n_boot=4000)
        # The percentile of 4000 draws lands on K or a neighbour of it.
        assert f(k_low - 1) <= low <= f(k_low + 1), (seed, low)
        assert f(k_high - 1) <= high <= f(k_high + 1), (seed, high)


def test_mean_with_ci():
    """Three shifts: a resample's mean is one of 0.1, 0.1333, ..., 0.3 with the multinomial
    probabilities of 3 draws from 3; all three 0.1 (or all 0.3) has probability 1/27 = 3.7 %,
    more than the 2.5 % in each tail, so the 95 % interval is exactly [0.1, 0.3]. At 80 % the tails
    are 10 %: P(mean <= 0.1333) = 4/27 = 14.8 % > 10 % > 1/27, so the interval is [0.1333, 0.2667]."""
    values = [0.1, 0.2, 0.3]
    mean, low, high = m.mean_with_ci(values, n_boot=4000)
    assert mean == pytest.approx(0.2)
    assert (low, high) == pytest.approx((0.1, 0.3), abs=1e-12)
    _, low, high = m.mean_with_ci(values, n_boot=4000, level=0.8)
    assert (low, high) == pytest.approx((0.4 / 3, 0.8 / 3), abs=1e-12)
    assert m.mean_with_ci([0.5]) == (0.5, 0.5, 0.5)
    assert m.mean_with_ci(values, seed=3) == m.mean_with_ci(values, seed=3)
    with pytest.raises(ValueError):
        m.mean_with_ci([])
    with pytest.raises(ValueError, match="NaN"):
        m.mean_with_ci([0.1, float("nan")])


def test_aggregate_rows_by_scope():
    rows = [
        dict(intervention="a", category="c1", family="extreme", differential_elicitation=0.1,
             generalization_accuracy=0.6),
        dict(intervention="a", category="c2", family="extreme", differential_elicitation=0.3,
             generalization_accuracy=0.8),
        dict(intervention="a", category="c2", family="probing", differential_elicitation=-0.1,
             generalization_accuracy=0.4),
        dict(intervention="b", category="c1", family="extreme", differential_elicitation=float("nan"),
             generalization_accuracy=0.5),
    ]
    got = {(g.intervention, g.scope): g for g in m.aggregate_rows(rows)}
    assert set(got) == {("a", "all"), ("a", "category:c1"), ("a", "category:c2"),
                        ("a", "family:extreme"), ("a", "family:probing")}
    assert got["a", "all"].mean_de == pytest.approx(0.1)
    assert got["a", "all"].n_shifts == 3
    assert got["a", "all"].mean_generalization_accuracy == pytest.approx(0.6)
    assert got["a", "category:c2"].mean_de == pytest.approx(0.1)
    assert got["a", "family:extreme"].mean_de == pytest.approx(0.2)
    assert got["a", "category:c1"].ci_low == got["a", "category:c1"].ci_high == 0.1


def test_length_baselines():
    pairs = [("aaa", "a"), ("aa", "a"), ("a", "aaaa"), ("abcd", "ab")]
    lb = m.length_baselines(pairs)
    assert (lb.longer, lb.shorter) == (0.75, 0.25)
    assert lb.flagged
    balanced = [("aa", "a")] * 7 + [("a", "aa")] * 3
    lb = m.length_baselines(balanced)
    assert (lb.longer, lb.shorter) == (0.7, 0.3)
    assert not lb.flagged  # 0.2 above chance is not MORE than 0.2


@pytest.mark.data
def test_published_differential_elicitation_is_recomputed_exactly(genies_data_dir: Path):
    root = genies_data_dir.parent / "reference-results"
    tables = sorted(root.glob("**/*.csv"))
    if not tables:
        pytest.skip(f"no published tables under {root}")
    checked = 0
    for table in tables:
        with table.open(newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                value = m.differential_elicitation(float(row["generalization_accuracy"]),
                                                   float(row["baseline_accuracy"]),
                                                   float(row["target_tuned_capability"]))
                assert value == float(row["differential_elicitation"]), f"{table}:{line}"
                checked += 1
    assert checked >= len(tables)


# --- Issue 18, mutation audit of metrics.py: the gaps docs/TESTING.md listed as open. ---

# Seeds whose first ten tie coins (`default_rng(seed).random(n) < 0.5`, SPEC A.7) all come up
# True, and all come up False; seed 0's do neither, so a seed that is dropped or replaced shows.
ALL_HEADS, ALL_TAILS = 1064, 415


def test_the_seeds_used_below_have_the_stated_coins():
    assert (np.random.default_rng(ALL_HEADS).random(10) < 0.5).all()
    assert not (np.random.default_rng(ALL_TAILS).random(10) < 0.5).any()
    coins0 = np.random.default_rng(0).random(10) < 0.5
    assert 0 < coins0.sum() < 10


def test_accuracy_uses_the_given_seed_for_ties():
    ties = [0.5] * 10
    assert m.accuracy(ties, seed=ALL_HEADS) == 1.0
    assert m.accuracy(ties, seed=ALL_TAILS) == 0.0
    assert m.accuracy(ties) == m.accuracy(ties, seed=0) == 0.3  # seed 0: F T T T F F F F F F
    # ties settled by the coin at their position, strict wins and losses as they are
    assert m.accuracy([0.5, 0.9, 0.5, 0.1], seed=ALL_HEADS) == 0.75
    assert m.accuracy([0.5, 0.9, 0.5, 0.1], seed=ALL_TAILS) == 0.25


def test_bootstrap_ties_follow_the_seed():
    """All ties with seed ALL_HEADS: every pair is right, so every resample scores 1."""
    assert m.bootstrap_accuracy_ci([0.5] * 10, seed=ALL_HEADS) == (1.0, 1.0)
    assert m.bootstrap_accuracy_ci([0.5] * 10, seed=ALL_TAILS) == (0.0, 0.0)
    assert m.bootstrap_accuracy_ci([0.5] * 10, seed=ALL_HEADS, groups=list(range(10))) == (1.0, 1.0)
    assert m.bootstrap_accuracy_ci([0.5] * 10, seed=ALL_TAILS, groups=[3, 3] * 5) == (0.0, 0.0)


def test_bootstrap_draws_the_first_pair_and_the_first_prompt():
    """Four pairs (or prompts), only the first right: a resample scores K/4 with K ~
    Binomial(4, 1/4); P(K = 0) = (3/4)^4 = 0.316 > 2.5 %, P(K <= 2) = 0.949 < 97.5 % <=
    P(K <= 3) = 0.996, so the 95 % interval is (0, 3/4). Never drawing the first would give (0, 0)."""
    p = [0.9, 0.1, 0.1, 0.1]
    assert m.bootstrap_accuracy_ci(p, n_boot=4000) == (0.0, 0.75)
    assert m.bootstrap_accuracy_ci(p, groups=[0, 1, 2, 3], n_boot=4000) == (0.0, 0.75)
    # Groups of two pairs each (the first prompt both right): K/2 with K ~ Binomial(2, 1/2).
    assert m.bootstrap_accuracy_ci(p[:1] * 2 + p[1:3], groups=[4, 4, 9, 9], n_boot=4000) == (0.0, 1.0)


def test_grouped_bootstrap_has_no_extra_group():
    """Two prompts, one right and one wrong: resamples score 0, 1/2 or 1 with probabilities
    1/4, 1/2, 1/4, so the 95 % interval is (0, 1); every resample is a number (an empty extra
    group drawn alone would give 0/0)."""
    assert m.bootstrap_accuracy_ci([0.9, 0.1], groups=[0, 1], n_boot=4000) == (0.0, 1.0)
    assert m.bootstrap_accuracy_ci([0.9, 0.1], groups=[0, 1], n_boot=4000, level=0.4) == (0.5, 0.5)


@pytest.mark.parametrize("level", [0, 0.0, 1, 1.0, 1.5, -0.5])
def test_bootstrap_refuses_levels_outside_the_open_unit_interval(level):
    with pytest.raises(ValueError, match=rf"^level must be in \(0, 1\), got {level}$"):
        m.bootstrap_accuracy_ci([0.9, 0.1], level=level)


def test_a_single_pair_is_scored():
    assert m.accuracy([0.9]) == 1.0
    assert m.accuracy([0.2]) == 0.0
    assert m.brier([0.7]) == pytest.approx(0.09)
    assert m.bootstrap_accuracy_ci([0.9]) == (1.0, 1.0)


@pytest.mark.parametrize(("bad", "message"), [
    ([], r"^p_preferred is empty: there are no evaluation pairs to score$"),
    ([0.2, float("nan"), float("nan")], r"^p_preferred contains 2 NaN values$"),
    ([0.5, 1.25], r"^p_preferred must lie in \[0, 1\]; got values in \[0\.5, 1\.25\]$"),
    ([-0.5, 0.5], r"^p_preferred must lie in \[0, 1\]; got values in \[-0\.5, 0\.5\]$"),
])
def test_bad_probabilities_are_named_in_the_error(bad, message):
    with pytest.raises(ValueError, match=message):
        m.brier(bad)


def test_one_calibration_bin_is_allowed_and_zero_is_refused():
    """One bin holds every item of both orientations: mean confidence and mean outcome are both
    1/2, whatever p is, so the error is 0."""
    assert m.rms_calibration_error([0.9, 0.8, 0.3], n_bins=1) == pytest.approx(0.0)
    assert m.expected_calibration_error([0.9, 0.8, 0.3], n_bins=1) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"^n_bins must be >= 1, got 0$"):
        m.rms_calibration_error([0.9], n_bins=0)


def test_confidence_one_shares_the_last_bin():
    """p = (1.0, 0.9): items (1.0, win) (0.9, win) (0.0, loss) (0.1, loss). Bins: [0, .1) holds
    0.0 (error 0), [.1, .2) holds 0.1 (error .1), [.9, 1] holds 0.9 and 1.0 (mean .95, outcome 1,
    error .05). RMS = sqrt(1/4 * .1^2 + 2/4 * .05^2) = sqrt(.00375). A separate bin for 1.0
    would give sqrt(1/4 * .1^2 + 1/4 * .1^2) = sqrt(.005)."""
    assert m.rms_calibration_error([1.0, 0.9]) == pytest.approx(math.sqrt(0.00375))


def test_ece_counts_a_bin_with_a_single_item():
    """p = 0.75: (0.75, win) alone in [.7, .8), (0.25, loss) alone in [.2, .3); error .25 each."""
    assert m.expected_calibration_error([0.75]) == pytest.approx(0.25)
    assert m.rms_calibration_error([0.75]) == pytest.approx(0.25)


def test_calibration_defaults_to_ten_bins():
    """p = (.72, .22): items (.72, win) (.22, win) (.28, loss) (.78, loss). With 10 bins .72/.78
    share [.7, .8) (mean .75, outcome 1/2) and .22/.28 share [.2, .3) (mean .25, outcome 1/2):
    both errors .25. With 11 bins (width 1/11) all four are alone: ECE (.28+.78+.78+.28)/4 = .53."""
    assert m.expected_calibration_error([0.72, 0.22]) == pytest.approx(0.25)
    assert m.rms_calibration_error([0.72, 0.22]) == pytest.approx(0.25)
    assert m.expected_calibration_error([0.72, 0.22], n_bins=11) == pytest.approx(0.53)


def test_legacy_rms_bins_and_the_twenty_item_rule():
    import random

    def labels(n: int) -> list[int]:
        random.seed(42)
        return [random.choice([0, 1]) for _ in range(n)]

    # 29 draws: 20 zeros, 9 ones. p = .9: 20 items at q = .1 (bin 1: exactly 20, counts),
    # 9 at q = .9 (bin 5: skipped). Label mean 9/29: |9/29 - .1| = 61/290.
    assert labels(29).count(0) == 20
    assert m.legacy_rms_calibration_error([0.9] * 29) == pytest.approx(61 / 290)
    # 52 draws: 20 ones: q = .9 x 20 (bin 5: exactly 20) and q = .1 x 32 both count.
    assert labels(52).count(1) == 20
    mean_l = 20 / 52
    assert m.legacy_rms_calibration_error([0.9] * 52) == pytest.approx(
        math.sqrt(((mean_l - 0.9) ** 2 + (mean_l - 0.1) ** 2) / 2))
    # 60 draws, 25 ones: q = 1.0 x 25 lies outside the five bins on [0, 1] (np.digitize puts it
    # past the last edge) even with more than 20 items; only q = 0 x 35 counts: |25/60 - 0|.
    assert labels(60).count(1) == 25
    assert m.legacy_rms_calibration_error([1.0] * 60) == pytest.approx(25 / 60)


def test_elicitation_of_no_and_full_capability():
    assert math.isnan(m.elicitation(0.6, 0.0))
    assert math.isnan(m.elicitation(0.0, 0))
    assert m.elicitation(0.7, 1.0) == 0.7
    assert m.elicitation(0.0, 1.0) == 0.0
    assert m.differential_elicitation(0.7, 0.5, 1.0) == pytest.approx(0.2)


def test_length_baselines_score_equal_lengths_as_ties():
    """Equal lengths are ties (0.5) settled by the seeded coin of their position: with the
    all-heads seed both rules win every tie, with the all-tails seed they lose every tie."""
    pairs = [("ab", "a"), ("a", "ab"), ("aa", "bb"), ("abc", "xyz")]
    lb = m.length_baselines(pairs, seed=ALL_HEADS)
    assert (lb.longer, lb.shorter) == (0.75, 0.75)
    lb = m.length_baselines(pairs, seed=ALL_TAILS)
    assert (lb.longer, lb.shorter) == (0.25, 0.25)
    equal = [("a", "b")] * 10
    assert m.length_baselines(equal, seed=ALL_HEADS) == m.LengthBaselines(1.0, 1.0)
    assert m.length_baselines(equal, seed=ALL_TAILS) == m.LengthBaselines(0.0, 0.0)
    # seed 0 (the default): coins F T T T F F F F F F
    assert m.length_baselines(equal) == m.LengthBaselines(0.3, 0.3)
    with pytest.raises(ValueError, match=r"^no pairs to compute length baselines on$"):
        m.length_baselines([])


def test_mean_with_ci_is_reproducible_and_uses_n_boot_and_the_seed():
    """With five resamples of ten values the interval moves with the draws: one seed gives one
    interval, other seeds other ones. One resample gives a zero-width interval at its mean."""
    values = [float(v) for v in range(10)]
    first = m.mean_with_ci(values, seed=5, n_boot=5)
    assert m.mean_with_ci(values, seed=5, n_boot=5) == first
    assert len({m.mean_with_ci(values, seed=s, n_boot=5) for s in range(10)}) > 1
    mean, low, high = m.mean_with_ci(values, seed=5, n_boot=1)
    assert mean == 4.5 and low == high and low * 10 == int(low * 10)  # a mean of ten integers
    with pytest.raises(ValueError, match=r"^cannot average an empty list of shifts$"):
        m.mean_with_ci([])


def test_bootstrap_accuracy_ci_is_reproducible_with_few_draws():
    p = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.95, 0.05]
    groups = [0, 0, 1, 1, 2, 2, 3, 3, 4, 5]
    for g in (None, groups):
        first = m.bootstrap_accuracy_ci(p, seed=5, groups=g, n_boot=5)
        assert m.bootstrap_accuracy_ci(p, seed=5, groups=g, n_boot=5) == first
        assert len({m.bootstrap_accuracy_ci(p, seed=s, groups=g, n_boot=5) for s in range(10)}) > 1


def _row(intervention, category, family, de, ga):
    return dict(intervention=intervention, category=category, family=family,
                differential_elicitation=de, generalization_accuracy=ga)


def test_aggregate_rows_skips_nan_rows_wherever_they_are_and_orders_the_scopes():
    rows = [
        _row("b", "c1", "extreme", float("nan"), 0.5),
        _row("b", "c1", "extreme", 0.2, 0.7),
        _row("a", "c2", "probing", -0.1, 0.4),
        _row("a", "c1", "extreme", float("nan"), 0.9),
        _row("a", "c1", "extreme", 0.1, 0.6),
        _row("a", "c2", "extreme", 0.3, 0.8),
    ]
    got = m.aggregate_rows(rows)
    assert [(g.intervention, g.scope, g.n_shifts) for g in got] == [
        ("a", "all", 3), ("a", "category:c1", 1), ("a", "category:c2", 2),
        ("a", "family:extreme", 2), ("a", "family:probing", 1),
        ("b", "all", 1), ("b", "category:c1", 1), ("b", "family:extreme", 1),
    ]
    by = {(g.intervention, g.scope): g for g in got}
    assert by["a", "all"].mean_de == pytest.approx(0.1)
    assert by["a", "all"].mean_generalization_accuracy == pytest.approx(0.6)
    assert by["a", "family:extreme"].mean_de == pytest.approx(0.2)
    assert by["a", "family:extreme"].mean_generalization_accuracy == pytest.approx(0.7)
    assert (by["b", "all"].mean_de, by["b", "all"].ci_low, by["b", "all"].ci_high) == (0.2, 0.2, 0.2)
    assert by["b", "all"].mean_generalization_accuracy == 0.7


def test_aggregate_rows_passes_seed_and_n_boot_on():
    """Ten shifts with DE 0 .. 0.9: with one resample the interval has zero width (it is that
    resample's mean); with five it moves with the seed and repeats for the same seed."""
    rows = [_row("a", "c", "f", v / 10, 0.5) for v in range(10)]
    (one,) = m.aggregate_rows(rows, seed=3, n_boot=1)[:1]
    assert one.ci_low == one.ci_high
    five = [m.aggregate_rows(rows, seed=s, n_boot=5)[0] for s in range(10)]
    assert len({(a.ci_low, a.ci_high) for a in five}) > 1
    assert m.aggregate_rows(rows, seed=4, n_boot=5)[0] == five[4]
