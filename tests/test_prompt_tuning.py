"""prompt_tuning learns a planted feature through its virtual tokens and reloads exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from genies.data.schema import Distribution
from genies.interventions.context import FitContext
from genies.interventions.fitted import load_fitted, save_fitted
from genies.interventions.prompt_tuning import PromptTuning
from genies.interventions.scores import pair_with_labels

from planted import planted  # tests/planted.py


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prompt_tuning_learns_a_planted_feature_and_reloads(tiny_llama, tmp_path) -> None:
    dist = Distribution.from_examples("planted", planted(32, seed=0), planted(12, seed=1))
    method = PromptTuning(learning_rate=3e-2, steps=40, batch_size=8)
    fit = method.fit(tiny_llama, dist.train_only(), FitContext(seed=0))
    assert set(fit.tensors) == {"prompt_embeddings", "base_model.score.weight"}
    assert fit.tensors["prompt_embeddings"].shape[0] == 10 and fit.forward == "packed"

    def p_preferred(fitted, split: str) -> np.ndarray:
        scores = method.scorer(tiny_llama, fitted, FitContext())(dist.eval_set(split))
        return pair_with_labels(scores, dist.split(split), f"planted/{split}").p_preferred

    initial = method.trainable_state(method.build(tiny_llama, 0)[0])
    after = p_preferred(fit, "train")
    assert (p_preferred(dataclasses.replace(fit, tensors=initial), "train") > 0.5).mean() < 0.8  # untrained
    assert (after > 0.5).mean() >= 0.95
    assert (p_preferred(fit, "test") > 0.5).mean() >= 0.9

    # the virtual tokens moved and matter: resetting them to their initial values changes scores
    assert not torch.allclose(initial["prompt_embeddings"], fit.tensors["prompt_embeddings"])
    reset = dict(fit.tensors, prompt_embeddings=initial["prompt_embeddings"])
    assert not np.allclose(p_preferred(dataclasses.replace(fit, tensors=reset), "train"), after, atol=1e-3)

    save_fitted(fit, tmp_path / "pt", intervention=method.name)
    np.testing.assert_array_equal(p_preferred(load_fitted(PromptTuning.fitted_type(), tmp_path / "pt"), "train"),
                                  after)
