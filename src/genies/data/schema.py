"""The preference-data types every other module speaks: Example, Pair, Distribution.

An example is one prompt with two or more responses, exactly one preferred. Evaluation scores
every (preferred, dispreferred) pair; training draws one seeded pair per prompt (docs/data.md#format,
docs/methods.md#pairs-and-accuracy). Distributions load their splits lazily so that listing 66
datasets stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genies.errors import GeniesError

SPLITS = ("train", "test")


def location(file: str | Path, index: int | None = None, item: str = "example") -> str:
    """How messages name a place in the data: `file`, or `file, example N` (0-based; a shift
    file's rows are `shift N`)."""
    return str(file) if index is None else f"{file}, {item} {index}"


class DataError(GeniesError, ValueError):
    """A distribution or shift file is malformed. The message names the file, the example (or
    shift) and the problem."""

    def __init__(self, file: str | Path, problem: str, index: int | None = None, item: str = "example") -> None:
        self.file = str(file)
        self.index = index
        self.problem = problem
        super().__init__(f"{location(self.file, index, item)}: {problem}")


@dataclass(frozen=True)
class Example:
    """One prompt with its candidate responses; `preferred` indexes the single preferred one.

    `confidence` is the probability that `preferred` beats each other response: 1 for
    ground-truth labels, a weak supervisor's soft label for weak-to-strong students
    (docs/w2s.md), which training losses may read as a soft target."""

    prompt: str
    responses: tuple[str, ...]
    preferred: int
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    confidence: float = 1.0

    @property
    def preferred_response(self) -> str:
        return self.responses[self.preferred]

    @property
    def dispreferred_indices(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.responses)) if i != self.preferred)

    def to_record(self) -> dict[str, Any]:
        """The original GENIES record: extra fields first, then prompt and the 0/1 response map."""
        record = dict(self.metadata)
        record["prompt"] = self.prompt
        record["responses"] = {r: int(i == self.preferred) for i, r in enumerate(self.responses)}
        return record


@dataclass(frozen=True)
class Query:
    """An example without its label: what a fitted intervention sees when it scores."""

    prompt: str
    responses: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class EvalSet:
    """One split of a distribution as a fitted intervention scores it.

    It carries the queries and not the labels, so "no method reads target labels" holds by
    construction: the pipeline pairs the scores with the labels afterwards. `labels` is filled
    only for the methods that declare they read them (`Intervention.reads_eval_labels`: the
    legacy adapter, whose scripts evaluate labelled folders, and CCS's oracle variant).
    """

    distribution: str
    split: str
    queries: tuple[Query, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False)
    labels: tuple[int, ...] | None = None

    def texts_hash(self) -> str:
        """A hash of the prompts and responses only: what changes hidden states (labels do not)."""
        digest = hashlib.sha256()
        for q in self.queries:
            digest.update(json.dumps([q.prompt, list(q.responses)]).encode())
        return digest.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.queries)


@dataclass(frozen=True)
class Pair:
    """A (preferred, dispreferred) comparison; indices point back into the split's examples."""

    example_index: int
    preferred_index: int
    dispreferred_index: int
    prompt: str
    preferred: str
    dispreferred: str
    confidence: float = 1.0  # P(preferred beats dispreferred) as the label says it: 1 unless soft


def eval_pairs(examples: Sequence[Example]) -> list[Pair]:
    """Every (preferred, dispreferred) pair, in example order then response order."""
    return [
        Pair(i, ex.preferred, j, ex.prompt, ex.preferred_response, ex.responses[j])
        for i, ex in enumerate(examples)
        for j in ex.dispreferred_indices
    ]


def train_pairs(examples: Sequence[Example], seed: int) -> list[Pair]:
    """One pair per prompt with the dispreferred response drawn by a seeded generator."""
    rng = random.Random(seed)
    pairs = []
    for i, ex in enumerate(examples):
        j = rng.choice(ex.dispreferred_indices)
        pairs.append(Pair(i, ex.preferred, j, ex.prompt, ex.preferred_response, ex.responses[j], ex.confidence))
    return pairs


def examples_hash(examples: Sequence[Example]) -> str:
    """A content hash of a split (prompts, responses, labels) for cache keys and manifests; a
    soft label's confidence enters only when it is not 1, so hard-labelled data keeps its hash."""
    digest = hashlib.sha256()
    for ex in examples:
        soft = [ex.confidence] if ex.confidence != 1.0 else []
        digest.update(json.dumps([ex.prompt, list(ex.responses), ex.preferred, *soft]).encode())
    return digest.hexdigest()[:16]


def sample_indices(n: int, cap: int | None, seed: int | None, name: str) -> list[int]:
    """Up to `cap` of range(n), in increasing order: a random subset drawn from (seed, name), so
    every job of a run (baseline, intervention, reference) and every run with that seed keeps the
    same examples of a split, while different splits and distributions get independent draws;
    the first `cap` when `seed` is None (`--first-n`)."""
    if not cap or cap >= n:
        return list(range(n))
    if seed is None:
        return list(range(cap))
    digest = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "big")
    return sorted(random.Random(digest).sample(range(n), cap))


class Distribution:
    """A named preference dataset with train and test splits, loaded on first access."""

    def __init__(
        self,
        id: str,
        loader: Callable[[str], list[Example]],
        metadata: Mapping[str, Any] | None = None,
        path: Path | None = None,
    ) -> None:
        self.id = id
        self.path = path
        self.metadata = dict(metadata or {})
        self._loader = loader
        self._splits: dict[str, list[Example]] = {}

    @classmethod
    def from_examples(
        cls,
        id: str,
        train: Sequence[Example],
        test: Sequence[Example],
        metadata: Mapping[str, Any] | None = None,
        path: Path | None = None,
    ) -> Distribution:
        splits = {"train": list(train), "test": list(test)}
        return cls(id, splits.__getitem__, metadata, path)

    def split(self, name: str) -> list[Example]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        if name not in self._splits:
            self._splits[name] = self._loader(name)
        return self._splits[name]

    @property
    def train(self) -> list[Example]:
        return self.split("train")

    @property
    def test(self) -> list[Example]:
        return self.split("test")

    def eval_pairs(self, split: str = "test") -> list[Pair]:
        return eval_pairs(self.split(split))

    def train_pairs(self, seed: int, split: str = "train") -> list[Pair]:
        return train_pairs(self.split(split), seed)

    def content_hash(self, split: str) -> str:
        return examples_hash(self.split(split))

    def eval_set(self, split: str = "test", *, with_labels: bool = False) -> EvalSet:
        """The split as a fitted intervention scores it: queries only, labels when asked for."""
        examples = self.split(split)
        return EvalSet(self.id, split, tuple(Query(ex.prompt, ex.responses, ex.metadata) for ex in examples),
                       self.metadata, tuple(ex.preferred for ex in examples) if with_labels else None)

    def train_only(self) -> Distribution:
        """The train split alone (test empty): what `Intervention.fit` is handed, so a method
        cannot read any test labels, its own source's included."""
        return Distribution.from_examples(self.id, self.train, [], self.metadata)

    def limited(self, max_train: int | None = None, max_test: int | None = None, *,
                seed: int | None = None) -> Distribution:
        """A view keeping at most N examples of each split (the `cpu` budget): a seeded random
        subset in the split's order (`sample_indices`), or the first N when `seed` is None.

        The first N are not representative (on alpaca_mmlu the longer response is preferred in
        25 % of the first 16 test pairs and 44 % of all), hence the sample. The view has no `path`:
        a path says the examples are that folder's files, and the legacy adapter hands such a
        folder to the original eval.py, which would score every example.
        """
        kept = {split: [self.split(split)[i] for i in self.kept_indices(split, cap, seed)]
                for split, cap in (("train", max_train), ("test", max_test))}
        return Distribution.from_examples(self.id, kept["train"], kept["test"], self.metadata)

    def kept_indices(self, split: str, cap: int | None, seed: int | None) -> list[int]:
        """The indices `limited(..., seed=seed)` keeps of `split` under `cap` (None: all)."""
        return sample_indices(len(self.split(split)), cap, seed, f"{self.id}/{split}")

    def __repr__(self) -> str:
        return f"Distribution({self.id!r})"


# The stand-in "source" handed to methods that need no training data (zero-shot, external judges).
NO_TRAINING_DATA = Distribution.from_examples("(none)", [], [])
