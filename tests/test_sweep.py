"""`genies sweep`: a planted best value recovered on held-out source data, no target data read,
resume after a kill (grid and Optuna search), the files a sweep writes and what reads them."""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import genies
from genies.data.schema import Distribution, EvalSet, Example
from genies.errors import ConfigError
from genies.interventions import FitContext, Intervention, Scorer, Scores, hparam, register
from genies.pipeline.config import RunConfig
from genies.pipeline.executor import LocalExecutor
from genies.pipeline.views import Part
from genies.sweeps import SweepConfig, load_sweep, parse_grid, parse_search
from genies.sweeps.objective import bradley_terry_loss
from genies.sweeps.output import summary, text_plot

FITS: list[float] = []  # the strength of every fit that ran in this process
N, HOLDOUT, SEED = 60, 0.25, 0


@dataclass(frozen=True)
class Sign:
    sign: int


@register("pt_yes", family="fine-tuning", description="test stand-in: p = sigmoid(strength) for the 'yes' response")
@dataclass
class YesRule(Intervention[Sign]):
    """Learns whether responses ending in ' yes' are preferred; P(yes beats no) = sigmoid(strength).
    With a fraction q of pairs preferring 'yes', the mean Bradley-Terry loss is minimal at
    strength = logit(q): the planted best value."""

    strength: float = hparam(1.0, "how strongly the planted feature is used")

    def fit(self, lm, train: Distribution, ctx: FitContext) -> Sign:
        FITS.append(self.strength)
        kill = os.environ.get("GENIES_TEST_KILL_AT")
        if kill and len(FITS) >= int(kill):
            raise KeyboardInterrupt
        assert not train.test
        yes = np.mean([q.preferred.endswith("yes") for q in train.train_pairs(ctx.seed)])
        return Sign(1 if yes >= 0.5 else -1)

    def scorer(self, lm, fitted: Sign, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            assert data.labels is None
            yes = np.array([r.endswith("yes") for q in data.queries for r in q.responses], dtype=float)
            return Scores.pairwise([len(q.responses) for q in data.queries],
                                   lambda a, b: 1 / (1 + np.exp(-fitted.sign * self.strength * (yes[a] - yes[b]))))
        return score


def _source() -> Distribution:
    """N train examples; exactly 80 % of the held-out part (and of the rest) prefer ' yes', so
    the held-out loss is minimal at strength = logit(0.8) = log 4."""
    held = Part(0.0, HOLDOUT, SEED).indices(N, "src/train")
    rest = [i for i in range(N) if i not in held]
    flipped = set(held[: len(held) // 5]) | set(rest[: len(rest) // 5])
    rng = random.Random(1)
    examples = []
    for i in range(N):
        good, bad = (f"w{rng.randint(0, 99)} yes", f"w{rng.randint(0, 99)} no")
        if i in flipped:
            good, bad = bad, good
        first = rng.randrange(2)
        examples.append(Example(f"src {i}", (good, bad) if first else (bad, good), 0 if first else 1))
    return Distribution.from_examples("src", examples, examples[:4])


def _target(permuted: bool) -> Distribution:
    rng = random.Random(2)
    examples = [Example(f"tgt {i}", (f"t{i} yes", f"t{i} no"), 0) for i in range(20)]
    if permuted:
        examples = [Example(e.prompt, e.responses, rng.randrange(2)) for e in examples]
    return Distribution.from_examples("tgt", examples, examples)


class Recording(dict):
    """A distribution table that records every name asked of it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def __getitem__(self, name):
        self.asked.add(name)
        return super().__getitem__(name)

    def __contains__(self, name) -> bool:
        self.asked.add(name)
        return super().__contains__(name)


def _sweep(tmp: Path, lm, *, permuted: bool = False, out: str = "sweep", **fields):
    table = Recording(src=_source(), tgt=_target(permuted))
    settings = RunConfig(out=tmp / out, interventions=("pt_yes",), cache_dir=tmp / "cache", max_train=N, seed=SEED)
    config = SweepConfig(intervention="pt_yes", source="src", out=tmp / out, holdout=HOLDOUT, settings=settings,
                         **fields)
    result = genies.sweep(config, lm=lm, distributions=table, executor=LocalExecutor(plain=True))
    return result, table


GRID = {"strength": ("0.5", "1.0", "1.4", "2.0", "3.0")}


def test_grid_recovers_the_planted_best_value_on_the_held_out_part(tmp_path, tiny_llama):
    result, table = _sweep(tmp_path, tiny_llama, grid=GRID)
    assert table.asked == {"src"}  # the sweep's loader never asked for the target
    by_strength = {t.params["strength"]: t for t in result.trials}
    assert list(by_strength) == [0.5, 1.0, 1.4, 2.0, 3.0]
    for w, t in by_strength.items():  # hand-computed: 12 of 15 held-out pairs prefer 'yes'
        assert t.heldout_pairs == 15 and t.accuracy == pytest.approx(0.8)
        expected = -(0.8 * math.log(1 / (1 + math.exp(-w))) + 0.2 * math.log(1 / (1 + math.exp(w))))
        assert t.loss == pytest.approx(expected) and t.objective == t.loss
    assert result.best_trial.params == {"strength": 1.4}  # the grid value nearest log 4 = 1.386
    assert (result.train_examples, result.heldout_examples) == (45, 15)
    out = tmp_path / "sweep"
    assert json.loads((out / "best-hparams.json").read_text()) == {"pt_yes": {"strength": 1.4}}
    assert load_sweep(out).trials == result.trials
    assert "<svg" in (out / "report.html").read_text()
    text = summary(result)
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("next:")) and "<- best" in text
    [best_line] = [line for line in text_plot(result, "strength") if "best" in line and "1.4" in line]
    assert best_line.count("#") == 36  # the best loss has the longest bar
    # the best-hparams file is what `genies run --hparams` reads; --set wins over it
    run = RunConfig(out=tmp_path / "run", hparams_file=out / "best-hparams.json", hparams={"mms": {"k": "8"}})
    assert run.hparams == {"pt_yes": {"strength": 1.4}, "mms": {"k": "8"}}
    assert RunConfig(out=tmp_path / "r", hparams_file=out / "best-hparams.json",
                     hparams={"pt_yes": {"strength": "2"}}).hparams == {"pt_yes": {"strength": "2"}}


def test_permuting_every_target_label_leaves_every_objective_unchanged(tmp_path, tiny_llama):
    plain, _ = _sweep(tmp_path, tiny_llama, grid=GRID, objective="accuracy")
    permuted, table = _sweep(tmp_path, tiny_llama, grid=GRID, objective="accuracy", permuted=True, out="other")
    assert table.asked == {"src"}
    assert [(t.objective, t.loss, t.fit_key) for t in plain.trials] == \
        [(t.objective, t.loss, t.fit_key) for t in permuted.trials]
    assert {t.status for t in permuted.trials} == {"cached"}  # the same jobs: nothing read the targets


def test_a_killed_grid_sweep_resumes_without_redoing_finished_trials(tmp_path, tiny_llama, monkeypatch):
    FITS.clear()
    monkeypatch.setenv("GENIES_TEST_KILL_AT", "4")
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path, tiny_llama, grid=GRID)
    monkeypatch.delenv("GENIES_TEST_KILL_AT")
    FITS.clear()
    result, _ = _sweep(tmp_path, tiny_llama, grid=GRID)
    assert FITS == [2.0, 3.0]  # the three finished trials were not fitted again
    assert [t.status for t in result.trials] == ["cached"] * 3 + ["done"] * 2
    assert "interrupted" in (tmp_path / "sweep" / "log.txt").read_text()


def test_an_optuna_search_finds_the_planted_value_and_resumes_its_study(tmp_path, tiny_llama, monkeypatch):
    pytest.importorskip("optuna")
    FITS.clear()
    search = parse_search(["strength=0.1:10:log"])
    monkeypatch.setenv("GENIES_TEST_KILL_AT", "3")
    with pytest.raises(KeyboardInterrupt):
        _sweep(tmp_path, tiny_llama, search=search, trials=14)
    interrupted = FITS[-1]
    monkeypatch.delenv("GENIES_TEST_KILL_AT")
    FITS.clear()
    result, table = _sweep(tmp_path, tiny_llama, search=search, trials=14)
    assert table.asked == {"src"} and (tmp_path / "sweep" / "study.db").is_file()
    assert len(FITS) == 12 and FITS[0] == interrupted  # two finished trials kept; the killed one asked again
    assert len(result.trials) == 14 and result.search == "optuna-tpe"
    best = result.best_trial
    assert best.loss == min(t.loss for t in result.trials)
    assert abs(math.log(best.params["strength"] / math.log(4))) < 0.25
    FITS.clear()
    again, _ = _sweep(tmp_path, tiny_llama, search=search, trials=14)  # a finished study: nothing runs
    assert FITS == [] and again.trials == result.trials
    with pytest.raises(ConfigError, match="holds a different sweep"):
        _sweep(tmp_path, tiny_llama, search=search, trials=14, objective="accuracy")


def test_bradley_terry_loss_and_bad_input_are_one_line():
    assert bradley_terry_loss(np.array([0.5, 1.0])) == pytest.approx(math.log(2) / 2)
    assert math.isfinite(bradley_terry_loss(np.array([0.0])))
    assert parse_grid(["lr=1e-5, 1e-4", "r=8"]) == {"lr": ("1e-5", "1e-4"), "r": ("8",)}
    for bad in (["lr"], ["lr="]):
        with pytest.raises(ConfigError, match="expected PARAM=V1,V2"):
            parse_grid(bad)
    for bad in (["lr=1:x"], ["lr=1"], ["lr=1:2:cube"]):
        with pytest.raises(ConfigError, match="expected PARAM=LOW:HIGH"):
            parse_search(bad)
    with pytest.raises(ConfigError, match="LOW > 0"):
        parse_search(["lr=0:1:log"])
    with pytest.raises(ConfigError, match="either --grid or --search"):
        SweepConfig(intervention="lora", source="s", out=Path("x"))
    with pytest.raises(ConfigError, match="holdout"):
        SweepConfig(intervention="lora", source="s", out=Path("x"), grid={"r": (8,)}, holdout=1.0)


def test_unknown_hyperparameters_and_target_reads_are_refused(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match="steps"):
        _sweep(tmp_path, tiny_llama, grid={"steps": ("1",)})
    from genies.sweeps.sweep import source_loader

    with pytest.raises(ConfigError, match="reads only src's data, not 'tgt'"):
        source_loader("src", lambda n: _source())("tgt")


def test_the_command_line_writes_the_files_and_run_reads_them(tmp_path, tiny_llama):
    from typer.testing import CliRunner

    from genies.cli import _build
    from genies.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "data", size=12)
    common = ["--model", str(tiny_llama.path), "--data-root", str(data), "--cache-dir", str(tmp_path / "cache")]
    app = _build()
    result = CliRunner().invoke(app, ["sweep", "pt_yes", "--source", "synth_arithmetic_easy", "--grid",
                                      "strength=0.5,2", "--objective", "accuracy", "--out", str(tmp_path / "s"),
                                      "--plain", *common], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "accuracy (higher is better) against strength:" in result.output and "next: genies run" in result.output
    assert "trial 1: strength=2.0" in (tmp_path / "s" / "log.txt").read_text()
    best = json.loads((tmp_path / "s" / "best-hparams.json").read_text())
    assert set(best) == {"pt_yes"} and best["pt_yes"]["strength"] in (0.5, 2.0)
    bad = CliRunner().invoke(app, ["sweep", "pt_yes", "--source", "synth_arithmetic_easy", "--out",
                                   str(tmp_path / "t"), *common])
    assert bad.exit_code == 2 and "either --grid or --search" in bad.output
