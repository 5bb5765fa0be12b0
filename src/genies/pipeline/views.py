"""Data derived from a distribution's splits: a seeded part of a split, a share of target examples.

Sweeps fit on a source's train split minus a held-out part and score that part; the target-data
ablation fits on a source train split with some examples replaced by the target's; weak-to-strong
splits a train split in two halves and trains a student on one half with a weak supervisor's
labels (`WeakLabels`). Each is a `Part`, a `TargetMix` or `WeakLabels` on a job, never a copy of
the data: the job's key names the derivation (the parent split's content hash plus the
derivation's fields, for weak labels the key of the job that predicted them), so a derived job is
cached like any other, and a job without one keeps exactly the key it had before views existed.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from genies.data.schema import Distribution, Example
from genies.errors import ConfigError, JobError
from genies.interventions.scores import Predictions, sigmoid


@dataclass(frozen=True)
class Part:
    """The examples at positions [start, stop) (fractions of the split's length, rounded) of a
    permutation of the split drawn from `seed`, kept in the split's order.

    Complementary parts of one permutation (`Part(0, 0.33, s)` and `Part(0.33, 1, s)`) are
    disjoint and cover the split, which is what a held-out part and its training rest need."""

    start: float
    stop: float
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 <= self.start < self.stop <= 1.0:
            raise ConfigError(f"a part of a split needs 0 <= start < stop <= 1, got [{self.start}, {self.stop})")

    def indices(self, n: int, name: str) -> list[int]:
        """The kept positions of a split of `n` examples named `name` (`dist/split`): the name
        enters the draw, so parts of different splits are independent."""
        order = list(range(n))
        random.Random(f"part:{self.seed}:{name}").shuffle(order)
        return sorted(order[round(self.start * n):round(self.stop * n)])

    def select(self, examples: Sequence[Example], name: str) -> list[Example]:
        return [examples[i] for i in self.indices(len(examples), name)]

    @property
    def label(self) -> str:
        return f"[{self.start:.2f}:{self.stop:.2f}]"


@dataclass(frozen=True)
class TargetMix:
    """Replace round(fraction x n) of a training set's n examples (positions drawn from `seed`)
    by as many examples of `target`'s train split (drawn from `seed`, without replacement): the
    size stays n. The draws depend only on (seed, n, target, fraction), never on the method, so
    every intervention sees the same mixed set."""

    target: str
    fraction: float
    seed: int

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"a target mix fraction must be in (0, 1], got {self.fraction}")

    def n_target(self, n: int) -> int:
        return round(self.fraction * n)

    def apply(self, train: Sequence[Example], target_train: Sequence[Example], source: str) -> list[Example]:
        n, k = len(train), self.n_target(len(train))
        if k > len(target_train):
            raise ConfigError(f"mixing {self.fraction:g} of {source}'s {n} training examples needs {k} examples "
                              f"of {self.target}'s train split, which has {len(target_train)}")
        rng = random.Random(f"mix:{self.seed}:{source}:{self.target}:{self.fraction!r}")
        replaced = rng.sample(range(n), k)
        drawn = rng.sample(range(len(target_train)), k)
        mixed = list(train)
        for position, index in zip(replaced, drawn):
            mixed[position] = target_train[index]
        return mixed

    @property
    def label(self) -> str:
        return f"+{self.fraction:.0%} {self.target}"


# Soft labels are kept to this many decimals: derived from stored pairs they are then the same
# whichever response the ground truth prefers (float rounding of p versus 1 - p stays below it).
CONFIDENCE_DECIMALS = 6
_P_FLOOR = 1e-9  # a stored probability of exactly 0 or 1 stays a finite logit


@dataclass(frozen=True)
class WeakChoice:
    """A weak supervisor's label of one example: the response it ranks first and its soft label,
    the mean probability it gives that response of beating each other one."""

    preferred: int
    confidence: float


def weak_choices(n_examples: int, predictions: Predictions) -> list[WeakChoice]:
    """Each scored example's weak label, from predictions of a split's pairs, without ground truth.

    Stored predictions list P(preferred beats d) for the ground-truth preferred response and each
    other response d. Every response gets a score on the logit scale (the preferred one 0, d
    -logit P), exactly a Bradley-Terry model's scores up to a shift, so the first-ranked response
    (the lowest index among ties) and its probabilities of beating the others do not depend on
    which response the ground truth prefers. With two responses this holds for any method."""
    p = np.clip(np.asarray(predictions.p_preferred, dtype=np.float64), _P_FLOOR, 1.0 - _P_FLOOR)
    if np.isnan(p).any():
        raise JobError("weak labels: the weak supervisor left some pairs without a probability (NaN)")
    scores: list[np.ndarray | None] = [None] * n_examples
    for i, pref, other, prob in zip(predictions.example_index, predictions.preferred_index,
                                    predictions.dispreferred_index, p):
        if not 0 <= i < n_examples:
            raise JobError(f"weak labels: a prediction names example {i} of a part of {n_examples} examples")
        if scores[i] is None:
            scores[i] = np.zeros(max(pref, other) + 1)
        elif len(scores[i]) <= max(pref, other):
            scores[i] = np.pad(scores[i], (0, max(pref, other) + 1 - len(scores[i])))
        scores[i][other] = np.log1p(-prob) - np.log(prob)  # -logit(p): the preferred one stays 0
    missing = [i for i, s in enumerate(scores) if s is None]
    if missing:
        raise JobError(f"weak labels: the weak supervisor's predictions miss example {missing[0]} "
                       f"({len(missing)} of {n_examples})")
    choices = []
    for s in scores:
        top = int(np.argmax(np.round(s, CONFIDENCE_DECIMALS)))
        others = np.delete(s, top)
        confidence = float(np.mean(sigmoid(s[top] - others)))
        choices.append(WeakChoice(top, round(confidence, CONFIDENCE_DECIMALS)))
    return choices


@dataclass(frozen=True)
class WeakLabels:
    """Replace every training example's label by a weak supervisor's: the response its predictions
    (those of the predict job `job`, which scored exactly these examples) rank first, with its soft
    label as the example's `confidence` when `soft`, else confidence 1 (hard weak labels). The
    ground-truth labels of the examples are never read."""

    job: str
    soft: bool

    def apply(self, examples: Sequence[Example], predictions: Predictions) -> list[Example]:
        relabelled = []
        for ex, choice in zip(examples, weak_choices(len(examples), predictions), strict=True):
            if len(ex.responses) <= choice.preferred:
                raise JobError(f"weak labels: example {ex.prompt[:40]!r} has {len(ex.responses)} responses, "
                               f"the weak label names response {choice.preferred}")
            relabelled.append(dataclasses.replace(ex, preferred=choice.preferred,
                                                  confidence=choice.confidence if self.soft else 1.0))
        return relabelled

    @property
    def label(self) -> str:
        return f"weak {'soft' if self.soft else 'hard'} labels"


@dataclass(frozen=True)
class TrainView:
    """A fit job's training data when it is not simply the source's train split."""

    part: Part | None = None
    mix: TargetMix | None = None
    labels: WeakLabels | None = None

    def __post_init__(self) -> None:
        if self.labels and self.mix:
            raise ConfigError("weak labels and a target mix cannot be combined: the mixed-in examples have no "
                              "weak labels")

    def key(self) -> dict:
        """What enters the fit key beside the source's content hash."""
        fields = (("part", self.part), ("mix", self.mix), ("labels", self.labels))
        return {name: asdict(value) for name, value in fields if value}

    def distributions(self) -> list[str]:
        """Distributions read besides the source."""
        return [self.mix.target] if self.mix else []

    def train_split(self, source: str, load: Callable[[str], Distribution],
                    predictions: Callable[[str], Predictions] | None = None) -> Distribution:
        """The training data as a train-only distribution named like the source: the part first
        (a held-out part is never mixed), then the mix or the weak labels, read through
        `predictions` (a job key -> its stored predictions: the job store's `load_predictions`)."""
        examples = load(source).train
        if self.part:
            examples = self.part.select(examples, f"{source}/train")
        if self.mix:
            examples = self.mix.apply(examples, load(self.mix.target).train, source)
        if self.labels:
            if predictions is None:
                raise JobError("a fit on weak labels needs the job store that holds them")
            examples = self.labels.apply(examples, predictions(self.labels.job))
        dist = load(source)
        return Distribution.from_examples(dist.id, examples, [], dist.metadata)

    @property
    def label(self) -> str:
        return " ".join(v.label for v in (self.part, self.mix, self.labels) if v)
