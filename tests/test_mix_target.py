"""`genies run --mix-target`: the target-data ablation's cells, their training data, the
`target_mix` column, and that fraction 0 is the ordinary run's cached jobs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

import genies
from genies.data.schema import Distribution, EvalSet, Example
from genies.data.shift import Shift
from genies.errors import ConfigError
from genies.interventions import FitContext, Intervention, Scorer, Scores, Unfitted, hparam, register
from genies.pipeline.config import RunConfig, parse_fractions
from genies.pipeline.executor import LocalExecutor
from genies.pipeline.results import load_run

SEEN: dict[str, list[tuple[str, ...]]] = {}  # method name -> the training prompts of each fit


@dataclass(frozen=True)
class Share:
    target: float  # the fraction of training examples that came from the target


@register("pt_mix_a", family="fine-tuning", description="test stand-in: prefers the first response a share of the time")
@dataclass
class FirstByShare(Intervention[Share]):
    """The first response (the preferred one in this data) wins with p < 0.5 when fewer than 5 %
    of the training examples came from the target, p > 0.5 above: target accuracy goes from 0
    to 1 with the mix, as the ablation expects of a real method."""

    scale: float = hparam(1.0, "unused; distinguishes the two stand-ins' keys")

    def fit(self, lm, train: Distribution, ctx: FitContext) -> Share:
        prompts = tuple(ex.prompt for ex in train.train)
        SEEN.setdefault(self.name, []).append(prompts)
        return Share(sum(p.startswith("tgt") for p in prompts) / len(prompts))

    def scorer(self, lm, fitted: Share, ctx: FitContext) -> Scorer:
        def score(data: EvalSet) -> Scores:
            first = np.array([k == 0 for q in data.queries for k in range(len(q.responses))], dtype=float)
            return Scores.pairwise([len(q.responses) for q in data.queries],
                                   lambda a, b: 0.5 + (first[a] - first[b]) * 0.49 * (2 * fitted.target - 0.1))
        return score


@register("pt_mix_b", family="fine-tuning", description="test stand-in: a second copy of pt_mix_a")
@dataclass
class FirstByShare2(FirstByShare):
    pass


@register("pt_mix_zero", family="baseline", description="test stand-in: indifferent")
@dataclass
class Indifferent(Intervention[Unfitted]):
    needs_training_data = False

    def fit(self, lm, train, ctx) -> Unfitted:
        return Unfitted()

    def scorer(self, lm, fitted, ctx) -> Scorer:
        return lambda data: Scores.pairwise([len(q.responses) for q in data.queries],
                                            lambda a, b: np.full(len(a), 0.5))


def _examples(tag: str, n: int) -> list[Example]:
    return [Example(f"{tag} {i}", (f"{tag} good {i}", f"{tag} bad {i}"), 0) for i in range(n)]


DISTS = {name: Distribution.from_examples(name, _examples(name, 20), _examples(f"{name}-test", 8))
         for name in ("src", "tgt")}
SHIFTS = [Shift("src", "tgt", "tgt", "spurious_cues", "probing")]


def _run(tmp, interventions=("pt_mix_a",), **fields):
    fields.setdefault("target_tuned_interventions", ("pt_mix_a",))
    return RunConfig(out=tmp / "run", interventions=interventions, shifts=SHIFTS, cache_dir=tmp / "cache",
                     baseline="pt_mix_zero", seed=3, **fields)


def statuses(run_dir) -> dict[str, str]:
    return {j["label"]: j["status"] for j in json.loads((run_dir / "manifest.json").read_text())["jobs"]}


def test_fraction_zero_is_the_ordinary_run_and_mixing_adds_only_its_own_jobs(tmp_path, tiny_llama):
    def run(**fields):
        config = _run(tmp_path, model=tiny_llama.name, **fields)
        return genies.run(config, lm=tiny_llama, distributions=DISTS, executor=LocalExecutor(plain=True))

    plain = run()
    assert [r.target_mix for r in plain.rows] == [0.0]
    run(mix_target=(0.0,))  # fraction 0 is the ordinary cell: every job is cached
    assert set(statuses(tmp_path / "run").values()) == {"cached"}
    mixed = run(mix_target="0.25,0.5")
    jobs = statuses(tmp_path / "run")
    assert {label for label, s in jobs.items() if s == "done"} == {
        f"{kind} pt_mix_a{on}" for kind, on in [("fit", " on src +25% tgt"), ("fit", " on src +50% tgt")]} | {
        f"predict pt_mix_a (trained on src +{p}% tgt) on {d}/test" for p in (25, 50) for d in ("src", "tgt")}
    assert [r.target_mix for r in mixed.rows] == [0.0, 0.25, 0.5]
    # the ordinary row is unchanged; target accuracy follows the planted share of target examples
    assert mixed.to_csv().splitlines()[:2] == plain.to_csv().splitlines()  # NaN-safe row equality
    assert [r.generalization_accuracy for r in mixed.rows] == [0.0, 1.0, 1.0]
    assert len({r.baseline_accuracy for r in mixed.rows}) == 1
    assert len({r.target_tuned_capability for r in mixed.rows}) == 1
    # aggregates are over the ordinary rows only; results.json and .csv carry the column
    assert mixed.aggregate("pt_mix_a").n_shifts == 1
    assert mixed.aggregate("pt_mix_a").mean_de == pytest.approx(plain.aggregate("pt_mix_a").mean_de)
    assert load_run(tmp_path / "run").to_csv() == mixed.to_csv()
    header = (tmp_path / "run" / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-1] == "target_mix"
    # the report draws the ablation in its own section and keeps mixing rows out of the others
    from genies.report.build import build_report
    from genies.report.plots import target_mix
    from genies.report.load import load_runs

    page = build_report([tmp_path / "run"], tmp_path / "report.html").read_text()
    assert 'id="target-mix"' in page and (tmp_path / "report-figures" / "target_mix.svg").is_file()
    # the page's payload holds the ordinary row only
    assert page.count("src +25% tgt") == 0
    [ax, *_] = target_mix(load_runs([tmp_path / "run"])).axes
    from typer.testing import CliRunner

    from genies.cli import _build

    shown = CliRunner().invoke(_build(), ["results", "show", str(tmp_path / "run")], env={"COLUMNS": "200"}).output
    assert "src -> tgt +25% target" in shown and "src -> tgt +50% target" in shown
    assert [list(line.get_xdata()) for line in ax.lines][0] == [0.0, 0.25, 0.5]
    assert ax.get_title(loc="left") == "src → tgt"
    with pytest.MonkeyPatch.context() as patch:  # names too long for one line break after the arrow
        patch.setattr("genies.report.plots.MIX_TITLE_CHARS", 5)
        assert target_mix(load_runs([tmp_path / "run"])).axes[0].get_title(loc="left") == "src →\ntgt"


def test_mixing_uses_round_f_n_seeded_target_examples_the_same_for_every_intervention(tmp_path, tiny_llama):
    SEEN.clear()
    config = _run(tmp_path, interventions=("pt_mix_a", "pt_mix_b"), model=tiny_llama.name,
                  mix_target=(0.05, 0.35), target_tuned="none", target_tuned_interventions=())
    genies.run(config, lm=tiny_llama, distributions=DISTS, executor=LocalExecutor(plain=True))
    for fits in (SEEN["pt_mix_a"], SEEN["pt_mix_b"]):
        counts = sorted(sum(p.startswith("tgt") for p in prompts) for prompts in fits)
        assert counts == [0, round(0.05 * 20), round(0.35 * 20)] == [0, 1, 7]
        assert all(len(prompts) == 20 for prompts in fits)  # the size stays n
    assert sorted(SEEN["pt_mix_a"]) == sorted(SEEN["pt_mix_b"])  # the same mixed sets for both


def test_mix_target_parsing_and_older_results_read_back(tmp_path):
    assert parse_fractions(["0.05,0.35", "0.01", "0.05"]) == (0.01, 0.05, 0.35)
    assert parse_fractions("0") == ()
    for bad, message in (("x", "not a fraction"), ("1.5", r"not a fraction in \[0, 1\]")):
        with pytest.raises(ConfigError, match=message):
            RunConfig(out=tmp_path, mix_target=bad)


def test_run_takes_mix_target_and_hparams_on_the_command_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from genies.cli import _build
    from genies.pipeline import api

    seen = []
    monkeypatch.setattr(api, "run", lambda config, **_: seen.append(config) or (_ for _ in ()).throw(SystemExit(0)))
    (tmp_path / "h.json").write_text('{"lora": {"learning_rate": 0.0001, "steps": 3}}')
    result = CliRunner().invoke(_build(), ["run", "-i", "lora", "--mix-target", "0.05,0.35", "--mix-target", "0.1",
                                           "--hparams", str(tmp_path / "h.json"), "--set", "lora.steps=5",
                                           "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    [config] = seen
    assert config.mix_target == (0.05, 0.1, 0.35)
    assert config.hparams == {"lora": {"learning_rate": 0.0001, "steps": "5"}}  # --set wins over the file
    bad = CliRunner().invoke(_build(), ["run", "-i", "lora", "--hparams", str(tmp_path / "none.json"),
                                        "--out", str(tmp_path / "run")])
    assert bad.exit_code == 2 and "hyperparameter file not found" in bad.output
