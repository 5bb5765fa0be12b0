"""The representation methods end to end on the tiny random Llama and a planted text feature:
the preferred response is written in capitals and ends with a run of "!" (the others: lower case
and a run of "."), a feature strong enough to survive a random model's attention mixing.

Every method goes the pipeline's way: fit on the source's train split -> save_fitted /
load_fitted -> scorer -> label-free Scores -> pair_with_labels."""

from __future__ import annotations

import dataclasses
import random
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from genies.data.schema import Distribution, EvalSet, Example
from genies.interventions import _probes as P
from genies.interventions.base import Intervention
from genies.interventions.ccs import CCS, legacy_response_accuracy
from genies.interventions.context import FitContext
from genies.interventions.cra import CRA
from genies.interventions.fitted import load_fitted, save_fitted
from genies.interventions.lat import LAT
from genies.interventions.logistic import Logistic
from genies.interventions.mms import MMS
from genies.interventions.scores import Predictions, Scores, pair_with_labels
from genies.models.activations import Activations, ActivationStore

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "table", "light", "north", "paper"]
CLASSES: dict[str, type[Intervention]] = {"mms": MMS, "lat": LAT, "cra": CRA, "ccs": CCS, "logistic": Logistic}

# key -> hyperparameters small enough for the tiny model (2 layers x 4 heads x 8 dims)
METHODS = {
    "mms": {"k": 4},
    "lat": {"k": 1},
    "lat_stim2_pca": {"k": 1, "stimulus": 2, "direction": "pca"},
    "cra": {"k": 4},
    "ccs": {"epochs": 200, "restarts": 2, "lr": 1e-2},
    "logistic": {},
    "logistic_layer1": {"layer": 1},
}


def method(key: str, **overrides) -> Intervention:
    return CLASSES[key.split("_")[0]](**{**METHODS.get(key, {}), **overrides})


def make_examples(n: int, seed: int, n_responses: int) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        prompt = "Q: " + " ".join(rng.choice(WORDS) for _ in range(3)) + "\nA:"
        responses = [" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4))) for _ in range(n_responses)]
        preferred = rng.randrange(n_responses)
        responses = [r.upper() + " !!!!!!!!" if i == preferred else r + " ........" for i, r in enumerate(responses)]
        examples.append(Example(prompt, tuple(responses), preferred))
    return examples


@pytest.fixture(scope="module")
def source() -> Distribution:
    return Distribution.from_examples("planted_source", make_examples(40, 0, 3), make_examples(20, 1, 2))


@pytest.fixture(scope="module")
def target() -> Distribution:
    return Distribution.from_examples("planted_target", make_examples(2, 2, 2), make_examples(12, 3, 2))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> FitContext:
    return FitContext(seed=0, activation_store=ActivationStore(tmp_path_factory.mktemp("acts")))


@dataclasses.dataclass(frozen=True)
class Fitted:
    method: Intervention
    fitted: object  # as fit returned it
    loaded: object  # as load_fitted read it back
    directory: Path


def fit_and_save(m: Intervention, lm, source: Distribution, ctx: FitContext, directory: Path) -> Fitted:
    fitted = m.fit(lm, source.train_only(), ctx)
    save_fitted(fitted, directory, intervention=m.name)
    return Fitted(m, fitted, load_fitted(type(m).fitted_type(), directory), directory)


@pytest.fixture(scope="module")
def fitted(tiny_llama, source, ctx, tmp_path_factory) -> dict[str, Fitted]:
    return {key: fit_and_save(method(key), tiny_llama, source, ctx, tmp_path_factory.mktemp(key)) for key in METHODS}


def score(f: Fitted, lm, data: EvalSet, ctx: FitContext, fitted=None) -> Scores:
    return f.method.scorer(lm, f.loaded if fitted is None else fitted, ctx)(data)


def predict(f: Fitted, lm, dist: Distribution, ctx: FitContext, split: str = "test", fitted=None) -> Predictions:
    """What the pipeline does: score the split's queries, then pair the scores with its labels."""
    data = dist.eval_set(split, with_labels=f.method.reads_eval_labels)
    return pair_with_labels(score(f, lm, data, ctx, fitted), dist.split(split), f"{dist.id}/{split}")


def assert_same_scores(x: Scores, y: Scores) -> None:
    for a, b in zip(x.beats, y.beats, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(x.response_scores, y.response_scores, strict=True):
        np.testing.assert_array_equal(a, b)


def assert_same_fields(x: object, y: object) -> None:
    assert type(x) is type(y)
    for field in dataclasses.fields(x):
        a, b = getattr(x, field.name), getattr(y, field.name)
        if dataclasses.is_dataclass(a):
            assert_same_fields(a, b)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b and type(a) is type(b), field.name


def accuracy(pred: Predictions) -> float:
    return float(np.mean(pred.p_preferred > 0.5))


# CCS is left out here: its probe looks for a feature that FLIPS between the Yes and the No
# version of a text, which a random model does not make out of a planted word feature. Its known
# answer on the same pipeline is test_ccs_finds_a_planted_contrast below (and tests/test_probes.py).
@pytest.mark.parametrize("key", [k for k in METHODS if k != "ccs"])
def test_source_accuracy(key, tiny_llama, source, ctx, fitted):
    pred = predict(fitted[key], tiny_llama, source, ctx)
    assert len(pred.p_preferred) == len(source.eval_pairs("test")) == 20
    assert accuracy(pred) >= 0.95, fitted[key].loaded


@pytest.mark.parametrize("key", list(METHODS))
def test_target_labels_are_never_read(key, tiny_llama, target, ctx, fitted):
    """The method needs no labels (an EvalSet without them scores), ignores any it is handed
    (shuffled labels give identical Scores), and the labels only pick which entry the pipeline
    reads: swapping the preferred response of half the examples turns those pairs' p into
    exactly 1 - p."""
    f = fitted[key]
    assert not f.method.reads_eval_labels
    bare = target.eval_set("test")
    assert bare.labels is None
    scores = score(f, tiny_llama, bare, ctx)
    shuffled = dataclasses.replace(bare, labels=tuple(random.Random(1).choice((0, 1)) for _ in bare.queries))
    assert_same_scores(scores, score(f, tiny_llama, shuffled, ctx))
    assert_same_scores(scores, score(f, tiny_llama, target.eval_set("test", with_labels=True), ctx))

    swapped = [Example(ex.prompt, ex.responses, 1 - ex.preferred) if i % 2 else ex
               for i, ex in enumerate(target.test)]
    before = pair_with_labels(scores, target.test, "t")
    after = pair_with_labels(scores, swapped, "t")
    flip = np.arange(len(target.test)) % 2 == 1
    np.testing.assert_allclose(after.p_preferred, np.where(flip, 1 - before.p_preferred, before.p_preferred),
                               atol=1e-12)


@pytest.mark.parametrize("key", list(METHODS))
def test_every_ordered_pair_is_symmetric(key, tiny_llama, source, ctx, fitted):
    """P(a beats b) = 1 - P(b beats a) for every ordered pair of three responses, and every
    response has its own score."""
    scores = score(fitted[key], tiny_llama, source.eval_set("train"), ctx)
    assert len(scores.beats) == len(source.train)
    for beats, per_response in zip(scores.beats, scores.response_scores, strict=True):
        assert beats.shape == (3, 3) and per_response.shape == (3,)
        off = ~np.eye(3, dtype=bool)
        np.testing.assert_allclose((beats + beats.T)[off], 1.0, atol=1e-12)


@pytest.mark.parametrize("key", list(METHODS))
def test_reloaded_state_scores_identically(key, tiny_llama, target, ctx, fitted):
    f = fitted[key]
    assert type(f.loaded) is type(f.method).fitted_type()
    assert_same_fields(f.fitted, f.loaded)
    data = target.eval_set("test")
    assert_same_scores(score(f, tiny_llama, data, ctx, f.fitted), score(f, tiny_llama, data, ctx, f.loaded))


def test_fitted_states_say_what_was_learned(fitted):
    mms = fitted["mms"].loaded
    assert mms.n_train_pairs == 40 and len(mms.probe.sites) == 4 and mms.probe.directions.shape == (4, 8)
    assert mms.site_val_accuracy.shape == (8,)  # 2 layers x 4 heads, every one ranked
    assert mms.probe.sites.tolist() == P.top_k(mms.site_val_accuracy, 4).tolist()  # the stored ranking is the one used
    logistic, fixed = fitted["logistic"].loaded, fitted["logistic_layer1"].loaded
    assert logistic.layer_val_accuracy.shape == (3,) and logistic.layer == int(np.argmax(logistic.layer_val_accuracy))
    assert fixed.layer == 1 and fixed.layer_val_accuracy is None
    assert fitted["ccs"].loaded.n_train_pairs == 40


@pytest.fixture(scope="module")
def ctx_batch1(tmp_path_factory: pytest.TempPathFactory) -> FitContext:
    return FitContext(seed=0, activation_store=ActivationStore(tmp_path_factory.mktemp("acts1"), batch_tokens=1))


# These read the "plain" template; batch_tokens=1 extracts one prompt's texts per forward.
@pytest.mark.parametrize("key", ["mms", "lat", "logistic"])
def test_scores_do_not_depend_on_batch_size(key, tiny_llama, target, ctx, fitted, ctx_batch1):
    one = predict(fitted[key], tiny_llama, target, ctx_batch1)
    many = predict(fitted[key], tiny_llama, target, ctx)
    np.testing.assert_allclose(one.p_preferred, many.p_preferred, atol=1e-4)


def test_fit_is_deterministic_given_the_seed(tiny_llama, source, ctx):
    a = method("mms").fit(tiny_llama, source.train_only(), ctx)
    b = method("mms").fit(tiny_llama, source.train_only(), ctx)
    assert_same_fields(a, b)


def test_logistic_standardises_with_the_source_statistics(tiny_llama, source, ctx, fitted):
    """Fit/predict normalisation parity: the stored mean and std are the source train texts'."""
    x = ctx.activations().get(tiny_llama, source.eval_set("train"), "plain", "residual").values[:, 1]
    fit = fitted["logistic_layer1"].loaded
    np.testing.assert_allclose(fit.mean, x.mean(0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(fit.std, np.maximum(x.std(0, dtype=np.float64), 1e-6), rtol=1e-12)


@pytest.mark.parametrize("key", list(METHODS))
def test_a_query_scores_the_same_alone_or_in_its_split(key, tiny_llama, target, ctx, fitted):
    """Fit/predict normalisation parity: scoring uses only what the fit stored (source means,
    standardisation, centring), never statistics of the evaluated split, so a query scored on
    its own gets the scores it gets among the others (up to extraction batching noise)."""
    data = target.eval_set("test")
    together = score(fitted[key], tiny_llama, data, ctx)
    alone = score(fitted[key], tiny_llama, dataclasses.replace(data, queries=data.queries[3:4]), ctx)
    np.testing.assert_allclose(alone.response_scores[0], together.response_scores[3], atol=1e-4)
    np.testing.assert_allclose(alone.beats[0], together.beats[3], atol=1e-4)


class PlantedContrastStore:
    """Stands in for the activation store: final-layer CCS activations in which the Yes version of
    a preferred response sits at +axis and its No version at -axis (the reverse for the other
    responses), on top of a large nuisance component shared by both versions. Like a model, it
    reads the texts only: a preferred response is the one ending in "!" (see make_examples)."""

    def __init__(self, d: int = 8, reversed_every: int | None = None) -> None:
        self.axis = np.eye(d)[0]
        self.d = d
        self.reversed_every = reversed_every  # examples i % n == 0 get the contrast the wrong way round

    def get(self, lm, data: EvalSet, template: str, site: str, position: str = "last") -> Activations:
        texts = [(i, j) for i, q in enumerate(data.queries) for j in range(len(q.responses))]
        truth = np.array([1.0 if data.queries[i].responses[j].endswith("!") else -1.0 for i, j in texts])
        if self.reversed_every:
            truth *= np.array([-1.0 if i % self.reversed_every == 0 else 1.0 for i, _ in texts])
        rng = np.random.default_rng(len(data.split))  # the same nuisance for the Yes and the No version
        nuisance = rng.normal(size=(len(texts), 2, self.d)) * 2
        noise = np.random.default_rng(zlib.crc32(template.encode())).normal(size=nuisance.shape) * 0.2
        version = 1.0 if template == "ccs_yes" else -1.0
        values = nuisance + noise
        values[:, -1] += version * 2.0 * truth[:, None] * self.axis
        return Activations(values.astype(np.float32), np.array([i for i, _ in texts]), np.array([j for _, j in texts]),
                           key=f"planted-{template}", meta={})


def test_ccs_finds_a_planted_contrast(tiny_llama, source, tmp_path):
    ctx = FitContext(seed=0, activation_store=PlantedContrastStore())
    f = fit_and_save(CCS(epochs=300, restarts=2, lr=1e-2), tiny_llama, source, ctx, tmp_path)
    assert f.loaded.source_pair_accuracy >= 0.95
    assert accuracy(predict(f, tiny_llama, source, ctx)) >= 0.95


class ReversedTargetStore(PlantedContrastStore):
    """The planted contrast, the other way round on the target: there the Yes version of a
    DISpreferred response sits at +axis."""

    def get(self, lm, data: EvalSet, template: str, site: str, position: str = "last") -> Activations:
        if data.distribution == "planted_target":
            return PlantedContrastStore(self.d, reversed_every=1).get(lm, data, template, site, position)
        return super().get(lm, data, template, site, position)


def test_ccs_sign_comes_from_source(tiny_llama, source, target, tmp_path):
    """The probe's orientation is fixed on the labelled source pairs, whatever the evaluated
    split says. On a target whose contrast runs the other way, the source orientation ranks every
    target pair wrong, although the scorer is handed the target's labels: a sign chosen on the
    evaluated split (with its labels, or to make its accuracy >= 0.5) would rank them right.
    And the orientation follows the source's labels: reversing the source's contrast reverses
    which way along the axis the oriented credence points."""
    ctx = FitContext(seed=0, activation_store=ReversedTargetStore())
    ccs = CCS(epochs=300, restarts=2, lr=1e-2)
    f = fit_and_save(ccs, tiny_llama, source, ctx, tmp_path / "source")
    assert f.loaded.source_pair_accuracy >= 0.95
    assert accuracy(predict(f, tiny_llama, source, ctx)) >= 0.95
    labelled = target.eval_set("test", with_labels=True)
    pred = pair_with_labels(score(f, tiny_llama, labelled, ctx), target.test, "planted_target/test")
    assert accuracy(pred) <= 0.05

    reversed_ctx = FitContext(seed=0, activation_store=PlantedContrastStore(reversed_every=1))
    g = fit_and_save(ccs, tiny_llama, source, reversed_ctx, tmp_path / "reversed")
    assert g.loaded.source_pair_accuracy >= 0.95
    axis = PlantedContrastStore().axis
    assert f.loaded.sign * (f.loaded.probe.weight @ axis) > 0  # +axis on the Yes version = preferred
    assert g.loaded.sign * (g.loaded.probe.weight @ axis) < 0  # +axis on the Yes version = dispreferred


def test_only_the_legacy_oracle_reads_labels_and_it_needs_them(tiny_llama, source, tmp_path):
    ctx = FitContext(seed=0, activation_store=PlantedContrastStore())
    assert not CCS().reads_eval_labels
    legacy = CCS(epochs=20, restarts=1, variant="legacy_oracle")
    assert legacy.reads_eval_labels
    f = fit_and_save(legacy, tiny_llama, source, ctx, tmp_path)
    with pytest.raises(ValueError, match="planted_source/test: ccs variant 'legacy_oracle'.*carries none"):
        score(f, tiny_llama, source.eval_set("test"), ctx)


def test_ccs_legacy_oracle_reports_the_better_orientation(tiny_llama, source, tmp_path):
    """The original figure: each prompt becomes one pair (its preferred response and one seeded
    dispreferred one); on those 2n responses, centred with their own means, is the credence on the
    right side of 0.5, with the sign that suits their labels best. Evaluated on 3-response prompts
    (the source's train split), where scoring every response would make only a third preferred.
    Computed here by hand from the probe's weights for the probe as fitted and for its negation,
    so one of the two raw accuracies is below 0.5 and only the oracle orientation can turn it into
    max(acc, 1 - acc). A quarter of the examples carry the contrast reversed, so that maximum is
    not simply 1."""
    store = PlantedContrastStore(reversed_every=4)
    ctx = FitContext(seed=0, activation_store=store)
    f = fit_and_save(CCS(epochs=300, restarts=2, lr=1e-2, variant="legacy_oracle"), tiny_llama, source, ctx, tmp_path)

    examples = source.split("train")
    assert {len(ex.responses) for ex in examples} == {3}
    data = source.eval_set("train")
    yes, no = (store.get(tiny_llama, data, t, "residual") for t in ("ccs_yes", "ccs_no"))
    x_yes, x_no = (np.asarray(a.values[:, -1], dtype=np.float64) for a in (yes, no))

    raw = []
    for flip in (1.0, -1.0):
        probe = f.loaded.probe
        w, b = flip * probe.weight, flip * probe.bias
        flipped = dataclasses.replace(f.loaded, probe=dataclasses.replace(probe, weight=w, bias=b))
        pred = predict(f, tiny_llama, source, ctx, split="train", fitted=flipped)
        assert "not comparable" in pred.info["warning"]
        pairs = pred.info["legacy_pairs"]
        assert [p[0] for p in pairs] == [ex.preferred for ex in examples]
        assert all(p[1] != ex.preferred and 0 <= p[1] < 3 for p, ex in zip(pairs, examples))
        assert len({p[1] - p[0] for p in pairs}) > 1, "the dispreferred response is drawn, not always the same"
        assert pred.info["legacy_pairs"] == predict(f, tiny_llama, source, ctx, split="train").info["legacy_pairs"]
        rows = [int(np.flatnonzero((yes.example_index == e) & (yes.response_index == r))[0])
                for e, pair in enumerate(pairs) for r in pair]
        xy, xn = x_yes[rows], x_no[rows]
        p_yes = 1.0 / (1.0 + np.exp(-((xy - xy.mean(0)) @ w + b)))
        p_no = 1.0 / (1.0 + np.exp(-((xn - xn.mean(0)) @ w + b)))
        is_pref = np.tile([True, False], len(pairs))
        conf = 0.5 * (p_yes + 1.0 - p_no)
        acc = float(np.mean((conf > 0.5) == is_pref))
        assert legacy_response_accuracy(pred) == pytest.approx(max(acc, 1.0 - acc), abs=1e-12)
        oriented = 0.5 + (1.0 if acc >= 0.5 else -1.0) * (conf - 0.5)
        got = [pred.response_scores[e][r] for e, pair in enumerate(pairs) for r in pair]
        np.testing.assert_allclose(got, oriented, atol=1e-9)  # centred with the pairs' own means
        raw.append(acc)
    assert min(raw) < 0.5 < max(raw)
    assert 0.6 <= max(raw) <= 0.9  # about 3/4 of the responses agree with the labels


class MisalignedStore(PlantedContrastStore):
    """The No version lists the texts in reverse order."""

    def get(self, lm, data: EvalSet, template: str, site: str, position: str = "last") -> Activations:
        acts = super().get(lm, data, template, site, position)
        if not template.endswith("_no"):
            return acts
        return Activations(acts.values[::-1], acts.example_index[::-1], acts.response_index[::-1], key=acts.key,
                           meta={})


@pytest.mark.parametrize("name", ["ccs", "cra"])
def test_yes_and_no_activations_must_list_the_same_texts(name, tiny_llama, source):
    ctx = FitContext(seed=0, activation_store=MisalignedStore())
    with pytest.raises(ValueError, match="planted_source/train: the Yes and No activations list different texts"):
        CLASSES[name]().fit(tiny_llama, source.train_only(), ctx)


@pytest.mark.parametrize("scale", [1e6, -1e6])
def test_logistic_extreme_scores_do_not_overflow(scale, tiny_llama, target, ctx, fitted):
    """A probe whose pair differences run to +-1e6 (either sign: exp overflows on one side)
    still gives the probabilities 0 and 1, without a floating-point warning."""
    f = fitted["logistic"]
    steep = dataclasses.replace(f.loaded, weight=f.loaded.weight * scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = predict(f, tiny_llama, target, ctx, fitted=steep).p_preferred
    before = predict(f, tiny_llama, target, ctx).p_preferred
    np.testing.assert_array_equal(p > 0.5, before > 0.5 if scale > 0 else before < 0.5)
    assert set(np.round(p, 6)) <= {0.0, 1.0}
