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
