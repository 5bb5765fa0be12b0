"""Jobs and their content hashes.

A job's output is named by a hash of exactly what can change it: the method's name and
`version` (plus, for adapters, a digest of the outside code they run), its result-affecting
hyperparameters (execution settings such as batch sizes and folder paths are left out), the
model fingerprint and precision (dtype, quantization), the content hash of the data it reads, the seed, and the versions of torch,
transformers and peft. Nothing else (output folder, batch size, progress style, timing), so two
runs asking the same question share the answer, a library upgrade reruns everything, and a
changed hyperparameter invalidates exactly the jobs that read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from genies.data.schema import NO_TRAINING_DATA, Distribution
from genies.interventions.base import Intervention
from genies.interventions.registry import get_intervention
from genies.interventions.scores import Predictions
from genies.pipeline.views import Part, TrainView
from genies.provenance import package_versions

# Bump when the meaning of a stored job output changes (its file format or what it contains).
JOB_FORMAT = 2


def stable_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so equal configurations hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(*parts: Any) -> str:
    return hashlib.sha256(stable_json(list(parts)).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class FitJob:
    """Fit one method on one source's train split (or on nothing, for methods such as zero-shot
    that need no training data: `source` is None and the key ignores data). `intervention` is the
    method's name in tables (`legacy:<folder>` for a legacy folder); `method_name` (the registered
    name) and `hparams_json` (every hyperparameter) rebuild the method in any process. `view`
    derives the training data from the source's train split (a part, a target mix); None means
    the whole split."""

    intervention: str
    method_name: str
    hparams_json: str
    source: str | None
    key: str
    view: TrainView | None = None

    @property
    def hparams(self) -> dict[str, Any]:
        return json.loads(self.hparams_json)

    def method(self) -> Intervention:
        return get_intervention(self.method_name)(**self.hparams)

    def train_data(self, load: Callable[[str], Distribution],
                   predictions: Callable[[str], Predictions] | None = None) -> Distribution:
        """What `Intervention.fit` is handed: the training data alone (no test split);
        `predictions` reads stored predictions by job key (weak labels, `TrainView.train_split`)."""
        if self.source is None:
            return NO_TRAINING_DATA
        if self.view is None:
            return load(self.source).train_only()
        return self.view.train_split(self.source, load, predictions)

    @property
    def trained_on(self) -> str | None:
        """The source as tables name it, with the derivation when there is one."""
        return f"{self.source} {self.view.label}" if self.source and self.view else self.source

    @property
    def label(self) -> str:
        return f"fit {self.intervention} on {self.trained_on or '(no training data)'}"


@dataclass(frozen=True)
class PredictJob:
    """Score every evaluation pair of `distribution`'s `split` (or of a seeded `part` of it, such
    as a sweep's held-out part of a source's train split) with a fitted state."""

    fit: FitJob
    distribution: str
    split: str
    key: str
    part: Part | None = None

    def data(self, load: Callable[[str], Distribution]) -> Distribution:
        """The distribution whose `split` holds exactly the examples this job scores."""
        dist = load(self.distribution)
        if self.part is None:
            return dist
        kept = self.part.select(dist.split(self.split), f"{self.distribution}/{self.split}")
        splits = {"train": [], "test": [], self.split: kept}
        return Distribution.from_examples(dist.id, splits["train"], splits["test"], dist.metadata)

    @property
    def label(self) -> str:
        trained = f" (trained on {self.fit.trained_on})" if self.fit.source else ""
        part = f" {self.part.label}" if self.part else ""
        return f"predict {self.fit.intervention}{trained} on {self.distribution}/{self.split}{part}"


def fit_key(*, method: Intervention, model_fingerprint: str, precision: dict[str, Any], source_hash: str | None,
            seed: int, libraries: dict[str, str | None] | None = None) -> str:
    return content_hash("fit", JOB_FORMAT, method.name, method.code_version(), method.key_hparams(),
                        model_fingerprint, precision, source_hash, seed, libraries or package_versions())


def predict_key(*, fit: FitJob, distribution_hash: str, split: str, part: Part | None = None) -> str:
    if part is None:  # the key every whole-split prediction has had
        return content_hash("predict", fit.key, distribution_hash, split)
    return content_hash("predict", fit.key, distribution_hash, split, asdict(part))
