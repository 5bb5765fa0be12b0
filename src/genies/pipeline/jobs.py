"""Jobs and their content hashes.

A job's output is named by a hash of everything that can change it: the model fingerprint, the
data hash of the split(s) it reads, the result-affecting configuration (intervention name and
resolved hyperparameters, seed) and the code version (the genies version plus a hash of the
intervention's own source file). Anything else (output folder, progress style, timing) is left
out, so that two runs asking the same question share the answer and a changed hyperparameter
invalidates exactly the jobs that read it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import genies

# Bump when the meaning of a stored job output changes (its file format or what it contains).
JOB_FORMAT = 1


def stable_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so equal configurations hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(*parts: Any) -> str:
    return hashlib.sha256(stable_json(list(parts)).encode()).hexdigest()[:24]


def code_version(cls: type) -> str:
    """The genies version plus a hash of the intervention's code (`Intervention.code_fingerprint`:
    its defining file and every genies module it imports, and for adapters the outside scripts
    they run), so that editing a method's code reruns its jobs and nobody else's."""
    source = cls.code_fingerprint() if hasattr(cls, "code_fingerprint") else b""
    return f"{genies.__version__}+{JOB_FORMAT}+{hashlib.sha256(source).hexdigest()[:12]}"


@dataclass(frozen=True)
class FitJob:
    """Fit one intervention on one source's train split (or on nothing, for methods such as
    zero-shot that need no training data: `source` is None and the key ignores data)."""

    intervention: str
    hparams_json: str
    source: str | None
    key: str

    @property
    def hparams(self) -> dict[str, Any]:
        return json.loads(self.hparams_json)

    @property
    def label(self) -> str:
        return f"fit {self.intervention} on {self.source or '(no training data)'}"


@dataclass(frozen=True)
class PredictJob:
    """Score every evaluation pair of `distribution`'s `split` with a fitted state."""

    fit: FitJob
    distribution: str
    split: str
    key: str

    @property
    def label(self) -> str:
        trained = f" (trained on {self.fit.source})" if self.fit.source else ""
        return f"predict {self.fit.intervention}{trained} on {self.distribution}/{self.split}"


def fit_key(*, model_fingerprint: str, intervention: str, hparams_json: str, source_hash: str | None,
            seed: int, code: str) -> str:
    return content_hash("fit", model_fingerprint, intervention, hparams_json, source_hash, seed, code)


def predict_key(*, fit: FitJob, distribution_hash: str, split: str) -> str:
    return content_hash("predict", fit.key, distribution_hash, split)
