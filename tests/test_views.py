"""Derived data (`genies.pipeline.views`) and the jobs that use it: parts, target mixes, keys."""

from __future__ import annotations

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
