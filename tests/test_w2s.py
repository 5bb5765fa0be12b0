"""Weak-to-strong runs (`genies.w2s`) on planted data: known answers for PGR, weak labels, and
which jobs read the student's half's ground truth.

The weak supervisor is a planted oracle that knows the feature (the preferred response ends in
' yes') and inverts it on every fourth prompt: a known 25 % flip rate. The strong method is the
TF-IDF supervisor, which learns the feature from 32 pairs; neither loads a language model, so a
whole run takes seconds (the tiny model only gives the plan a fingerprint)."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from planted import planted

from genies.data.schema import Distribution, EvalSet, Example
from genies.data.shift import Shift
from genies.errors import ConfigError
from genies.interventions.base import Intervention, Scorer, Unfitted
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores
from genies.pipeline.executor import LocalExecutor
from genies.weak_to_strong import W2SConfig, w2s
from genies.weak_to_strong.files import load_results
from genies.weak_to_strong.metrics import pgr
from genies.weak_to_strong.plan import halves


@register("flipped_oracle", family="baseline", description="test: the planted feature, inverted on every k-th prompt")
@dataclass
class FlippedOracle(Intervention[Unfitted]):
    every: int = hparam(4, "invert the feature on prompts whose number is a multiple of this (0: never)")

    needs_training_data = False
    uses_run_model = False

    def fit(self, lm, train, ctx) -> Unfitted:
        return Unfitted()

    def scorer(self, lm, fitted, ctx) -> Scorer:
        def score(data: EvalSet) -> Scores:
            out = []
            for q in data.queries:
                number = int(re.match(r"Q(\d+)", q.prompt).group(1))
                sign = -1.0 if self.every and number % self.every == 0 else 1.0
                out.append(np.array([sign * (1.0 if r.endswith(" yes") else -1.0) for r in q.responses]))
            return Scores.bradley_terry(out)
        return score


def _data(train: list[Example] | None = None) -> dict[str, Distribution]:
    return {"src": Distribution.from_examples("src", train or planted(64, 1), planted(40, 2)),
            "tgt": Distribution.from_examples("tgt", planted(8, 3), planted(40, 4))}


def _run(tmp_path: Path, lm, *, every: int = 4, data: dict[str, Distribution] | None = None, name: str = "run",
         cache: str = "jobs", **extra):
    """A run without DE (its zero-shot and LoRA references: tests/test_w2s_de.py)."""
    config = W2SConfig(out=tmp_path / name, weak_method="flipped_oracle", method="tfidf", max_train=64, max_eval=40,
                       shifts=(Shift("src", "tgt", "tgt", "test", "test"),), hparams={"flipped_oracle": {"every": every}},
                       cache_dir=tmp_path / cache, **{"target_tuned": "none", **extra})
    return w2s(config, weak_lm=lm, strong_lm=lm, distributions=data or _data(), executor=LocalExecutor(plain=True))


def test_pgr_is_well_above_zero_with_a_weak_supervisor_that_flips_a_quarter(tmp_path, tiny_llama) -> None:
    results = _run(tmp_path, tiny_llama)
    (src,) = results.sources
    assert src.weak.value == pytest.approx(0.75)  # prompts 0, 4, ..., 36 of 40 flipped
    assert src.weak_label_accuracy == pytest.approx(0.75, abs=0.15)  # on the 32 examples of half B
    (student,) = src.students
    assert src.ceiling.value > 0.9 and student.accuracy.value > 0.9 and student.loss == "xent"
    assert student.pgr.value > 0.6 and student.pgr.low is not None and student.pgr.low > 0
    assert src.weak.low <= src.weak.value <= src.weak.high
    (tgt,) = results.targets
    assert tgt.target == "tgt" and tgt.student("xent").accuracy.value > 0.9
    doc = json.loads((tmp_path / "run" / "w2s.json").read_text())
    assert doc["sources"][0]["students"][0]["pgr"]["value"] == pytest.approx(student.pgr.value)
    assert load_results(tmp_path / "run") == results


def test_pgr_is_undefined_when_the_ceiling_is_not_above_the_weak_supervisor(tmp_path, tiny_llama, capsys) -> None:
    results = _run(tmp_path, tiny_llama, every=0)  # a perfect weak supervisor: ceiling <= weak = 1
    (src,) = results.sources
    pgr_ = src.student("xent").pgr
    assert src.weak.value == 1.0 and pgr_.value is None and pgr_.low is None and not pgr_.defined
    assert json.loads((tmp_path / "run" / "w2s.json").read_text())["sources"][0]["students"][0]["pgr"]["value"] is None
    from rich.console import Console

    from genies.weak_to_strong.run import print_summary

    capsys.readouterr()  # the plain executor's job lines
    print_summary(results, Console(width=80, force_terminal=False))
    out = capsys.readouterr().out
    assert "undefined" in out and max(len(line) for line in out.splitlines()) <= 80
    assert pgr(0.7, 0.8, 0.7) is None and pgr(0.6, 0.7, 0.8) == pytest.approx(0.5)


def test_only_the_ceiling_reads_the_ground_truth_of_the_students_half(tmp_path, tiny_llama) -> None:
    train = planted(64, 1)
    half_b = halves(0)[1].indices(len(train), "src/train")
    permuted = [dataclasses.replace(ex, preferred=1 - ex.preferred) if i in half_b else ex
                for i, ex in enumerate(train)]
    before = _run(tmp_path, tiny_llama, name="a").sources[0]
    after = _run(tmp_path, tiny_llama, name="b", data=_data(permuted)).sources[0]
    assert after.weak == before.weak  # the students too (their PGR reads the ceiling):
    assert [s.accuracy for s in after.students] == [s.accuracy for s in before.students]
    assert after.weak_label_accuracy == pytest.approx(1 - before.weak_label_accuracy)  # measured after the fact
    assert after.ceiling.value < 0.5 < before.ceiling.value


def test_weak_labels_are_identical_across_reruns(tmp_path, tiny_llama) -> None:
    from genies.pipeline.store import JobStore

    first = _run(tmp_path, tiny_llama, name="a", cache="one")
    second = _run(tmp_path, tiny_llama, name="b", cache="two")  # a fresh store: every job runs again
    assert first.sources == second.sources
    files = [sorted((tmp_path / c / "predict").glob("*.json")) for c in ("one", "two")]
    assert [f.name for f in files[0]] == [f.name for f in files[1]]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(*files))
    assert JobStore(tmp_path / "one").root.is_dir()


def test_bad_configurations_are_refused_in_one_line(tmp_path, tiny_llama) -> None:
    with pytest.raises(ConfigError, match="reward-model student"):
        _run(tmp_path, tiny_llama, losses="aux_conf")
    with pytest.raises(ConfigError, match="cannot be a student"):
        w2s(W2SConfig(out=tmp_path / "z", method="zero_shot", shifts=(Shift("src", "tgt", "tgt", "test", "test"),)), weak_lm=tiny_llama,
            strong_lm=tiny_llama, distributions=_data())
    if not torch.cuda.is_available():  # a device this machine lacks: refused before anything loads or is written
        with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
            w2s(W2SConfig(out=tmp_path / "gpu", method="tfidf", weak_method="tfidf", device="cuda",
                          shifts=(Shift("src", "tgt", "tgt", "test", "test"),)), distributions=_data())
        assert not (tmp_path / "gpu").exists()


def test_the_command_runs_the_synthetic_suite_and_prints_pgr(tmp_path, tiny_llama) -> None:
    """`genies w2s` end to end on the synthetic shifts with `PATH:layers=1` as the weak model (its
    fingerprint plans the jobs; the TF-IDF methods never load it); a rerun is all cached."""
    from typer.testing import CliRunner

    from genies.cli import _build

    args = ["w2s", "--weak", f"{tiny_llama.path}:layers=1", "--strong", str(tiny_llama.path), "--weak-method",
            "zero_shot", "--method", "tfidf", "--shifts", "synthetic", "--max-train", "16", "--max-eval", "8",
            "--target-tuned", "none",
            "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "jobs"), "--plain"]
    first = CliRunner().invoke(_build(), args)
    assert first.exit_code == 0, first.output
    assert "PGR" in first.output and "synth_arithmetic_easy" in first.output
    again = CliRunner().invoke(_build(), args)
    assert again.exit_code == 0 and " done " not in again.output and "cached" in again.output
    doc = json.loads((tmp_path / "run" / "w2s.json").read_text())
    assert doc["run"]["weak_method"] == "zero_shot" and len(doc["sources"]) == 4 and doc["targets"]
