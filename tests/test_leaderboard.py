"""`genies report` on `genies judge` folders: one judge's page, the leaderboard of several, their
numbers against judge.json, the paired beyond-noise comparisons on planted judges, odd input, and
the one-line refusal to mix run and judge folders."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from judge_models import ascii_examples, longer_is_better_rm, reward_model, write_distribution  # tests/judge_models.py
from judge_runs import write_judge  # tests/judge_runs.py
from typer.testing import CliRunner

from genies.cli import _build
from genies.data.schema import Example
from genies.errors import ConfigError
from genies.judging import JudgeFileError, read_results, run_judge, write_results
from genies.pipeline.run_dir import plain_json
from genies.report.judge_page import build_judge_report, build_leaderboard
from genies.report.leaderboard import Pairing, compare, coverage_warning, load_judges, ranked
from genies.report.testing import write_run_dir
from genies.rounding import number

N_PROMPTS = 40  # per distribution: enough for a 0.5 accuracy gap to be far beyond noise


def _longer_preferred(examples: list[Example]) -> list[Example]:
    return [Example(e.prompt, e.responses, max(range(len(e.responses)), key=lambda i: len(e.responses[i])))
            for e in examples]


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three real `genies judge` folders on two toy distributions where the longer response is
    always preferred: the planted longer-is-better reward model twice (identical judges, `a` and
    `b`) and a random reward model (`c`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("judged")
    data = root / "data"
    write_distribution(data / "alpaca_easy", _longer_preferred(ascii_examples(N_PROMPTS, seed=1, responses=2)))
    write_distribution(data / "alpaca_hard", _longer_preferred(ascii_examples(N_PROMPTS, seed=2, responses=3)))
    longer, random_rm = longer_is_better_rm(root / "longer"), reward_model(root / "random", seed=3)
    folders = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENIES_HOME", str(root / "home"))
        for name, model in (("a", longer), ("b", longer), ("c", random_rm)):
            results = run_judge(f"rm:{model}", ["alpaca_easy", "alpaca_hard"], data_root=data, cache_dir=root / "jobs")
            write_results(results, root / name)
            folders[name] = root / name
    torch.set_num_threads(threads)
    return folders


def _invoke(*args: object):
    return CliRunner().invoke(_build(), [str(a) for a in args])


def _data(page: Path) -> dict:
    """The page's embedded JSON (what it shows, unrounded)."""
    found = re.search(r'<script type="application/json" id="genies-data">(.*?)</script>', page.read_text())
    assert found, "no genies-data block"
    return json.loads(found.group(1))


def _rows(page: Path, table_id: str) -> list[list[str]]:
    """The text of each body cell of one table, row by row (tags stripped, as a reader sees it)."""
    table = re.search(rf'<table[^>]*id="{table_id}".*?<tbody>(.*?)</tbody>', page.read_text(), re.S)
    assert table, table_id
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)]


def _shown(x: float, low: float, high: float) -> str:
    return f"{number(x)} [{number(low)}, {number(high)}]"


def test_the_planted_judges_score_as_planted(judged) -> None:
    for name in ("a", "b"):
        assert [d["accuracy"] for d in json.loads((judged[name] / "judge.json").read_text())["distributions"]] == [1, 1]
    random_accuracy = json.loads((judged["c"] / "judge.json").read_text())["scopes"][0]["mean_accuracy"]
    assert random_accuracy < 0.7  # so "a beats c" is a real gap to detect


def test_judge_outcomes_agree_with_judge_json_and_read_back(judged) -> None:
    results = read_results(judged["c"])
    assert plain_json(results.to_json()) == json.loads((judged["c"] / "judge.json").read_text())
    for d, o in zip(results.distributions, results.outcomes, strict=True):
        assert o.distribution == d.distribution and sum(o.pairs) == d.pairs and len(o.pairs) == d.prompts
        assert sum(o.hits) / sum(o.pairs) == d.accuracy  # exactly: the same coin settles ties


def test_one_judge_page_shows_judge_json(judged) -> None:
    result = _invoke("report", judged["c"])
    assert result.exit_code == 0, result.output
    page = judged["c"] / "report.html"  # the default, as for a run
    doc = json.loads((judged["c"] / "judge.json").read_text())
    data = _data(page)
    assert data["mode"] == "judge" and data["judge"] == doc
    rows = _rows(page, "distributions-table")
    assert [r[0] for r in rows] == [d["distribution"] for d in doc["distributions"]]
    for row, d in zip(rows, doc["distributions"], strict=True):
        assert row[1] == _shown(d["accuracy"], d["ci_low"], d["ci_high"])
        assert row[2:6] == [str(d["pairs"]), str(d["prompts"]), number(d["length_longer_accuracy"]),
                            number(d["length_shorter_accuracy"])]
    scope_rows = _rows(page, "scopes-table")
    assert [(r[0], r[1]) for r in scope_rows] == [(s["scope"], _shown(s["mean_accuracy"], s["ci_low"], s["ci_high"]))
                                                  for s in doc["scopes"]]
    (shift,) = _rows(page, "shifts-table")
    assert shift[0] == "alpaca_easy → alpaca_hard" and float(shift[5]) == pytest.approx(doc["shifts"][0]["change"],
                                                                                        abs=0.005)
    assert (judged["c"] / "report-figures" / "accuracy_by_distribution.svg").is_file()


def test_leaderboard_ranks_judges_and_marks_what_is_beyond_noise(judged, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke("report", judged["c"], judged["a"], judged["b"])
    assert result.exit_code == 0, result.output
    page = tmp_path / "leaderboard.html"  # several judge folders: the current folder, not one of theirs
    assert (tmp_path / "leaderboard-figures" / "leaderboard.png").is_file()
    docs = {k: json.loads((v / "judge.json").read_text()) for k, v in judged.items()}
    data = _data(page)
    assert [j["label"] for j in data["judges"]] == ["rm:longer (a)", "rm:longer (b)", "rm:random"]  # best first
    for j, key in zip(data["judges"], "abc", strict=True):
        assert j["accuracy"] == docs[key]["scopes"][0]["mean_accuracy"] and j["scopes"] == docs[key]["scopes"]
    twin, other = data["comparisons"]
    assert (twin["b"], twin["difference"], twin["ci_low"], twin["ci_high"]) == ("rm:longer (b)", 0, 0, 0)
    assert twin["beyond_noise"] is False and twin["pairing"] == "prompts" and twin["prompts"] == 2 * N_PROMPTS
    by_dist = [a["accuracy"] - c["accuracy"] for a, c in zip(docs["a"]["distributions"], docs["c"]["distributions"],
                                                                strict=True)]
    assert other["b"] == "rm:random" and other["difference"] == pytest.approx(np.mean(by_dist))
    assert other["beyond_noise"] is True and 0 < other["ci_low"] <= other["difference"] <= other["ci_high"]

    rows = _rows(page, "leaderboard-table")
    assert [r[1] for r in rows] == ["rm:longer (a)", "rm:longer (b)", "rm:random"] and [r[0] for r in rows] == list("123")
    overall = docs["c"]["scopes"][0]
    assert rows[2][2] == _shown(overall["mean_accuracy"], overall["ci_low"], overall["ci_high"])
    assert "beyond noise" in rows[2][4] and "beyond noise" not in rows[1][4] and rows[0][4] == "top"
    assert rows[1][4] == "0.00 [0.00, 0.00]"
    dist_rows = _rows(page, "distributions-table")
    assert dist_rows[0][3] == _shown(*(docs["c"]["distributions"][0][k] for k in ("accuracy", "ci_low", "ci_high")))


def test_paired_comparison_known_answers(tmp_path) -> None:
    """Identical judges differ by exactly 0 with a zero-width interval (an unpaired bootstrap would
    not); a judge right on every prompt against one right on every other prompt leads by 0.5."""
    alternate = [k % 2 for k in range(60)]
    a = write_judge(tmp_path / "a", "rm:a", {"code": [1] * 60})
    b = write_judge(tmp_path / "b", "rm:b", {"code": alternate})
    same = write_judge(tmp_path / "same", "rm:same", {"code": alternate})
    ja, jb, js = load_judges([a, b, same])
    twin = compare(jb, js, seed=0)
    assert (twin.difference, twin.ci_low, twin.ci_high, twin.beyond_noise) == (0, 0, 0, False)
    lead = compare(ja, jb, seed=0)
    assert lead.pairing is Pairing.PROMPTS and lead.difference == 0.5 and lead.prompts == 60
    assert lead.beyond_noise and 0.3 < lead.ci_low < 0.5 < lead.ci_high < 0.7
    # mean over distributions, each distribution's difference weighted alike
    two = write_judge(tmp_path / "two", "rm:two", {"code": [1] * 60, "alpaca_easy": [1] * 10})
    half = write_judge(tmp_path / "half", "rm:half", {"code": alternate, "alpaca_easy": [1] * 10})
    assert compare(*load_judges([two, half]), seed=0).difference == pytest.approx((0.5 + 0) / 2)


def test_comparisons_without_shared_examples_or_outcomes_say_so(tmp_path) -> None:
    a = write_judge(tmp_path / "a", "rm:a", {"code": [1] * 20, "alpaca_easy": [1] * 20})
    other = write_judge(tmp_path / "o", "rm:o", {"code": [0] * 20, "alpaca_easy": [0] * 20},
                        examples={"code": "another", "alpaca_easy": "subset"})
    ja, jo = load_judges([a, other])
    none = compare(ja, jo, seed=0)
    assert none.pairing is Pairing.NONE and not none.beyond_noise and math.isnan(none.difference)
    assert "judged on different examples" in (coverage_warning([ja, jo]) or "")
    old = write_judge(tmp_path / "old", "rm:old", {"code": [0] * 20, "alpaca_easy": [0] * 20}, with_outcomes=False)
    fallback = compare(ja, load_judges([old])[0], seed=0)
    assert fallback.pairing is Pairing.DISTRIBUTIONS and fallback.difference == 1 and fallback.distributions == 2
    single = write_judge(tmp_path / "single", "rm:single", {"code": [0] * 20}, with_outcomes=False)
    one = compare(ja, load_judges([single])[0], seed=0)
    assert one.difference == 1 and math.isnan(one.ci_low) and not one.beyond_noise  # one distribution: no interval
    page = build_leaderboard([a, other, old, single], tmp_path / "lb.html")
    text = page.read_text()
    assert "per-distribution accuracies only" in text and "not compared" in text and 'id="coverage"' in text


def test_odd_judge_folders_still_make_pages(tmp_path) -> None:
    """Failed distributions, one distribution, NaN intervals, every distribution failed."""
    odd = write_judge(tmp_path / "odd", "judge:odd", {"code": [1, 0, 1]}, failed=["alpaca_hard"], nan_intervals=True,
                      bias=0.12)
    empty = write_judge(tmp_path / "empty", "rm:empty", {}, failed=["code", "alpaca_easy"])
    page = build_judge_report(odd, tmp_path / "odd.html")
    text = page.read_text()
    assert 'id="failed-distributions"' in text and "alpaca_hard/test.json: file not found" in text
    assert _rows(page, "distributions-table")[0][1] == number(2 / 3)  # no interval shown for NaN bounds
    assert "Position bias over every presentation: +0.12" in text
    assert "No distribution could be judged" in build_judge_report(empty, tmp_path / "empty.html").read_text()
    board = build_leaderboard([empty, odd], tmp_path / "lb.html")
    data = _data(board)
    assert [j["label"] for j in data["judges"]] == ["judge:odd", "rm:empty"] and data["judges"][1]["accuracy"] is None
    assert data["comparisons"][0]["pairing"] == "none"
    assert _rows(board, "leaderboard-table")[1][2] == "-"


def test_mixed_or_bad_folders_are_one_line(judged, tmp_path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=2, interventions=("zero_shot", "lora"), n_examples=4)
    mixed = _invoke("report", judged["a"], run)
    assert mixed.exit_code == 2 and len(mixed.output.strip().splitlines()) == 1
    assert "report each kind on its own" in mixed.output
    with pytest.raises(ConfigError):
        from genies.report.leaderboard import judge_folders

        judge_folders([run, judged["a"]])
    missing = _invoke("report", judged["a"], tmp_path / "nowhere")
    assert missing.exit_code == 2 and "folder not found" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "judge.json").write_text('{"schema": 1, "judge": 3}')
    broken = _invoke("report", tmp_path / "broken")
    assert broken.exit_code == 2 and len(broken.output.strip().splitlines()) == 1 and "judge.json" in broken.output
    with pytest.raises(JudgeFileError, match="schema 7 is not supported"):
        (tmp_path / "broken" / "judge.json").write_text('{"schema": 7}')
        read_results(tmp_path / "broken")
    refused = _invoke("report", judged["a"], "--reference", tmp_path)
    assert refused.exit_code == 2 and "a judge folder has none" in refused.output
    ordinary = _invoke("report", run)  # a run alone: as before
    assert ordinary.exit_code == 0 and (run / "report.html").is_file()


def test_ranked_puts_judges_without_any_result_last(tmp_path) -> None:
    folders = [write_judge(tmp_path / k, f"rm:{k}", hits) for k, hits in
               (("none", {}), ("low", {"code": [0, 1, 0, 0]}), ("high", {"code": [1, 1, 0, 1]}))]
    assert [j.label for j in ranked(load_judges(folders))] == ["rm:high", "rm:low", "rm:none"]
