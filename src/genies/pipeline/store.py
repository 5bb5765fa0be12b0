"""The content-addressed job store under `genies_home()/jobs`.

Fitted states are folders (`fit/<key>/`), predictions are JSON files (`predict/<key>.json`).
Everything is written to a temporary name in the same folder and renamed into place, so a
reader sees either nothing or a complete output, and a process killed mid-write leaves only a
temporary file that nobody reads. A per-key file lock (`locks/<key>.lock`, released by the OS
when a process dies) lets two runs that share the store wait for each other's job instead of
computing it twice.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from genies._io import write_atomic
from genies.data.home import genies_home
from genies.interventions.base import Predictions, State


def default_root() -> Path:
    return genies_home() / "jobs"


def _float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def predictions_to_json(pred: Predictions) -> dict[str, Any]:
    scores = None
    if pred.response_scores is not None:
        scores = [None if s is None else [_float(v) for v in np.asarray(s, dtype=np.float64).reshape(-1)]
                  for s in pred.response_scores]
    return {
        "example_index": [int(i) for i in pred.example_index],
        "preferred_index": [int(i) for i in pred.preferred_index],
        "dispreferred_index": [int(i) for i in pred.dispreferred_index],
        "p_preferred": [float(p) for p in np.asarray(pred.p_preferred, dtype=np.float64)],
        "response_scores": scores,
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
    )


class JobStore:
    """Finished job outputs by content hash; safe to share between concurrent processes."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def fit_dir(self, key: str) -> Path:
        return self.root / "fit" / key

    def fresh_staging_dir(self, key: str) -> Path:
        """Where a fit may write extra files (a legacy model folder) before its state is saved:
        beside the final folder, so that `save_state` renames it into place without copying.
        Anything a crashed earlier attempt left there is removed; the folder is not created."""
        shutil.rmtree(self._staging_dir(key), ignore_errors=True)
        return self._staging_dir(key)

    def _staging_dir(self, key: str) -> Path:
        return self.root / "fit" / f".{key}.staging"

    def predict_file(self, key: str) -> Path:
        return self.root / "predict" / f"{key}.json"

    def has_fit(self, key: str) -> bool:
        return (self.fit_dir(key) / "state.json").is_file()

    def has_predictions(self, key: str) -> bool:
        return self.predict_file(key).is_file()

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        path = self.root / "locks" / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path)):
            yield

    def save_state(self, key: str, state: State) -> Path:
        """Save into a temporary folder, then rename it into place in one step. Extra files the
        intervention left in `state.directory` are carried over: in place when that is the
        staging folder (`fresh_staging_dir`), copied by `State.save` from anywhere else."""
        final = self.fit_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = self._staging_dir(key)
        if state.directory is not None and Path(state.directory).resolve() == staging.resolve():
            tmp = staging
        else:
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.", suffix=".tmp"))
        try:
            state.save(tmp)
            if final.exists():  # finished by a concurrent run that did not hold our lock
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        state.directory = final
        return final

    def load_state(self, key: str) -> State:
        return State.load(self.fit_dir(key))

    def save_predictions(self, key: str, pred: Predictions) -> None:
        write_atomic(self.predict_file(key), json.dumps(predictions_to_json(pred)))

    def load_predictions(self, key: str) -> Predictions:
        return predictions_from_json(json.loads(self.predict_file(key).read_text()))
