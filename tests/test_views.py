"""Derived data (`genies.pipeline.views`) and the jobs that use it: parts, target mixes, keys."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from genies.data.schema import Distribution, Example
from genies.errors import ConfigError
from genies.interventions.registry import load_intervention
from genies.pipeline.plan import PlanBuilder
from genies.pipeline.views import Part, TargetMix, TrainView


def _examples(tag: str, n: int) -> list[Example]:
    return [Example(f"{tag} prompt {i}", (f"{tag} good {i}", f"{tag} bad {i}"), 0) for i in range(n)]


DISTS = {name: Distribution.from_examples(name, _examples(name, 30), _examples(f"{name}-test", 10))
         for name in ("src", "tgt")}


def _builder(seed: int = 0) -> PlanBuilder:
    methods = {name: load_intervention(name, "cpu") for name in ("zero_shot", "mms")}
    return PlanBuilder(methods, seed=seed, model_fingerprint="fp", precision={"dtype": "float32"},
                       data_hash=lambda name, split: DISTS[name].content_hash(split))


def test_complementary_parts_are_disjoint_cover_the_split_and_depend_on_seed_and_name() -> None:
    held, rest = Part(0.0, 0.33, seed=1), Part(0.33, 1.0, seed=1)
    a, b = held.indices(30, "src/train"), rest.indices(30, "src/train")
    assert len(a) == round(0.33 * 30) == 10 and len(b) == 20
    assert sorted(a + b) == list(range(30)) and a == sorted(a)
    assert held.indices(30, "src/train") == a  # deterministic
    assert Part(0.0, 0.33, seed=2).indices(30, "src/train") != a
    assert held.indices(30, "tgt/train") != a
    with pytest.raises(ConfigError):
        Part(0.5, 0.5, seed=0)


def test_target_mix_replaces_round_f_n_examples_with_distinct_target_examples() -> None:
    for fraction in (0.01, 0.05, 0.10, 0.35, 1.0):
        mix = TargetMix("tgt", fraction, seed=3)
        mixed = mix.apply(DISTS["src"].train, DISTS["tgt"].train, "src")
        from_target = [ex for ex in mixed if ex.prompt.startswith("tgt")]
        assert len(mixed) == 30 and len(from_target) == round(fraction * 30)
        assert len({ex.prompt for ex in from_target}) == len(from_target)  # without replacement
        kept = [ex for ex in mixed if ex.prompt.startswith("src")]
        assert all(ex in DISTS["src"].train for ex in kept)
        assert mix.apply(DISTS["src"].train, DISTS["tgt"].train, "src") == mixed  # seeded
    with pytest.raises(ConfigError, match="needs 31 examples of tgt"):
        TargetMix("tgt", 1.0, 0).apply(_examples("src", 31), DISTS["tgt"].train, "src")
    with pytest.raises(ConfigError):
        TargetMix("tgt", 0.0, 0)


def test_plain_jobs_keep_their_keys_and_derived_jobs_get_their_own() -> None:
    jobs = _builder()
    plain = jobs.fit("mms", "src")
    assert plain.view is None and plain.train_data(DISTS.__getitem__).train == DISTS["src"].train
    mixed = jobs.fit("mms", "src", TrainView(mix=TargetMix("tgt", 0.1, 0)))
    held = jobs.fit("mms", "src", TrainView(part=Part(0.33, 1.0, 0)))
    assert len({plain.key, mixed.key, held.key}) == 3
    assert jobs.fit("mms", "src", TrainView(mix=TargetMix("tgt", 0.1, 0))) is mixed  # deduplicated
    assert len(held.train_data(DISTS.__getitem__).train) == 20
    assert held.train_data(DISTS.__getitem__).test == []
    # a method that reads no training data has one fit whatever view is asked for
    assert jobs.fit("zero_shot", "src", TrainView(part=Part(0.0, 0.5, 0))) is jobs.fit("zero_shot", "tgt")
    whole = jobs.predict(plain, "src", "train")
    part = jobs.predict(plain, "src", "train", Part(0.0, 0.33, 0))
    assert whole.key != part.key and whole.part is None
    scored = part.data(DISTS.__getitem__).split("train")
    assert scored == Part(0.0, 0.33, 0).select(DISTS["src"].train, "src/train") and len(scored) == 10
    assert "[0.00:0.33]" in part.label and "+10% tgt" in mixed.label


def test_a_target_mix_key_changes_with_the_target_data() -> None:
    view = TrainView(mix=TargetMix("tgt", 0.1, 0))
    before = _builder().fit("mms", "src", view).key
    original = DISTS["tgt"]
    DISTS["tgt"] = Distribution.from_examples("tgt", _examples("other", 30), original.test)
    try:
        assert _builder().fit("mms", "src", view).key != before
        assert _builder().fit("mms", "src").key == _builder().fit("mms", "src").key
    finally:
        DISTS["tgt"] = original


def test_weak_labels_are_the_weak_supervisors_choices_read_without_ground_truth() -> None:
    import numpy as np

    from genies.interventions.scores import Predictions
    from genies.pipeline.views import WeakLabels, weak_choices

    def stored(preferred: list[int], scores: list[list[float]]) -> Predictions:
        """What the pipeline stores for Bradley-Terry `scores`: one pair per other response."""
        rows = [(i, p, d, 1 / (1 + np.exp(s[d] - s[p]))) for i, (p, s) in enumerate(zip(preferred, scores))
                for d in range(len(s)) if d != p]
        i, p, d, prob = (np.array(c) for c in zip(*rows))
        return Predictions(i, p, d, prob, None, {})

    scores = [[0.0, 2.0], [1.0, -1.0, 0.0], [0.5, 0.5]]
    truth, other = stored([0, 0, 1], scores), stored([1, 2, 0], scores)  # the same scores, other labels
    choices = weak_choices(3, truth)
    assert choices == weak_choices(3, other)
    assert [c.preferred for c in choices] == [1, 0, 0]  # the tie goes to the first response
    s = 1 / (1 + np.exp(-np.array([2.0, 1.0, 2.0, 0.0])))
    assert [c.confidence for c in choices] == pytest.approx([s[0], (s[1] + s[2]) / 2, 0.5], abs=1e-6)
    examples = [Example("p", ("a", "b"), 0), Example("q", ("a", "b", "c"), 0), Example("r", ("a", "b"), 1)]
    soft = WeakLabels("job", soft=True).apply(examples, truth)
    assert [ex.preferred for ex in soft] == [1, 0, 0] and soft[0].confidence == pytest.approx(s[0], abs=1e-6)
    assert all(ex.confidence == 1.0 for ex in WeakLabels("job", soft=False).apply(examples, truth))
    with pytest.raises(Exception, match="miss example 3"):
        weak_choices(4, truth)


def test_a_weak_label_fit_key_names_the_labelling_job_and_needs_the_store() -> None:
    from genies.pipeline.views import WeakLabels

    jobs = _builder()
    a = jobs.fit("mms", "src", TrainView(part=Part(0.5, 1.0, 0), labels=WeakLabels("job-a", soft=True)))
    b = jobs.fit("mms", "src", TrainView(part=Part(0.5, 1.0, 0), labels=WeakLabels("job-b", soft=True)))
    hard = jobs.fit("mms", "src", TrainView(part=Part(0.5, 1.0, 0), labels=WeakLabels("job-a", soft=False)))
    assert len({a.key, b.key, hard.key, jobs.fit("mms", "src", TrainView(part=Part(0.5, 1.0, 0))).key}) == 4
    with pytest.raises(Exception, match="needs the job store"):
        a.train_data(DISTS.__getitem__)
    with pytest.raises(ConfigError, match="cannot be combined"):
        TrainView(mix=TargetMix("tgt", 0.1, 0), labels=WeakLabels("job-a", soft=True))


def test_hard_labels_keep_their_hash_and_soft_ones_change_it() -> None:
    import dataclasses

    from genies.data.schema import examples_hash, train_pairs

    examples = _examples("src", 3)
    assert examples_hash(examples) == examples_hash([dataclasses.replace(ex, confidence=1.0) for ex in examples])
    soft = [dataclasses.replace(ex, confidence=0.8) for ex in examples]
    assert examples_hash(soft) != examples_hash(examples)
    assert [p.confidence for p in train_pairs(soft, 0)] == [0.8] * 3


def test_a_part_outside_the_unit_interval_is_refused_with_its_bounds() -> None:
    with pytest.raises(ConfigError) as err:
        Part(0.5, 1.5, seed=0)
    assert str(err.value) == "a part of a split needs 0 <= start < stop <= 1, got [0.5, 1.5)"
    with pytest.raises(ConfigError, match=r"got \[-0\.1, 0\.5\)"):
        Part(-0.1, 0.5, seed=0)
    assert Part(0.0, 1.0, seed=0).indices(4, "src/train") == [0, 1, 2, 3]  # both bounds are allowed


def test_a_part_selects_the_positions_its_split_name_draws() -> None:
    examples = _examples("src", 30)
    part = Part(0.0, 0.5, seed=4)
    for name in ("src/train", "tgt/train"):
        assert part.select(examples, name) == [examples[i] for i in part.indices(30, name)]
    assert part.select(examples, "src/train") != part.select(examples, "tgt/train")


def _pairs(rows: list[tuple[int, int, int, float]]):
    from genies.interventions.scores import Predictions

    i, p, d, prob = (np.array(c) for c in zip(*rows))
    return Predictions(i, p, d, prob.astype(np.float64), None, {})


def test_weak_labels_of_certain_pairs_are_finite_and_silent() -> None:
    """Probabilities of exactly 0 and 1 (a confident supervisor) are floored at 1e-9 and
    1 - 1e-9: no log(0) warning, and two responses that both certainly beat the stored preferred
    one tie (the first wins) instead of making inf - inf = NaN."""
    from genies.pipeline.views import weak_choices

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        choices = weak_choices(3, _pairs([(0, 0, 1, 0.0), (0, 0, 2, 0.0), (1, 0, 1, 1.0), (2, 1, 0, 1.0)]))
    # example 0: scores (0, L, L) with L = logit(1 - 1e-9): top 1, mean(sigmoid(0), sigmoid(L)) = 0.75
    # example 1: (0, -L): top 0, sigmoid(L) = 1 - 1e-9 -> 1.0; example 2: (-L, 0): top 1
    assert [(c.preferred, c.confidence) for c in choices] == [(1, 0.75), (0, 1.0), (1, 1.0)]


def test_weak_labels_rank_by_six_decimals_not_by_integers() -> None:
    """P(0 beats 1) = 0.45: response 1 leads by logit 0.2, which rounding to whole numbers would
    make a tie (won by response 0)."""
    from genies.pipeline.views import weak_choices

    (choice,) = weak_choices(1, _pairs([(0, 0, 1, 0.45)]))
    assert (choice.preferred, choice.confidence) == (1, 0.55)


def test_weak_label_errors_name_the_example_and_the_problem() -> None:
    from genies.errors import JobError
    from genies.pipeline.views import WeakLabels, weak_choices

    with pytest.raises(JobError) as err:
        weak_choices(2, _pairs([(0, 0, 1, 0.5), (2, 0, 1, 0.5)]))
    assert str(err.value) == "weak labels: a prediction names example 2 of a part of 2 examples"
    long_prompt = "a prompt of more than forty characters, cut at forty"
    examples = [Example(long_prompt, ("a", "b"), 0)]
    with pytest.raises(JobError) as err:  # the supervisor scored a third response the example lacks
        WeakLabels("job", soft=True).apply(examples, _pairs([(0, 0, 1, 0.5), (0, 0, 2, 0.1)]))
    assert str(err.value) == ("weak labels: example 'a prompt of more than forty characters, ' has 2 responses, "
                              "the weak label names response 2")


def test_view_keys_name_each_derivation_by_its_fields() -> None:
    """These names and fields enter every derived fit's cache key: renaming one silently orphans
    the cached fits, so they are fixed here."""
    from genies.pipeline.views import WeakLabels

    assert TrainView().key() == {}
    assert TrainView(part=Part(0.0, 0.5, 1), mix=TargetMix("tgt", 0.1, 2)).key() == {
        "part": {"start": 0.0, "stop": 0.5, "seed": 1}, "mix": {"target": "tgt", "fraction": 0.1, "seed": 2}}
    assert TrainView(labels=WeakLabels("job", soft=False)).key() == {"labels": {"job": "job", "soft": False}}


def test_view_errors_say_what_is_wrong() -> None:
    from genies.errors import JobError
    from genies.pipeline.views import WeakLabels

    with pytest.raises(ConfigError) as err:
        TargetMix("tgt", 1.5, 0)
    assert str(err.value) == "a target mix fraction must be in (0, 1], got 1.5"
    assert TargetMix("tgt", 1.0, 0).n_target(7) == 7
    with pytest.raises(ConfigError) as err:
        TrainView(mix=TargetMix("tgt", 0.1, 0), labels=WeakLabels("job", soft=True))
    assert str(err.value) == ("weak labels and a target mix cannot be combined: the mixed-in examples have no "
                              "weak labels")
    with pytest.raises(JobError) as err:
        TrainView(labels=WeakLabels("job", soft=True)).train_split("src", DISTS.__getitem__)
    assert str(err.value) == "a fit on weak labels needs the job store that holds them"


def test_a_views_training_split_is_the_part_then_the_mix_or_the_weak_labels() -> None:
    from genies.interventions.scores import Predictions
    from genies.pipeline.views import WeakLabels

    source = Distribution.from_examples("src", _examples("src", 30), _examples("src-test", 10), {"origin": "x"})
    dists = {"src": source, "tgt": DISTS["tgt"]}
    part, mix = Part(0.0, 0.5, 1), TargetMix("tgt", 0.2, 3)
    mixed = TrainView(part=part, mix=mix).train_split("src", dists.__getitem__)
    assert (mixed.id, mixed.metadata, mixed.test) == ("src", {"origin": "x"}, [])
    held = part.select(source.train, "src/train")
    assert mixed.train == mix.apply(held, DISTS["tgt"].train, "src")
    assert sum(ex.prompt.startswith("tgt") for ex in mixed.train) == 3 and len(mixed.train) == 15

    asked: list[str] = []

    def predictions(key: str) -> Predictions:
        asked.append(key)  # every example of the part: response 1 beats the stored preferred one, P = 0.25
        n = 15
        return Predictions(np.arange(n), np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64), np.full(n, 0.25))

    labelled = TrainView(part=part, labels=WeakLabels("weak-job", soft=True)).train_split(
        "src", dists.__getitem__, predictions)
    assert asked == ["weak-job"]
    assert [ex.prompt for ex in labelled.train] == [ex.prompt for ex in held]
    assert {(ex.preferred, ex.confidence) for ex in labelled.train} == {(1, 0.75)}


def test_a_part_prediction_scores_only_its_examples_of_its_split() -> None:
    from genies.interventions.scores import Predictions
    from genies.pipeline.views import WeakLabels

    source = Distribution.from_examples("src", _examples("src", 30), _examples("src-test", 10), {"origin": "x"})
    dists = {"src": source, "tgt": DISTS["tgt"]}
    jobs = _builder()
    plain = jobs.fit("mms", "src")
    part = Part(0.0, 0.5, 2)
    on_test = jobs.predict(plain, "src", "test", part).data(dists.__getitem__)
    assert (on_test.id, on_test.metadata, on_test.train) == ("src", {"origin": "x"}, [])
    assert on_test.test == part.select(source.test, "src/test") and len(on_test.test) == 5
    on_train = jobs.predict(plain, "src", "train", part).data(dists.__getitem__)
    assert on_train.train == part.select(source.train, "src/train") and on_train.test == []
    # a weak-label fit reads its labels through the store's predictions
    weak = jobs.fit("mms", "src", TrainView(part=Part(0.5, 1.0, 0), labels=WeakLabels("job-a", soft=False)))
    n = 15
    stored = {"job-a": Predictions(np.arange(n), np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64),
                                   np.full(n, 0.9))}
    train = weak.train_data(dists.__getitem__, stored.__getitem__).train
    assert len(train) == n and {(ex.preferred, ex.confidence) for ex in train} == {(0, 1.0)}
