"""Known answers for every metric, computed by hand, plus the published DE columns recomputed."""

from __future__ import annotations

import csv
import math
from pathlib import Path

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


def test_bootstrap_accuracy_ci():
    assert m.bootstrap_accuracy_ci([0.9] * 10) == (1.0, 1.0)
    p = [0.9, 0.8, 0.7, 0.2]
    # Prompt-level resampling with groups A (3 wins) and B (1 loss): each resample is AA (1.0),
    # AB (0.75) or BB (0.0), BB with probability 1/4, so the 95 % interval is [0, 1].
    assert m.bootstrap_accuracy_ci(p, groups=[0, 0, 0, 1], n_boot=2000) == (0.0, 1.0)
    low, high = m.bootstrap_accuracy_ci(p * 50, seed=1)
    assert low < 0.75 < high and high - low < 0.2
    assert m.bootstrap_accuracy_ci(p * 50, seed=1) == (low, high)


def test_mean_with_ci():
    mean, low, high = m.mean_with_ci([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and 0.1 <= low <= mean <= high <= 0.3
    assert m.mean_with_ci([0.5]) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        m.mean_with_ci([])


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
