"""The frozen-layer cache's one-time check costs what probes cost, not what a training row does.

`LayerCache.matches_plain` compares bottom-then-top with the plain packed pass and draws the
frozen layers twice to see that none drops out. It used to run on the first training row, four
passes through the model of a row of up to 512 tokens on GENIES' long texts (about a tenth of a
lora fit, docs/PERFORMANCE.md "Training"); the plumbing it checks is the same on short probes.
"""

from __future__ import annotations

import pytest
import torch

from genies.interventions import _reward_model as rm
from genies.interventions import _reward_packing as pk
from genies.interventions.lora import Lora

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_llama4(tmp_path_factory):
    from genies.models.testing import tiny_model

    return tiny_model(tmp_path_factory.mktemp("llama4") / "llama", "llama", num_layers=4)


def cache_of(lm) -> pk.LayerCache:
    model, head = Lora(r=4, dropout=0.0, last_layers=2).build(lm, 0)
    model.train()
    return pk.LayerCache(model, head, 2, rm.pad_token_id(lm), torch.device("cpu"), torch.float32)


def test_the_check_runs_on_probes_whatever_the_training_rows(tiny_llama4, monkeypatch) -> None:
    cache = cache_of(tiny_llama4)
    widths: list[int] = []
    real = cache._bottom
    monkeypatch.setattr(cache, "_bottom", lambda batch: (widths.append(batch.input_ids.shape[-1]), real(batch))[1])
    assert cache.matches_plain()
    assert len(widths) == 3 and max(widths) <= 12  # bottom-then-top once, and the two seeded draws


def test_the_probe_check_still_refuses_what_the_row_check_refused(tiny_llama4, monkeypatch) -> None:
    """A top pass that drops the cached states (here: layer inputs replaced by zeros) differs from
    the plain pass on probes too."""
    cache = cache_of(tiny_llama4)
    real = cache._top
    monkeypatch.setattr(cache, "_top", lambda states, batch: real(torch.zeros_like(states), batch))
    assert not cache.matches_plain()


def test_a_fit_through_the_cache_progresses_by_rows(tiny_llama4) -> None:
    cache = cache_of(tiny_llama4)
    assert cache.matches_plain()
    rows = [pk.PackedRow.pack([[5, 6, 7, 8], [5, 6, 9]]), pk.PackedRow.pack([[10, 11], [12]]),
            pk.PackedRow.pack([[13, 14, 15], [13, 16]])]
    done: list[int] = []
    cache.build(rows, 2, done.append)
    assert done == [2, 1] and [len(s) for s in cache.states] == [len(r.tokens) for r in rows]
