"""`genies plan`: the JSON document parses and agrees with the table, the table fits 80 columns,
a job that cannot fit is explained, the model can be a published shape, a folder or a
config.json, token counts come from data when given, and bad input is one line (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genies.cli import _build
from genies.models.base import LoadedModel

APP = _build()
GPU = ["--gpus", "1", "--gpu-type", "h100", "--gpu-memory", "72"]


def _invoke(args: list[str], code: int = 0) -> str:
    result = CliRunner().invoke(APP, ["plan", *args])
    assert result.exit_code == code, result.output
    return result.output


def test_json_is_one_document_that_sizes_every_job() -> None:
    doc = json.loads(_invoke(["--model", "llama-7b", "--preset", "paper", "-i", "lora", "-i", "mms", *GPU, "--json"]))
    assert doc["shape"]["parameters"] == 6_738_415_616
    assert doc["precision"] == {"dtype": "bfloat16", "quantize": "none"}
    assert doc["hardware"] == {"kind": "cuda", "name": "h100", "devices": 1, "memory_gib": 72.0,
                               "flop_rate": "nominal h100 bfloat16 dense 989 TFLOP/s x 0.35"}
    jobs, totals = doc["jobs"], doc["totals"]
    assert totals["jobs"] == len(jobs) == totals["fits"] + totals["predictions"]
    assert totals["not_fitting"] == 0 and totals["hours"] == pytest.approx(sum(j["seconds"] for j in jobs) / 3600,
                                                                           abs=1e-3)
    lora = next(j for j in jobs if j["kind"] == "fit" and j["intervention"] == "lora")
    assert lora["placement"] == "1 GPU +ckpt" and lora["gradient_checkpointing"]
    assert set(lora["memory_gib"]) == {"weights", "activations", "optimizer", "buffers", "total"}
    assert lora["peak_gib"] == pytest.approx(lora["memory_gib"]["total"], abs=1e-3)


def test_table_fits_80_columns_and_ends_with_totals() -> None:
    out = _invoke(["--model", "llama-70b", "--shifts", "all", "-i", "prompt_tuning", "-i", "cra", *GPU[:2]])
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[0] == "model llama-70b: 68.98 B parameters, bfloat16"
    assert any(line.startswith("fit prompt_tuning on ") for line in lines)
    assert any(line.startswith("  -> ") for line in lines)  # predictions listed under their fit
    assert any(line.endswith("do not fit") and " jobs (" in line for line in lines)


def test_a_plan_that_does_not_fit_says_what_would_make_it_fit() -> None:
    out = _invoke(["--model", "llama-30b", "--preset", "paper", "-i", "lora", "--shifts", "extreme", *GPU])
    assert max(map(len, out.splitlines())) <= 80
    assert "does not fit" in out
    said = " ".join(out[out.index("does not fit:"):].split())
    assert "--quantize 4bit" in said and "--gpus 2" in said
    fitted = json.loads(_invoke(["--model", "llama-30b", "--preset", "paper", "-i", "lora", "--shifts", "extreme",
                                 "--quantize", "4bit", *GPU, "--json"]))
    assert fitted["totals"]["not_fitting"] == 0


def test_model_as_folder_or_config_file_and_tokens_from_data(tiny_llama: LoadedModel, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU is planned for when no GPU is asked for (its matmul rate measured); token counts
    come from the data root's distributions."""
    from genies.data.synth import ensure_synthetic

    monkeypatch.setenv("GENIES_HOME", str(tmp_path))
    root = ensure_synthetic(16)
    args = ["--shifts", "synthetic", "--data-root", str(root), "-i", "lora", "--device", "cpu", "--json"]
    by_folder = json.loads(_invoke(["--model", str(tiny_llama.path), *args]))
    by_file = json.loads(_invoke(["--model", str(tiny_llama.path / "config.json"), *args]))
    assert [(j["key"], j["memory_gib"]) for j in by_folder["jobs"]] == \
        [(j["key"], j["memory_gib"]) for j in by_file["jobs"]]
    assert by_folder["shape"]["parameters"] == sum(p.numel() for p in tiny_llama.model.parameters())
    assert by_folder["hardware"]["kind"] == "cpu" and by_folder["hardware"]["flop_rate"].startswith("measured")
    assert by_folder["tokens"].startswith(f"the data in {root}")
    assert all(j["fits"] and j["placement"] == "cpu" for j in by_folder["jobs"])


def test_the_embedded_default_is_planned_without_converting_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--model default` plans from the embedded model's shape: an empty GENIES_HOME stays empty
    (it converted the GGUF file, half a minute and 0.5 GB, to read a config.json)."""
    from genies.doctor.shapes import EMBEDDED_SHAPE
    from genies.models import loading

    def no_conversion(*args, **kwargs):
        raise AssertionError("genies plan resolved the model folder")

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(loading, "resolve_model_folder", no_conversion)
    doc = json.loads(_invoke(["--model", "default", "-i", "mms", *GPU, "--json"]))
    assert doc["shape"]["parameters"] == 134_515_008 and doc["shape"]["layers"] == EMBEDDED_SHAPE["num_hidden_layers"]
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("args, words", [
    (["--model", "llama-8b"], "model 'llama-8b'"),
    (["--model", "llama-7b", "--quantize", "3bit"], "unknown quantization '3bit'"),
    (["--model", "llama-7b", "--gpu-type", "tpu"], "unknown GPU type 'tpu'"),
    (["--model", "llama-7b", "--set", "mms.nope=1"], "nope"),
])
def test_bad_input_is_one_line(args: list[str], words: str) -> None:
    out = _invoke([*args, *GPU[:2]], code=2)
    assert out.startswith("error: ") and words in out and out.count("\n") == 1
