"""The report: run-dir reading, embedded data equal to the files, offline HTML, figures, CLI, serve."""

from __future__ import annotations

import json
import re
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from genies.data.schema import Distribution, Example
from genies.data.shift import Shift
from genies.report import build_browse, build_report
from genies.report.build import figures_dir
from genies.errors import GeniesError
from genies.pipeline.run_dir import RunDirError, load_run
from genies.report.load import ReportError, load_runs
from genies.report.plots import reliability_bins
from genies.report.published import compare_with_published
from genies.report.reference import load_reference
from genies.report.serve import make_server, served_files
from genies.report.testing import write_run_dir

INTERVENTIONS = ("zero_shot", "lora", "mms")
# Namespaces matplotlib writes into SVG: identifiers, never fetched.
SVG_NAMESPACES = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://purl.org/dc/elements/1.1/",
    "http://creativecommons.org/ns#",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_dir(
        tmp_path_factory.mktemp("run") / "run", n_shifts=6, interventions=INTERVENTIONS, n_examples=12, failed=1
    )


@pytest.fixture(scope="module")
def report(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report([run_dir], tmp_path_factory.mktemp("out") / "report.html")


def page_data(path: Path) -> tuple[dict, dict[str, object]]:
    """The page's main JSON and its lazily parsed blocks, read back the way the browser does."""
    text = path.read_text(encoding="utf-8")
    blocks = dict(re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', text, re.S))
    return json.loads(blocks.pop("genies-data")), {k: json.loads(v) for k, v in blocks.items()}


def test_reliability_bins_known_answer() -> None:
    # confidences 0.95, 0.95 (right), 0.85 (p=0.15: wrong), 0.65 (right), 0.5 (tie: half right)
    bins = reliability_bins([0.95, 0.95, 0.15, 0.65, 0.5], n_bins=5)
    assert bins.count.tolist() == [1, 1, 1, 2]
    np.testing.assert_allclose(bins.confidence, [0.5, 0.65, 0.85, 0.95])
    np.testing.assert_allclose(bins.accuracy, [0.5, 1.0, 0.0, 1.0])
    assert bins.ece == pytest.approx((0 + 0.35 + 0.85 + 2 * 0.05) / 5)


def test_the_diagrams_ece_is_the_tables() -> None:
    """Whatever the diagram's bins, its legend shows the results table's ECE: 0.71 (right) and
    0.21 (wrong, confidence 0.79) share a table bin (|0.5 - 0.75| = 0.25) but not a diagram bin."""
    from genies.metrics import expected_calibration_error

    bins = reliability_bins([0.71, 0.21], n_bins=10)
    assert bins.count.tolist() == [1, 1]
    assert bins.ece == pytest.approx(0.25) == expected_calibration_error([0.71, 0.21])


def test_reliability_bins_ignore_missing_predictions() -> None:
    bins = reliability_bins([np.nan, 0.9, 0.1])
    assert bins.count.sum() == 2 and bins.accuracy.tolist() == [0.5]


def test_page_is_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    assert not re.search(r"@import|@font-face|url\((?!#)", text, re.I)  # url(#id): a local SVG reference
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) <= SVG_NAMESPACES
    assert "default-src 'none'" in text  # the browser itself refuses any network fetch


def test_embedded_rows_and_probabilities_equal_the_files(report: Path, run_dir: Path) -> None:
    data, blobs = page_data(report)
    results = json.loads((run_dir / "results.json").read_text())
    assert len(data["rows"]) == len(results["rows"]) == 6 * len(INTERVENTIONS)
    for row, original in zip(data["rows"], results["rows"], strict=True):
        assert row["de"] == pytest.approx(original["differential_elicitation"])
        assert (row["source"], row["target"], row["intervention"]) == (
            original["source"],
            original["target"],
            original["intervention"],
        )
        evaluation = json.loads((run_dir / original["target_evaluation"]).read_text())
        block = blobs[f"ev-{row['ev_t']}"]
        assert block["p"] == pytest.approx([p["p_preferred"] for p in evaluation["pairs"]], abs=5e-5)
        assert "e" not in block  # canonical pair order: indices left out
        examples = blobs[f"ex-{data['evals'][row['ev_t']]['d']}"]
        assert examples == [[e["prompt"], e["responses"], e["preferred"]] for e in evaluation["examples"]]


def test_examples_are_embedded_once_per_distribution(report: Path, run_dir: Path) -> None:
    data, blobs = page_data(report)
    distributions = {json.loads(f.read_text())["distribution"] for f in (run_dir / "evaluations").glob("*.json")}
    assert len([k for k in blobs if k.startswith("ex-")]) == len(distributions)


def test_figures_written_as_png_and_svg(report: Path) -> None:
    folder = figures_dir(report)
    for name in ("de_by_intervention", "de_heatmap", "reliability"):
        assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (folder / f"{name}.svg").read_text()


def test_failed_jobs_are_shown(report: Path) -> None:
    assert 'id="failed-jobs"' in report.read_text() and "synthetic failure" in report.read_text()


def test_non_canonical_pairs_keep_their_indices(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=4)
    target = json.loads((run / "results.json").read_text())["rows"][0]["target_evaluation"]
    doc = json.loads((run / target).read_text())
    doc["pairs"].reverse()
    (run / target).write_text(json.dumps(doc))
    data, blobs = page_data(build_report([run], tmp_path / "r.html"))
    block = blobs[f"ev-{data['rows'][0]['ev_t']}"]
    assert block["e"] == [p["example_index"] for p in doc["pairs"]]
    assert block["r"] == [p["dispreferred_index"] for p in doc["pairs"]]


def test_text_cannot_break_out_of_the_data_block(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=2)
    hostile = "</script><script>alert(1)</script> __JS__ <!-- x"
    for f in (run / "evaluations").glob("*.json"):
        doc = json.loads(f.read_text())
        doc["examples"][0]["prompt"] = hostile
        f.write_text(json.dumps(doc))
    out = build_report([run], tmp_path / "r.html")
    assert "<script>alert(1)" not in out.read_text()
    _, blobs = page_data(out)
    assert all(b[0][0] == hostile for k, b in blobs.items() if k.startswith("ex-"))


def test_several_runs_get_distinct_labels(tmp_path: Path) -> None:
    a = write_run_dir(tmp_path / "a", n_shifts=2, interventions=("lora",), n_examples=3)
    b = write_run_dir(tmp_path / "b", n_shifts=2, interventions=("lora",), n_examples=3, seed=1)
    runs = load_runs([a, b])
    assert [r.label for r in runs] == ["tiny-random · test (a)", "tiny-random · test (b)"]
    data, _ = page_data(build_report([a, b], tmp_path / "r.html"))
    assert {row["run"] for row in data["rows"]} == {0, 1}
    assert (figures_dir(tmp_path / "r.html") / "de_heatmap_2.svg").exists()
    assert 'id="shift-mismatch"' not in (tmp_path / "r.html").read_text()  # the same shifts: no warning
    c = write_run_dir(tmp_path / "c", n_shifts=3, interventions=("lora",), n_examples=3)
    html_text = build_report([a, c], tmp_path / "rc.html").read_text()
    assert 'id="shift-mismatch"' in html_text and "different shifts" in html_text
    assert "(a): 2, tiny-random · test (c): 3; 2 shared" in html_text


def test_bad_run_dirs_name_the_file_and_row(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="run directory not found"):
        load_run(tmp_path / "missing")
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=2)
    doc = json.loads((run / "results.json").read_text())
    del doc["rows"][0]["target"]
    (run / "results.json").write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match=r"results\.json: row 0 lacks target"):
        load_run(run)
    doc["rows"][0]["target"] = 3
    (run / "results.json").write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match=r"row 0: target should be a str, not 3"):
        load_runs([run])


def test_bad_pair_index_names_the_evaluation(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=2)
    target = json.loads((run / "results.json").read_text())["rows"][0]["target_evaluation"]
    doc = json.loads((run / target).read_text())
    doc["pairs"][1]["example_index"] = 99
    (run / target).write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match=r"pair 1: example_index 99 outside 0..1") as err:
        build_report([run], tmp_path / "r.html")
    assert Path(target).name in str(err.value)


def _reference_dir(root: Path) -> Path:
    header = (
        "source,target,target_reference,generalization_accuracy,baseline_accuracy,baseline_intervention,"
        "target_tuned_capability,target_tuned_capability_intervention,source_ID_accuracy,RMS_calibration_error,"
        "differential_elicitation\n"
    )
    folder = root / "llama-7b" / "lora_fine_tuning"
    folder.mkdir(parents=True)
    (folder / "GENIES.csv").write_text(header + "source_0,target_0,target_0,0.7,0.5,zero_shot,0.8,lora,0.9,0.1,0.25\n")
    (folder / "all.csv").write_text(
        header
        + "source_0,target_0,target_0,0.7,0.5,zero_shot,0.8,lora,0.9,0.1,0.25\n"
        + "source_1,target_1,target_1,0.6,0.5,zero_shot,1.0,lora,0.9,,0.1\n" * 2
    )
    return root


def test_reference_rows_are_deduplicated_and_renamed(tmp_path: Path) -> None:
    rows = load_reference(_reference_dir(tmp_path / "ref"))
    assert sorted((r.source, r.lists) for r in rows) == [("source_0", ("GENIES", "all")), ("source_1", ("all",))]
    assert {r.intervention for r in rows} == {"lora"}  # lora_fine_tuning maps to genies' name


def test_reference_means_use_our_shifts_only(tmp_path: Path) -> None:
    run = write_run_dir(tmp_path / "run", n_shifts=1, interventions=("lora",), n_examples=2)
    compared = compare_with_published(load_run(run), load_reference(_reference_dir(tmp_path / "ref")))
    [c] = compared.comparisons
    assert (c.intervention, c.model, c.n_shifts, c.published_mean_de) == ("lora", "llama-7b", 1, 0.25)
    out = build_report([run], tmp_path / "r.html", reference_dir=tmp_path / "ref")
    data, _ = page_data(out)
    assert data["reference"]["rows"] == [{"r": 0, "m": "llama-7b", "i": "lora", "p": "lora", "s": "source_0",
                                          "t": "target_0", "de": 0.25, "printed": 0.25}]
    assert (figures_dir(out) / "reference.png").exists()


@pytest.mark.data
def test_real_reference_reproduces_the_published_genies_mean(genies_reference_dir: Path) -> None:
    rows = load_reference(genies_reference_dir)
    mms = [
        r.differential_elicitation
        for r in rows
        if r.model == "llama-30b" and r.intervention == "mms" and "GENIES" in r.lists
    ]
    assert len(mms) == 15 and np.mean(mms) == pytest.approx(0.145, abs=5e-4)  # SPEC §7
    assert len({(r.source, r.target) for r in rows if r.model == "llama-30b" and r.intervention == "lora"}) == 56


def test_report_command(run_dir: Path, tmp_path: Path) -> None:
    from genies.commands import report as report_command

    app = typer.Typer()
    report_command.register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer from flattening the app
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").is_file() and "figures" in result.output
    # by default the report goes next to the run, so reporting another run never overwrites it
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert CliRunner().invoke(app, ["report", str(copy)]).exit_code == 0
    assert (copy / "report.html").is_file() and (copy / "report-figures").is_dir()
    # A missing folder is a GeniesError naming it; `genies` prints it as one line (tests/test_cli.py).
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")])
    assert isinstance(result.exception, RunDirError)
    assert str(result.exception) == f"{tmp_path / 'nope'}: run directory not found"
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "file" / "r.html")])
    assert isinstance(result.exception, ReportError) and str(tmp_path / "file") in str(result.exception)


def test_report_errors_are_genies_errors() -> None:
    assert issubclass(ReportError, GeniesError) and issubclass(ReportError, ValueError)
    assert issubclass(RunDirError, GeniesError) and issubclass(RunDirError, ValueError)


def test_serve_answers_only_the_report_files_on_loopback(report: Path) -> None:
    (report.parent / "secret.txt").write_text("not for the browser")
    server = make_server(served_files(report, figures_dir(report)))
    host, port = server.server_address[:2]
    assert host == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/report.html", timeout=5) as response:
            assert response.read() == report.read_bytes()
        with urllib.request.urlopen(f"{base}/report-figures/reliability.svg", timeout=5) as response:
            assert response.headers["Content-Type"] == "image/svg+xml"
        for path in ("/secret.txt", "/../secret.txt", "/report-figures/../secret.txt"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + path, timeout=5)
            assert err.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def _dist(name: str, n: int) -> Distribution:
    examples = [Example(f"{name} prompt {i}", (f"good {i}", f"bad {i}"), i % 2) for i in range(n)]
    return Distribution.from_examples(name, examples[:1], examples)


def test_browse_embeds_each_split_and_shift(tmp_path: Path) -> None:
    shift = Shift("src", "tgt", "tgt", "skill", "extreme")
    out = build_browse(
        [_dist("src", 5), _dist("tgt", 3)],
        tmp_path / "d.html",
        shifts=[shift],
        splits=("test", "train"),
        max_examples=4,
    )
    data, blobs = page_data(out)
    assert data["mode"] == "browse" and data["shifts"][0]["name"] == "src → tgt"
    src = data["dists"][0]["blobs"]
    assert blobs[f"ex-{src['test']}"] == [[f"src prompt {i}", [f"good {i}", f"bad {i}"], i % 2] for i in range(4)]
    assert len(blobs[f"ex-{src['train']}"]) == 1
    with pytest.raises(ValueError, match="not loaded: other"):
        build_browse(
            [_dist("src", 1)], tmp_path / "e.html", shifts=[Shift("src", "other", "other", "skill", "extreme")]
        )


@pytest.mark.data
def test_data_browse_command_on_real_data(genies_data_dir: Path, tmp_path: Path) -> None:
    from genies.cli import GeniesGroup
    from genies.commands import data_browse

    app = typer.Typer(cls=GeniesGroup)
    data_browse.register(app)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(
        app,
        [
            "browse",
            "alpaca_easy",
            "--shifts",
            str(_shift_file(tmp_path)),
            "--max-examples",
            "3",
            "--out",
            str(tmp_path / "d.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    data, blobs = page_data(tmp_path / "d.html")
    assert [d["name"] for d in data["dists"]] == ["alpaca_easy", "alpaca_hard"]
    assert all(len(b) == 3 for b in blobs.values())
    result = CliRunner().invoke(app, ["browse", "alpaca_esay", "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 2 and "alpaca_easy" in result.output  # the closest name is suggested


def _shift_file(tmp_path: Path) -> Path:
    path = tmp_path / "shifts.json"
    path.write_text(json.dumps([{"source": "alpaca_easy", "target": "alpaca_hard"}]))
    return path


def test_a_run_where_every_job_failed_still_gets_a_report(tmp_path: Path) -> None:
    from genies.pipeline.run_dir import ComputedRun, FailedJob, RunResults, write_run

    failed = tuple(FailedJob(f"fit {i} on src", f"RuntimeError: {i} broke") for i in ("lora", "mms"))
    results = RunResults({"model": "m", "preset": "cpu", "interventions": ["lora", "mms"]}, (), (), failed,
                         ("lora: src->tgt", "mms: src->tgt"))
    run = write_run(tmp_path / "run", ComputedRun(results, ())).run_dir
    out = build_report([run], tmp_path / "r.html")
    text = out.read_text()
    assert "No data: no cell of this run could be computed" in text and "mms broke" in text
    for name in ("de_by_intervention", "de_heatmap", "reliability"):
        assert "no data" in (figures_dir(out) / f"{name}.svg").read_text()
    data, _ = page_data(out)
    assert data["rows"] == [] and data["runs"][0]["interventions"] == ["lora", "mms"]


def test_what_a_method_reports_is_shown_per_evaluation(tmp_path: Path) -> None:
    reported = {"legacy_metrics": {"eval_accuracy": 0.7134, "eval_loss": 0.52}, "warning": "no per-pair probabilities"}
    run = write_run_dir(tmp_path / "run", n_shifts=2, interventions=("zero_shot", "legacy:x"), n_examples=3,
                        info={"legacy:x": reported})
    out = build_report([run], tmp_path / "r.html")
    text = out.read_text()
    line = "warning: no per-pair probabilities; legacy_metrics: eval_accuracy 0.7134, eval_loss 0.52"
    box = re.search(r'<details class="warn" id="method-reports".*?</details>', text, re.S).group(0)
    assert box.count("<li>") == 4 and box.count(line) == 4  # legacy:x on 2 targets and 2 sources
    data, _ = page_data(out)
    assert [e["label"] for e in data["evals"] if e.get("info") == line] == [
        "legacy:x (trained on source_0) on target_0", "legacy:x (trained on source_0) on source_0",
        "legacy:x (trained on source_1) on target_1", "legacy:x (trained on source_1) on source_1"]
    plain = build_report([write_run_dir(tmp_path / "plain", n_shifts=1, n_examples=2)], tmp_path / "p.html")
    assert 'id="method-reports"' not in plain.read_text()
    assert all("info" not in e for e in page_data(plain)[0]["evals"])


def test_data_browse_reads_the_synthetic_suite_and_a_shift_file_beside_its_data(tmp_path: Path, monkeypatch) -> None:
    """Where `genies run` reads them: `--shifts synthetic`, and a shift file's own folder even with
    GENIES_DATA_DIR pointing at other data (both stopped with "unknown distribution")."""
    from genies.cli import _build
    from genies.data.synth import synthetic_shifts, write_synthetic

    monkeypatch.setenv("GENIES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENIES_DATA_DIR", str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    synth = write_synthetic(tmp_path / "synth", 8, 0)
    first = synthetic_shifts()[0]
    for selector in ("synthetic", str(synth / "shifts.json")):
        out = tmp_path / "browse.html"
        result = CliRunner().invoke(_build(), ["data", "browse", "--shifts", selector, "--max-examples", "2",
                                               "--out", str(out)])
        assert result.exit_code == 0, result.output
        data, _ = page_data(out)
        assert f"{first.source} → {first.target}" in [s["name"] for s in data["shifts"]]
