"""`genies judge` on tiny saved checkpoints and toy distributions, and external judges through
`genies run`: the tables and files written, resuming from the job store, one-line refusals."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from judge_models import ascii_examples, causal_lm, longer_is_better_rm, write_distribution  # tests/judge_models.py
from typer.testing import CliRunner

from genies import metrics
from genies.cli import _build
from genies.data.schema import eval_pairs
from genies.interventions import _external

pytestmark = pytest.mark.usefixtures("one_torch_thread")
# Real names, so the built-in shift alpaca_easy -> alpaca_hard (category difficulty) joins them.
TOY = {"alpaca_easy": ascii_examples(12, seed=1, responses=2), "alpaca_hard": ascii_examples(10, seed=2, responses=4)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("judge-cli")
    data = root / "data"
    for name, examples in TOY.items():
        write_distribution(data / name, examples, examples[:4])
    return {"root": root, "data": data, "rm": longer_is_better_rm(root / "rm"), "lm": causal_lm(root / "lm")}


@pytest.fixture(autouse=True)
def _home(setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENIES_HOME", str(setup["root"] / "home"))
    _external.clear_loaded()


def _invoke(*args: str):
    return CliRunner().invoke(_build(), [str(a) for a in args])


def _longer(examples) -> float:
    return metrics.length_baselines([(p.preferred, p.dispreferred) for p in eval_pairs(examples)]).longer


def test_genies_judge_writes_its_table_and_resumes(setup, tmp_path) -> None:
    out = tmp_path / "out"
    args = ("judge", f"rm:{setup['rm']}", "--dists", "alpaca_easy,alpaca_hard", "--data-root", setup["data"],
            "--out", out, "--cache-dir", tmp_path / "jobs")
    first = _invoke(*args)
    assert first.exit_code == 0, first.output
    assert "rm:rm on each distribution's test split" in first.output and "alpaca_easy -> alpaca_hard" in first.output
    doc = json.loads((out / "judge.json").read_text())
    assert doc["schema"] == 1 and doc["judge"] == "rm:rm" and doc["models"][0]["model"] == str(setup["rm"])
    by_name = {d["distribution"]: d for d in doc["distributions"]}
    for name, examples in TOY.items():
        assert by_name[name]["accuracy"] == _longer(examples) == by_name[name]["length_longer_accuracy"]
        assert by_name[name]["categories"] == ["difficulty"] and by_name[name]["position_bias"] is None
        assert by_name[name]["ci_low"] <= by_name[name]["accuracy"] <= by_name[name]["ci_high"]
    (shift,) = doc["shifts"]
    assert shift["change"] == pytest.approx(_longer(TOY["alpaca_hard"]) - _longer(TOY["alpaca_easy"]))
    assert [s["scope"] for s in doc["scopes"]] == ["all", "category:difficulty", "family:extreme"]
    rows = list(csv.DictReader((out / "judge.csv").open()))
    assert [r["distribution"] for r in rows] == ["alpaca_easy", "alpaca_hard"]
    assert float(rows[0]["accuracy"]) == by_name["alpaca_easy"]["accuracy"]

    again = _invoke(*args, "--format", "json")  # every prediction comes from the job store
    assert again.exit_code == 0 and "scoring" not in again.stderr
    assert json.loads(again.stdout) == doc
    assert (out / "judge.json").read_text() == json.dumps(doc, indent=1) + "\n"  # the same bytes


def test_genies_judge_refuses_what_is_not_an_external_judge_in_one_line(setup, tmp_path) -> None:
    for spec, expected in (("zero_shot", "is not an external judge"),
                           (f"rm:{setup['lm']}", "is a causal language model"),
                           (f"rm:{tmp_path / 'nowhere'}", "no folder or file")):
        result = _invoke("judge", spec, "--dists", "alpaca_easy", "--data-root", setup["data"], "--out", tmp_path)
        assert result.exit_code == 2 and expected in result.output and len(result.output.strip().splitlines()) == 1


def test_a_misspelt_distribution_stops_genies_judge_before_a_model_loads(setup, tmp_path, monkeypatch) -> None:
    def no_loading(*args, **kwargs):
        raise AssertionError("a judge was built for a misspelt distribution")

    monkeypatch.setattr("genies.judging.external_method", no_loading)
    result = _invoke("judge", f"rm:{setup['rm']}", "--dists", "alpaca_easy,alpaca_hadr", "--data-root", setup["data"],
                     "--out", tmp_path / "out")
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "unknown distribution 'alpaca_hadr'" in result.output and "did you mean alpaca_hard" in result.output
    assert not (tmp_path / "out").exists()


def test_external_judges_run_through_the_pipeline(setup, tmp_path) -> None:
    """`genies run -i judge:... -i rm:...`: one fit without data per judge, a row per shift,
    the reward model's generalization accuracy exactly its planted length rule's."""
    shifts = tmp_path / "shifts.json"
    shifts.write_text(json.dumps([{"source": "alpaca_easy", "target": "alpaca_hard"}]))
    out = tmp_path / "run"
    result = _invoke("run", "-i", f"judge:{setup['lm']}", "-i", f"rm:{setup['rm']}", "--model", setup["lm"],
                     "--shifts", shifts, "--data-root", setup["data"], "--target-tuned", "none",
                     "--cache-dir", tmp_path / "jobs", "--out", out, "--plain")
    assert result.exit_code == 0, result.output
    rows = {r["intervention"]: r for r in csv.DictReader((out / "results.csv").open())}
    assert set(rows) == {"judge:lm", "rm:rm"}
    assert float(rows["rm:rm"]["generalization_accuracy"]) == _longer(TOY["alpaca_hard"])
    assert float(rows["rm:rm"]["source_ID_accuracy"]) == _longer(TOY["alpaca_easy"])
    jobs = json.loads((out / "manifest.json").read_text())["jobs"]
    fits = [j["label"] for j in jobs if j["kind"] == "fit"]
    assert sorted(fits) == ["fit judge:lm on (no training data)", "fit rm:rm on (no training data)",
                            "fit zero_shot on (no training data)"]
    judged = next(r for r in json.loads((out / "results.json").read_text())["rows"] if r["intervention"] == "judge:lm")
    evaluation = json.loads((out / judged["target_evaluation"]).read_text())
    assert "position_bias" in evaluation["info"]


@pytest.mark.data
@pytest.mark.skipif(not os.environ.get("GENIES_DATA_DIR"), reason="needs the GENIES data (GENIES_DATA_DIR)")
def test_genies_judge_on_the_genies_distributions(setup, tmp_path) -> None:
    result = _invoke("judge", f"rm:{setup['rm']}", "--dists", "genies", "--max-eval", "2", "--out", tmp_path,
                     "--cache-dir", tmp_path / "jobs", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "judge.csv").open()))
    assert len(rows) >= 15 and all(0 <= float(r["accuracy"]) <= 1 for r in rows)
    assert len(json.loads((tmp_path / "judge.json").read_text())["shifts"]) == 15


def test_genies_bench_judge_compares_the_fast_path_with_one_sequence_per_response(setup) -> None:
    data = setup["data"]
    result = _invoke("bench", "judge", setup["rm"], "-d", data / "alpaca_easy", "-d", data / "alpaca_hard",
                     "-n", "4", "--json")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["forward"] == "tree" and numbers["max_abs_diff"] < 1e-5
    assert numbers["examples"] == 8 and numbers["responses"] == 4 * 2 + 4 * 4
    assert numbers["packed_tokens"] < numbers["naive_tokens"] and numbers["speedup_vs_naive"] > 0
    refused = _invoke("bench", "judge", setup["lm"], "-d", data / "alpaca_easy")
    assert refused.exit_code == 2 and "is a causal language model" in refused.output
