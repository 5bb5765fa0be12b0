"""`NAME:layers=K` model specs (the weak model of docs/w2s.md): the first K decoder layers of a
model, saved once, with their own fingerprint, computing exactly the full model's first K layers.

What is compared: `output_hidden_states` gives the embeddings and each layer's output, except that
the last entry has the model's final norm applied. So the truncated model's entries 0..K-1 equal
the full model's, its K-th layer's raw output (read with a hook) equals the full model's entry K,
and its last entry equals the full model's final norm applied to that entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genies.models.embedded import ModelNotFoundError
from genies.models.loading import load_model, model_fingerprint, resolve_model_folder
from genies.models.testing import tiny_model


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_first_k_layers_compute_the_full_models_hidden_states_up_to_layer_k(tmp_path: Path, arch: str) -> None:
    full = tiny_model(tmp_path / arch, arch, num_layers=4)
    spec = f"{tmp_path / arch}:layers=2"
    weak = load_model(spec, device="cpu", dtype=torch.float32)
    assert weak.model.config.num_hidden_layers == 2 and weak.num_layers == 2
    owner = weak.model.base_model
    layers = owner.layers if hasattr(owner, "layers") else owner.h
    assert len(layers) == 2
    captured: list[torch.Tensor] = []
    layers[-1].register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
    ids = full.tokenizer(["weak to strong", "a b"], return_tensors="pt", padding=True)
    with torch.no_grad():
        big = full.model(**ids, output_hidden_states=True).hidden_states
        small = weak.model(**ids, output_hidden_states=True).hidden_states
    assert len(big) == 5 and len(small) == 3
    for i in range(2):
        torch.testing.assert_close(small[i], big[i], rtol=0, atol=0)
    torch.testing.assert_close(captured[0], big[2], rtol=1e-6, atol=1e-6)
    final_norm = full.model.base_model.norm if arch == "llama" else full.model.base_model.ln_f
    with torch.no_grad():
        torch.testing.assert_close(small[2], final_norm(big[2]), rtol=1e-6, atol=1e-6)


def test_truncated_models_are_cached_and_fingerprinted_apart(tmp_path: Path) -> None:
    tiny_model(tmp_path / "m", "llama", num_layers=3)
    base = str(tmp_path / "m")
    two = resolve_model_folder(f"{base}:layers=2")
    assert resolve_model_folder(f"{base}:layers=2") == two  # built once
    prints = {model_fingerprint(spec)[1] for spec in (base, f"{base}:layers=1", f"{base}:layers=2")}
    assert len(prints) == 3
    from genies.models.catalog import list_models

    assert any(e.location == str(two) and "the first 2 of 3 layers of m" in e.note for e in list_models())
    for bad in ("0", "4"):
        with pytest.raises(ModelNotFoundError, match=f"layers={bad}, but the model has 3 decoder layers"):
            resolve_model_folder(f"{base}:layers={bad}")
