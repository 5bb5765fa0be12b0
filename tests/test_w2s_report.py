"""`genies report` on `genies w2s` folders: the page's numbers are w2s.json's, its two lists of
wrong weak labels are exactly the planted examples, undefined PGR reads `undefined`, and partial
or broken folders give a page or one error line, never a traceback.

The runs need no language model: the weak supervisor is the planted feature (the preferred
response ends in ' yes') inverted on prompts whose number is a multiple of 4, and the student
("copier") knows the feature too but copies its training label on prompts whose number is a
multiple of 8. So on half B the weak label is wrong exactly on the multiples of 4; the student
follows it on the multiples of 8 and picks the truth on the others (4 mod 8)."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from planted import planted

from genies.data.schema import Distribution, EvalSet
from genies.data.shift import Shift
from genies.interventions.base import Intervention, Scorer
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores
from genies.pipeline.executor import LocalExecutor
from genies.report.w2s_page import build_w2s_report
from genies.weak_to_strong import W2SConfig, w2s
from genies.weak_to_strong.plan import halves
from test_w2s import FlippedOracle  # noqa: F401 - registers flipped_oracle, the weak supervisor here


def _number(prompt: str) -> int:
    return int(re.match(r"Q(\d+)", prompt).group(1))


def _feature(responses) -> np.ndarray:
    return np.array([1.0 if r.endswith(" yes") else -1.0 for r in responses])


@dataclass(frozen=True)
class Memory:
    keys: tuple[str, ...]  # prompt and responses of the copied training examples
    choices: tuple[int, ...]  # the response their training label prefers


@register("w2s_report_copier", family="baseline", description="test: the feature, but copies some training labels")
@dataclass
class Copier(Intervention[Memory]):
    every: int = hparam(8, "copy the training label of prompts whose number is a multiple of this")
    refuse_weak: bool = hparam(False, "fail when trained on weak soft labels (a failed student)")

    uses_run_model = False

    def fit(self, lm, train, ctx) -> Memory:
        if self.refuse_weak and any(ex.confidence < 1 for ex in train.train):
            raise RuntimeError("planted failure: trained on weak labels")
        copied = [ex for ex in train.train if _number(ex.prompt) % self.every == 0]
        return Memory(tuple(_key(ex.prompt, ex.responses) for ex in copied), tuple(ex.preferred for ex in copied))

    def scorer(self, lm, fitted: Memory, ctx) -> Scorer:
        memory = dict(zip(fitted.keys, fitted.choices))

        def score(data: EvalSet) -> Scores:
            out = []
            for q in data.queries:
                choice = memory.get(_key(q.prompt, q.responses))
                out.append(_feature(q.responses) if choice is None else
                           np.array([1.0 if k == choice else -1.0 for k in range(len(q.responses))]))
            return Scores.bradley_terry(out)
        return score


def _key(prompt: str, responses) -> str:
    return "\x1f".join((prompt, *responses))


SHIFT = Shift("src", "tgt", "tgt", "test", "test")
TRAIN = planted(64, 1)


def _run(tmp_path: Path, name: str, *, every: int = 4, **copier) -> Path:
    data = {"src": Distribution.from_examples("src", TRAIN, planted(40, 2)),
            "tgt": Distribution.from_examples("tgt", planted(8, 3), planted(16, 4))}
    config = W2SConfig(out=tmp_path / name, weak_method="flipped_oracle", method="w2s_report_copier",
                       max_train=64, max_eval=40, shifts=(SHIFT,), cache_dir=tmp_path / "jobs", target_tuned="none",
                       hparams={"flipped_oracle": {"every": every}, "w2s_report_copier": copier})
    w2s(config, distributions=data, executor=LocalExecutor(plain=True))
    return tmp_path / name


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = _run(tmp_path_factory.mktemp("w2s"), "run")
    return folder, build_w2s_report(folder, folder / "report.html").read_text(encoding="utf-8")


def _page_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="genies-data">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def _cells(page: str, table: str) -> list[list[str]]:
    """Each row's cells of table `table` as their data-v (numbers) or text."""
    body = re.search(rf'<table[^>]*id="{table}".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<td([^>]*)>(.*?)</td>", tr, re.S)
        rows.append([(m.group(1) if (m := re.search(r'data-v="([^"]*)"', attrs)) else
                      html.unescape(re.sub(r"<[^>]+>", "", text))) for attrs, text in cells])
    return rows


def _value(cell: str) -> float | None:
    return None if cell == "" else float(cell)


def test_the_pages_numbers_are_w2s_json(planted_run) -> None:
    folder, page = planted_run
    doc = json.loads((folder / "w2s.json").read_text())
    assert {k: v for k, v in doc.items() if k != "format"} == _page_data(page)["results"]
    (src,) = doc["sources"]
    (row,) = _cells(page, "w2s-sources")
    (student,) = src["students"]
    assert row[:2] == ["src", "xent"]
    assert [_value(c) for c in row[2:]] == [
        src["weak"]["value"], src["weak_label_accuracy"], student["accuracy"]["value"], src["ceiling"]["value"],
        student["pgr"]["value"], student["pgr"]["undefined_share"], src["test_pairs"], src["train_examples"]]
    assert src["weak"]["value"] == 0.75 and src["ceiling"]["value"] == 1.0  # prompts 0, 4, ..., 36 of 40 flipped
    (tgt,) = _cells(page, "w2s-targets")
    (t,) = doc["targets"]
    assert tgt[:3] == ["src", "tgt", "xent"]
    assert [_value(c) for c in tgt[3:5]] == [t["students"][0]["accuracy"]["value"], t["ceiling"]["value"]]
    assert f"{student['pgr']['value']:.2f}" in page and "w2s_accuracy.png and .svg" in page
    assert (folder / "report-figures" / "w2s_accuracy.png").is_file()
    assert set(_page_data(page)) == {"mode", "dir", "results"}  # the examples are in the HTML only, once
    assert [_value(c) for c in tgt[6:]] == [None] * 4 and "computed no DE (--target-tuned none)" in page


def test_the_targets_table_shows_de_and_its_references(planted_run, tmp_path) -> None:
    import dataclasses
    import shutil

    from genies.weak_to_strong import De, DeReference, load_examples, load_results
    from genies.weak_to_strong.files import write_results
    from genies.weak_to_strong.metrics import Accuracy

    folder, _ = planted_run
    copy = tmp_path / "de"
    shutil.copytree(folder, copy)
    results = load_results(copy)
    (t,) = results.targets
    reference = DeReference("tgt", Accuracy(0.5, 0.3, 0.7), "zero_shot", Accuracy(0.8, 0.6, 0.9), "lora")
    t = dataclasses.replace(t, students=(dataclasses.replace(t.students[0], de=De(0.25, 0.1, 0.4)),),
                            ceiling_de=De(0.625, 0.5, 0.7), reference=reference)
    results = dataclasses.replace(results, targets=(t,), run=dataclasses.replace(results.run, target_tuned="default"))
    write_results(copy, results, load_examples(copy))
    page = build_w2s_report(copy, copy / "report.html").read_text(encoding="utf-8")
    (row,) = _cells(page, "w2s-targets")
    assert [_value(c) for c in row[6:]] == [0.25, 0.625, 0.5, 0.8]
    assert "[0.10, 0.40]" in page and "candidates of --target-tuned default" in page


def test_the_two_lists_are_exactly_the_planted_examples(planted_run) -> None:
    _, page = planted_run
    half_b = halves(0)[1].select(TRAIN, "src/train")
    wrong = [i for i, ex in enumerate(half_b) if _number(ex.prompt) % 4 == 0]
    overruled = [i for i in wrong if _number(half_b[i].prompt) % 8]
    followed = [i for i in wrong if _number(half_b[i].prompt) % 8 == 0]
    assert overruled and followed  # the planted case has both
    for list_id, expected in (("overruled-0-xent", overruled), ("followed-0-xent", followed)):
        block = re.search(rf'<details class="w2s-list" id="{list_id}" data-count="(\d+)".*?</details>', page, re.S)
        shown = [int(i) for i in re.findall(r'<div class="ex [a-z]+" data-index="(\d+)"', block.group(0))]
        assert shown == expected and int(block.group(1)) == len(expected), list_id
    first = half_b[overruled[0]]
    assert html.escape(first.prompt) in page and html.escape(first.responses[0]) in page
    assert f"{len(wrong)} of the {len(half_b)} half-B examples have a wrong weak label" in page


def test_undefined_pgr_reads_undefined(tmp_path) -> None:
    folder = _run(tmp_path, "perfect", every=0)  # a perfect weak supervisor: ceiling <= weak
    page = build_w2s_report(folder, folder / "report.html").read_text(encoding="utf-8")
    (row,) = _cells(page, "w2s-sources")
    assert row[6] == "" and '<td data-v="" class="undefined">undefined</td>' in page
    assert "so PGR is undefined" in page
    assert json.loads((folder / "w2s.json").read_text())["sources"][0]["students"][0]["pgr"]["value"] is None
    assert page.count('<div class="empty">none</div>') == 2  # no wrong weak label in either list


def test_a_run_whose_students_failed_still_has_its_page(tmp_path) -> None:
    folder = _run(tmp_path, "failed", refuse_weak=True)  # the student fails, the ceiling trains
    doc = json.loads((folder / "w2s.json").read_text())
    assert doc["failed"] and doc["sources"][0]["students"] == [] and doc["sources"][0]["ceiling"] is not None
    page = build_w2s_report(folder, folder / "report.html").read_text(encoding="utf-8")
    (row,) = _cells(page, "w2s-sources")
    assert row[1] == "-" and row[4] == "" and row[6] == "" and _value(row[5]) == 1.0
    assert '<td data-v="" class="undefined">-</td>' in page  # no PGR without a student: '-', not 'undefined'
    assert 'id="failed-jobs"' in page and "planted failure" in page
    assert "no predictions on half B" in page
    assert "src: every student&#x27;s jobs failed" in page
    (folder / "w2s-examples.json").unlink()  # a run stopped before its end
    assert "wrote no w2s-examples.json" in build_w2s_report(folder, folder / "r.html").read_text(encoding="utf-8")


def test_the_command_dispatches_and_a_broken_folder_is_one_line(planted_run, tmp_path) -> None:
    from typer.testing import CliRunner

    from genies.cli import _build

    folder, _ = planted_run
    done = CliRunner().invoke(_build(), ["report", str(folder), "--out", str(tmp_path / "page.html")])
    assert done.exit_code == 0, done.output
    assert "genies w2s report" in (tmp_path / "page.html").read_text(encoding="utf-8")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "w2s.json").write_text('{"format": 2, "run": ')
    failed = CliRunner().invoke(_build(), ["report", str(broken)])
    assert failed.exit_code == 2 and "w2s.json: not valid JSON" in failed.output
    assert len(failed.output.strip().splitlines()) == 1 and "Traceback" not in failed.output
    (broken / "w2s.json").write_text('{"format": 2, "run": {}, "sources": [], "targets": [], "failed": []}')
    failed = CliRunner().invoke(_build(), ["report", str(broken)])
    assert failed.exit_code == 2 and "w2s.json: run lacks weak" in failed.output
    mixed = CliRunner().invoke(_build(), ["report", str(folder), str(broken)])
    assert mixed.exit_code == 2 and "its page shows it alone" in mixed.output


def test_an_examples_file_naming_a_student_twice_is_one_line(planted_run, tmp_path) -> None:
    import shutil

    from genies.errors import FileError
    from genies.weak_to_strong import load_examples

    folder, _ = planted_run
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    path = copy / "w2s-examples.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    example = doc["sources"][0]["wrong_weak_labels"][0]
    example["students"] = example["students"] * 2
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(FileError, match=r"sources\[0\]\.wrong_weak_labels\[0\]: student \w+ twice$"):
        load_examples(copy)
