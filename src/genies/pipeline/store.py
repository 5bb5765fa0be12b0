"""The content-addressed job store under `genies_home()/jobs`.

Fitted states are folders (`fit/<key>/`: `fitted.json`, `tensors.safetensors` and any files the
method left beside them), predictions are JSON files (`predict/<key>.json`, with the method's
`info`). A fitted state is built in a private folder and renamed into place in one step;
predictions are written to a temporary name and renamed. So a reader sees either nothing or a
complete output, and a process killed mid-write leaves only temporary files that nobody reads.
A per-key file lock (`locks/<key>.lock`, released by the OS when a process dies) lets two runs
that share the store wait for each other's job instead of computing it twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock

from genies._io import publish_folder, write_atomic
from genies.data.home import genies_home
from genies.interventions.fitted import FITTED_JSON, load_fitted
from genies.interventions.scores import Predictions
from genies.pipeline.run_dir import plain_json

F = TypeVar("F")


def default_root() -> Path:
    return genies_home() / "jobs"


def predictions_to_json(pred: Predictions) -> dict[str, Any]:
    """The stored document: strict JSON (NaN scores and odd `info` values through `plain_json`)."""
    return {
        "example_index": [int(i) for i in pred.example_index],
        "preferred_index": [int(i) for i in pred.preferred_index],
        "dispreferred_index": [int(i) for i in pred.dispreferred_index],
        "p_preferred": [float(p) for p in np.asarray(pred.p_preferred, dtype=np.float64)],
        "response_scores": plain_json(pred.response_scores),
        "info": plain_json(pred.info),
    }


def predictions_from_json(doc: dict[str, Any]) -> Predictions:
    scores = doc.get("response_scores")
    return Predictions(
        example_index=np.asarray(doc["example_index"], dtype=np.int64),
        preferred_index=np.asarray(doc["preferred_index"], dtype=np.int64),
        dispreferred_index=np.asarray(doc["dispreferred_index"], dtype=np.int64),
        p_preferred=np.asarray(doc["p_preferred"], dtype=np.float64),
        response_scores=None if scores is None else [
            None if s is None else np.asarray([np.nan if v is None else v for v in s], dtype=np.float64)
            for s in scores],
        info=doc.get("info") or {},
    )


class JobStore:
    """Finished job outputs by content hash; safe to share between concurrent processes."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def fit_dir(self, key: str) -> Path:
        return self.root / "fit" / key

    def predict_file(self, key: str) -> Path:
        return self.root / "predict" / f"{key}.json"

    def has_fit(self, key: str) -> bool:
        return (self.fit_dir(key) / FITTED_JSON).is_file()

    def has_predictions(self, key: str) -> bool:
        return self.predict_file(key).is_file()

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path)):
            yield

    @contextmanager
    def publish_fit(self, key: str) -> Iterator[Path]:
        """A fresh folder for the fitted state of `key`; on success it becomes `fit/<key>` in one
        rename (`genies._io.publish_folder`; a state a concurrent run finished first is kept), on
        failure it is removed."""
        final = self.fit_dir(key)
        with publish_folder(final, keep_existing=lambda folder: (folder / FITTED_JSON).is_file()) as staging:
            yield staging

    def load_fitted(self, key: str, cls: type[F]) -> F:
        return load_fitted(cls, self.fit_dir(key))

    def save_predictions(self, key: str, pred: Predictions) -> None:
        write_atomic(self.predict_file(key), json.dumps(predictions_to_json(pred)))

    def load_predictions(self, key: str) -> Predictions:
        return predictions_from_json(json.loads(self.predict_file(key).read_text()))
