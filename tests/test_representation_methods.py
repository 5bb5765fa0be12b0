"""The representation methods end to end on the tiny random Llama and a planted text feature:
the preferred response is written in capitals and ends with a run of "!" (the others: lower case
and a run of "."), a feature strong enough to survive a random model's attention mixing."""

from __future__ import annotations

import random
import warnings
import zlib

import numpy as np
import pytest

from genies.data.schema import Distribution, Example
from genies.interventions.base import FitContext, State, get_intervention
from genies.interventions.ccs import legacy_response_accuracy
from genies.models.activations import Activations, ActivationStore

WORDS = ["apple", "river", "stone", "cloud", "green", "seven", "table", "light", "north", "paper"]

# name -> hyperparameters small enough for the tiny model (2 layers x 4 heads x 8 dims)
METHODS = {
    "mms": {"k": 4},
    "lat": {"k": 1},
    "lat_stim2_pca": {"k": 1, "stimulus": 2, "direction": "pca"},
    "cra": {"k": 4},
    "ccs": {"epochs": 200, "restarts": 2, "lr": 1e-2, "max_train_examples": None},
    "logistic": {},
}


def method(key: str):
    name = key.split("_")[0]
    return get_intervention(name)(**METHODS[key])


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


@pytest.fixture(scope="module")
def fitted(tiny_llama, source, ctx, tmp_path_factory) -> dict[str, State]:
    states = {}
    for key in METHODS:
        state = method(key).fit(tiny_llama, source, ctx)
        state.save(tmp_path_factory.mktemp(key))
        states[key] = state
    return states


def accuracy(pred) -> float:
    return float(np.mean(pred.p_preferred > 0.5))


# CCS is left out here: its probe looks for a feature that FLIPS between the Yes and the No
# version of a text, which a random model does not make out of a planted word feature. Its known
# answer on the same pipeline is test_ccs_finds_a_planted_contrast below (and tests/test_probes.py).
@pytest.mark.parametrize("key", [k for k in METHODS if k != "ccs"])
def test_source_accuracy(key, tiny_llama, source, ctx, fitted):
    pred = fitted[key].predict(tiny_llama, source, "test", ctx)
    assert len(pred.p_preferred) == len(source.eval_pairs("test")) == 20
    assert accuracy(pred) >= 0.95, fitted[key].info


@pytest.mark.parametrize("key", list(METHODS))
def test_target_labels_are_never_read(key, tiny_llama, target, ctx, fitted):
    """Swap the preferred response of half the target examples: every response score stays the
    same and each swapped pair's probability becomes exactly 1 - p."""
    swapped = [Example(ex.prompt, ex.responses, 1 - ex.preferred) if i % 2 else ex
               for i, ex in enumerate(target.test)]
    permuted = Distribution.from_examples(target.id, target.train, swapped)
    before = fitted[key].predict(tiny_llama, target, "test", ctx)
    after = fitted[key].predict(tiny_llama, permuted, "test", ctx)
    flip = np.arange(len(target.test)) % 2 == 1
    np.testing.assert_allclose(after.p_preferred, np.where(flip, 1 - before.p_preferred, before.p_preferred),
                               atol=1e-12)
    for x, y in zip(before.response_scores, after.response_scores, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("key", list(METHODS))
def test_reloaded_state_scores_identically(key, tiny_llama, target, ctx, fitted):
    state = fitted[key]
    reloaded = State.load(state.directory)
    assert reloaded.hparams == state.hparams
    np.testing.assert_array_equal(reloaded.predict(tiny_llama, target, "test", ctx).p_preferred,
                                  state.predict(tiny_llama, target, "test", ctx).p_preferred)


@pytest.fixture(scope="module")
def ctx_batch1(tmp_path_factory: pytest.TempPathFactory) -> FitContext:
    return FitContext(seed=0, activation_store=ActivationStore(tmp_path_factory.mktemp("acts1"), batch_size=1))


# These three read the "plain" template, so one batch-size-1 extraction serves them all.
@pytest.mark.parametrize("key", ["mms", "lat", "logistic"])
def test_scores_do_not_depend_on_batch_size(key, tiny_llama, target, ctx, fitted, ctx_batch1):
    other = ctx_batch1
    one = fitted[key].predict(tiny_llama, target, "test", other)
    many = fitted[key].predict(tiny_llama, target, "test", ctx)
    np.testing.assert_allclose(one.p_preferred, many.p_preferred, atol=1e-4)


def test_fit_is_deterministic_given_the_seed(tiny_llama, source, ctx):
    a = method("mms").fit(tiny_llama, source, ctx)
    b = method("mms").fit(tiny_llama, source, ctx)
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name].numpy(), b.tensors[name].numpy())


def test_ccs_sign_comes_from_source(fitted):
    assert fitted["ccs"].info["sign"] in (1.0, -1.0)
    assert fitted["ccs"].info["source_pair_accuracy"] >= 0.5


class PlantedContrastStore:
    """Stands in for the activation store: final-layer CCS activations in which the Yes version of
    a preferred response sits at +axis and its No version at -axis (the reverse for the other
    responses), on top of a large nuisance component shared by both versions."""

    def __init__(self, d: int = 8, reversed_every: int | None = None) -> None:
        self.axis = np.eye(d)[0]
        self.d = d
        self.reversed_every = reversed_every  # examples i % n == 0 get the contrast the wrong way round

    def get(self, lm, dist, split, template, site, position="last") -> Activations:
        examples = dist.split(split)
        texts = [(i, j) for i, ex in enumerate(examples) for j in range(len(ex.responses))]
        truth = np.array([1.0 if examples[i].preferred == j else -1.0 for i, j in texts])
        if self.reversed_every:
            truth *= np.array([-1.0 if i % self.reversed_every == 0 else 1.0 for i, _ in texts])
        rng = np.random.default_rng(len(split))  # the same nuisance for the Yes and the No version
        nuisance = rng.normal(size=(len(texts), 2, self.d)) * 2
        noise = np.random.default_rng(zlib.crc32(template.encode())).normal(size=nuisance.shape) * 0.2
        version = 1.0 if template == "ccs_yes" else -1.0
        values = nuisance + noise
        values[:, -1] += version * 2.0 * truth[:, None] * self.axis
        return Activations(values.astype(np.float32), np.array([i for i, _ in texts]), np.array([j for _, j in texts]),
                           key=f"planted-{template}", meta={})


def test_ccs_finds_a_planted_contrast(tiny_llama, source):
    ctx = FitContext(seed=0, activation_store=PlantedContrastStore())
    state = get_intervention("ccs")(epochs=300, restarts=2, lr=1e-2).fit(tiny_llama, source, ctx)
    assert state.info["source_pair_accuracy"] >= 0.95
    assert accuracy(state.predict(tiny_llama, source, "test", ctx)) >= 0.95


def test_ccs_legacy_oracle_reports_the_better_orientation(tiny_llama, source):
    """The original metric: per response, is the credence (centred with the split's own means)
    on the right side of 0.5, with the sign that suits the split's labels best. Computed here by
    hand from the probe's weights for the probe as fitted and for its negation, so one of the two
    raw accuracies is below 0.5 and only the oracle orientation can turn it into max(acc, 1 - acc).
    A quarter of the examples carry the contrast reversed, so that maximum is not simply 1."""
    store = PlantedContrastStore(reversed_every=4)
    ctx = FitContext(seed=0, activation_store=store)
    method = get_intervention("ccs")(epochs=300, restarts=2, lr=1e-2, variant="legacy_oracle")
    state = method.fit(tiny_llama, source, ctx)
    assert "not comparable" in state.info["warning"]

    examples = source.split("test")
    yes, no = (store.get(tiny_llama, source, "test", t, "residual") for t in ("ccs_yes", "ccs_no"))
    x_yes, x_no = (np.asarray(a.values[:, -1], dtype=np.float64) for a in (yes, no))
    is_pref = np.array([examples[e].preferred == r for e, r in zip(yes.example_index, yes.response_index)])

    raw = []
    for flip in (1.0, -1.0):
        w, b = flip * state.tensors["weight"].numpy(), flip * float(state.tensors["bias"])
        p_yes = 1.0 / (1.0 + np.exp(-((x_yes - x_yes.mean(0)) @ w + b)))
        p_no = 1.0 / (1.0 + np.exp(-((x_no - x_no.mean(0)) @ w + b)))
        acc = float(np.mean((0.5 * (p_yes + 1.0 - p_no) > 0.5) == is_pref))
        tensors = {**state.tensors, "weight": state.tensors["weight"] * flip, "bias": state.tensors["bias"] * flip}
        pred = State(state.intervention, state.hparams, state.info, tensors).predict(tiny_llama, source, "test", ctx)
        assert legacy_response_accuracy(pred, source, "test") == pytest.approx(max(acc, 1.0 - acc), abs=1e-12)
        raw.append(acc)
    assert min(raw) < 0.5 < max(raw)
    assert 0.6 <= max(raw) <= 0.9  # about 3/4 of the responses agree with the labels


class MisalignedStore(PlantedContrastStore):
    """The No version lists the texts in reverse order."""

    def get(self, lm, dist, split, template, site, position="last") -> Activations:
        acts = super().get(lm, dist, split, template, site, position)
        if not template.endswith("_no"):
            return acts
        return Activations(acts.values[::-1], acts.example_index[::-1], acts.response_index[::-1], key=acts.key,
                           meta={})


@pytest.mark.parametrize("name", ["ccs", "cra"])
def test_yes_and_no_activations_must_list_the_same_texts(name, tiny_llama, source):
    ctx = FitContext(seed=0, activation_store=MisalignedStore())
    with pytest.raises(ValueError, match="planted_source/train: the Yes and No activations list different texts"):
        get_intervention(name)().fit(tiny_llama, source, ctx)


@pytest.mark.parametrize("scale", [1e6, -1e6])
def test_logistic_extreme_scores_do_not_overflow(scale, tiny_llama, target, ctx, fitted):
    """A probe whose pair differences run to +-1e6 (either sign: exp overflows on one side)
    still gives the probabilities 0 and 1, without a floating-point warning."""
    state = fitted["logistic"]
    steep = State(state.intervention, state.hparams, state.info,
                  {**state.tensors, "weight": state.tensors["weight"] * scale})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = steep.predict(tiny_llama, target, "test", ctx).p_preferred
    before = state.predict(tiny_llama, target, "test", ctx).p_preferred
    np.testing.assert_array_equal(p > 0.5, before > 0.5 if scale > 0 else before < 0.5)
    assert set(np.round(p, 6)) <= {0.0, 1.0}
