"""Model loading: local folders, fingerprints, one-line errors, pickles refused, the embedded default."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch

from genies.data.schema import Example
from genies.models.embedded import ModelNotFoundError
from genies.models.loading import load_model
from genies.models.testing import tiny_model


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loading") / "llama"
    tiny_model(folder, "llama")
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_local_folder_loads_with_stable_fingerprint(tiny_folder: Path, tmp_path: Path) -> None:
    lm = load_model(str(tiny_folder))
    assert lm.path == tiny_folder and lm.dtype == torch.float32 and lm.device.type == "cpu"
    assert lm.tokenizer.pad_token is not None
    assert load_model(str(tiny_folder)).fingerprint == lm.fingerprint
    # the same files elsewhere are the same model
    assert load_model(str(_copy(tiny_folder, tmp_path / "copy"))).fingerprint == lm.fingerprint
    # a test's tiny model names the same cache entries as the folder loaded by name
    assert tiny_model(tiny_folder, "llama").fingerprint == lm.fingerprint


def test_fingerprint_changes_with_weights_config_and_tokenizer(tiny_folder: Path, tmp_path: Path) -> None:
    base = load_model(str(tiny_folder)).fingerprint
    other_weights = tiny_model(tmp_path / "seed1", "llama", seed=1)
    assert load_model(str(other_weights.path)).fingerprint != base

    config_changed = _copy(tiny_folder, tmp_path / "config")
    config = json.loads((config_changed / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3
    (config_changed / "config.json").write_text(json.dumps(config))
    assert load_model(str(config_changed)).fingerprint != base

    tok_changed = _copy(tiny_folder, tmp_path / "tok")
    tok_config = json.loads((tok_changed / "tokenizer_config.json").read_text())
    tok_config["model_max_length"] = 128
    (tok_changed / "tokenizer_config.json").write_text(json.dumps(tok_config))
    assert load_model(str(tok_changed)).fingerprint != base


def test_errors_are_one_line_naming_what_was_tried(tiny_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"Hugging Face cache.*supported") as err:
        load_model("nobody/no-such-model-xyz")
    assert "\n" not in str(err.value)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "missing.gguf"))
    for path in ("./my-reward-model", str(tmp_path / "nowhere"), "~/nowhere-xyz"):  # a path: no hub hint
        with pytest.raises(ModelNotFoundError, match=f"^model '{re.escape(path)}': no folder or file ") as err:
            load_model(path)
        assert "huggingface-cli" not in str(err.value) and "HFValidationError" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(tmp_path / "empty"))
    odd = _copy(tiny_folder, tmp_path / "odd")
    config = json.loads((odd / "config.json").read_text())
    config["model_type"], config["architectures"] = "vit", ["ViTModel"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match=r"unsupported architecture 'vit'.*supported") as err:
        load_model(str(odd))
    assert "\n" not in str(err.value)


def test_remote_code_needs_the_flag(tiny_folder: Path, tmp_path: Path) -> None:
    custom = _copy(tiny_folder, tmp_path / "custom")
    config = json.loads((custom / "config.json").read_text())
    config["model_type"] = "my_custom_arch"
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomLM"}
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelNotFoundError, match="--trust-remote-code"):
        load_model(str(custom))


def test_pickled_weights_need_allow_pickle(tiny_folder: Path, tmp_path: Path) -> None:
    pickled = _copy(tiny_folder, tmp_path / "pickled")
    lm = load_model(str(tiny_folder))
    (pickled / "model.safetensors").unlink()
    torch.save(lm.model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="--allow-pickle"):
        load_model(str(pickled))
    loaded = load_model(str(pickled), allow_pickle=True)
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)


@pytest.mark.slow
def test_default_model_loads_fast_and_scores_sensibly() -> None:
    from genies.models.scoring import score_examples

    lm = load_model("default")  # converts the embedded GGUF on the first call in this home
    start = time.perf_counter()
    again = load_model("default")
    assert time.perf_counter() - start < 5.0
    assert again.fingerprint == lm.fingerprint and (lm.path / "model.safetensors").is_file()
    assert lm.model.config.model_type == "llama" and lm.num_layers == 30
    prompt = "Question: What is the capital of France?\nAnswer:"
    scores = score_examples(lm, [Example(prompt, (" Paris", " Bananas"), 0)])
    assert scores[0].sum[0] > scores[0].sum[1] + 2.0
