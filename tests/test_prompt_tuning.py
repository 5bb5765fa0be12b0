"""prompt_tuning learns a planted feature through its virtual tokens and reloads exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genies.data.schema import Distribution
from genies.interventions.base import FitContext, State, get_intervention

from planted import planted  # tests/planted.py


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_prompt_tuning_learns_a_planted_feature_and_reloads(tiny_llama, tmp_path) -> None:
    dist = Distribution.from_examples("planted", planted(32, seed=0), planted(12, seed=1))
    method = get_intervention("prompt_tuning")(learning_rate=3e-2, steps=40, batch_size=8)
    state = method.fit(tiny_llama, dist, FitContext(seed=0))
    assert set(state.tensors) == {"prompt_embeddings", "base_model.score.weight"}
    assert state.tensors["prompt_embeddings"].shape[0] == 10

    before = method.predict(tiny_llama, State(method.name, method.hparams(), {"seed": 0},
                                              method.trainable_state(method.build(tiny_llama, 0)[0])),
                            dist, "train", FitContext())
    after = method.predict(tiny_llama, state, dist, "train", FitContext())
    assert (before.p_preferred > 0.5).mean() < 0.8  # the untrained model does not know the feature
    assert (after.p_preferred > 0.5).mean() >= 0.95
    assert (method.predict(tiny_llama, state, dist, "test", FitContext()).p_preferred > 0.5).mean() >= 0.9

    # the virtual tokens moved and matter: resetting them to their initial values changes scores
    initial = method.trainable_state(method.build(tiny_llama, 0)[0])["prompt_embeddings"]
    assert not torch.allclose(initial, state.tensors["prompt_embeddings"])
    reset = dict(state.tensors, prompt_embeddings=initial)
    changed = method.predict(tiny_llama, State(method.name, method.hparams(), state.info, reset),
                             dist, "train", FitContext())
    assert not np.allclose(changed.p_preferred, after.p_preferred, atol=1e-3)

    state.save(tmp_path / "pt")
    np.testing.assert_array_equal(State.load(tmp_path / "pt").predict(tiny_llama, dist, "train").p_preferred,
                                  after.p_preferred)
