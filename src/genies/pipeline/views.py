"""Data derived from a distribution's splits: a seeded part of a split, a share of target examples.

Sweeps fit on a source's train split minus a held-out part and score that part; the target-data
ablation fits on a source train split with some examples replaced by the target's; weak-to-strong
splits a train split in two halves. Each is a `Part` or a `TargetMix` on a job, never a copy of the
data: the job's key names the derivation (the parent split's content hash plus the derivation's
fields), so a derived job is cached like any other, and a job without one keeps exactly the key it
had before views existed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from genies.data.schema import Distribution, Example
from genies.errors import ConfigError


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


@dataclass(frozen=True)
class TrainView:
    """A fit job's training data when it is not simply the source's train split."""

    part: Part | None = None
    mix: TargetMix | None = None

    def key(self) -> dict:
        """What enters the fit key beside the source's content hash."""
        return {name: asdict(value) for name, value in (("part", self.part), ("mix", self.mix)) if value}

    def distributions(self) -> list[str]:
        """Distributions read besides the source."""
        return [self.mix.target] if self.mix else []

    def train_split(self, source: str, load: Callable[[str], Distribution]) -> Distribution:
        """The training data as a train-only distribution named like the source: the part first
        (a held-out part is never mixed), then the mix."""
        examples = load(source).train
        if self.part:
            examples = self.part.select(examples, f"{source}/train")
        if self.mix:
            examples = self.mix.apply(examples, load(self.mix.target).train, source)
        dist = load(source)
        return Distribution.from_examples(dist.id, examples, [], dist.metadata)

    @property
    def label(self) -> str:
        return " ".join(v.label for v in (self.part, self.mix) if v)
