"""`build_report`: run directories in, one self-contained HTML page plus PNG/SVG figures out.

The page embeds compact data: each distribution's examples once (evaluations of the same
target share them) and each evaluation as a list of rounded probabilities, with the pair
indices left out when they follow the canonical order (example by example, dispreferred
responses in order), which is what the pipeline writes.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genies._io import write_atomic
from genies.data.schema import Example
from genies.pipeline.run_dir import EVALUATION_FIELDS, Evaluation
from genies.report import plots
from genies.report.load import Run, load_runs
from genies.report.page import render_page, round_probabilities
from genies.report.reference import ReferenceRow, load_reference

# ResultRow field -> short key the page uses
ROW_KEYS = {
    "intervention": "intervention",
    "source": "source",
    "target": "target",
    "target_reference": "target_reference",
    "category": "category",
    "family": "family",
    "differential_elicitation": "de",
    "generalization_accuracy": "ga",
    "baseline_accuracy": "base",
    "target_tuned_capability": "att",
    "target_tuned_capability_intervention": "att_by",
    "elicitation": "elic",
    "source_ID_accuracy": "src",
    "ece": "ece",
    "brier": "brier",
    "RMS_calibration_error": "rms",
    "accuracy_ci_low": "ci_lo",
    "accuracy_ci_high": "ci_hi",
    "length_cue_flag": "len_flag",
}
EVAL_SHORT = dict(zip(EVALUATION_FIELDS, ("ev_t", "ev_s", "ev_b", "ev_r"), strict=True))


def figures_dir(out: Path) -> Path:
    """Where the PNG/SVG copies of the plots go: a folder beside the HTML named after it."""
    return out.with_name(f"{out.stem}-figures")


class _Embedder:
    """Collects examples (deduplicated by content) and evaluations into the page's JSON blocks."""

    def __init__(self) -> None:
        self.blobs: dict[str, Any] = {}
        self.dist_keys: dict[str, int] = {}
        self.evals: list[dict[str, Any]] = []
        self.eval_ids: dict[Path, int] = {}

    def examples(self, examples: Sequence[Example]) -> int:
        compact = [[ex.prompt, list(ex.responses), ex.preferred] for ex in examples]
        digest = hashlib.sha256(json.dumps(compact, ensure_ascii=False).encode()).hexdigest()
        if digest not in self.dist_keys:
            key = len(self.dist_keys)
            self.dist_keys[digest] = key
            self.blobs[f"ex-{key}"] = compact
        return self.dist_keys[digest]

    def evaluation(self, path: Path, ev: Evaluation) -> int:
        """The page's id of the evaluation file at `path` (embedded on first use)."""
        if path in self.eval_ids:
            return self.eval_ids[path]
        key = self.examples(ev.examples)
        canonical = [(i, j) for i, ex in enumerate(ev.examples) for j in ex.dispreferred_indices]
        ours = list(zip(ev.example_index.tolist(), ev.dispreferred_index.tolist(), strict=True))
        block: dict[str, Any] = {"p": round_probabilities(ev.p_preferred)}
        if ours != canonical:
            block["e"], block["r"] = ev.example_index.tolist(), ev.dispreferred_index.tolist()
        if ev.response_scores is not None:
            block["s"] = [
                None if scores is None else [_clean(round(x, 4)) for x in scores] for scores in ev.response_scores
            ]
        eid = len(self.evals)
        meta = {"d": key, "acc": _clean(ev.accuracy), "label": _eval_label(ev)}
        if ev.info:
            meta["info"] = _info_text(ev.info)
        self.evals.append(meta)
        self.blobs[f"ev-{eid}"] = block
        self.eval_ids[path] = eid
        return eid


def _eval_label(ev: Evaluation) -> str:
    trained = f"trained on {ev.trained_on}" if ev.trained_on else "not trained"
    return f"{ev.intervention} ({trained}) on {ev.distribution}"


def _info_text(info: Mapping[str, Any]) -> str:
    """What a method reported beside its predictions, as one line, a warning first:
    `warning: ...; legacy_metrics: eval_accuracy 0.71, loss 0.3`."""

    def text(value: Any) -> str:
        if isinstance(value, Mapping):
            return ", ".join(f"{k} {text(v)}" for k, v in value.items())
        if isinstance(value, list):
            return ", ".join(text(v) for v in value)
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    ordered = sorted(info.items(), key=lambda item: item[0] != "warning")
    return "; ".join(f"{k}: {text(v)}" for k, v in ordered)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null so the page's JSON stays strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_payload(
    runs: Sequence[Run], reference: Sequence[ReferenceRow] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's main JSON (runs, rows, aggregates, reference) and its lazily parsed blocks."""
    embed = _Embedder()
    rows: list[dict[str, Any]] = []
    for k, run in enumerate(runs):
        for row in run.rows:
            out: dict[str, Any] = {"run": k}
            out.update({short: _clean(getattr(row, key)) for key, short in ROW_KEYS.items()})
            for kind, short in EVAL_SHORT.items():
                relpath = getattr(row, kind)  # "" for the reference of a run without one (--target-tuned none)
                out[short] = embed.evaluation(run.path / relpath, run.evaluation(relpath)) if relpath else None
            rows.append(out)
    aggregates = [
        {"run": k, **{key: _clean(v) for key, v in asdict(agg).items()}}
        for k, run in enumerate(runs)
        for agg in run.aggregates
    ]
    data: dict[str, Any] = {
        "mode": "report",
        "runs": [
            {
                "label": run.label,
                "dir": run.path.name,
                "interventions": run.interventions,
                "n_shifts": len(run.shifts),
                **{k: run.info.get(k) for k in ("model", "preset", "seed", "shifts")},
                "failed": [asdict(f) for f in run.failed],
            }
            for run in runs
        ],
        "rows": rows,
        "aggregates": aggregates,
        "evals": embed.evals,
        "reference": None,
    }
    if reference:
        ours = {(r.source, r.target) for run in runs for r in run.rows}
        data["reference"] = {
            "models": sorted({r.model for r in reference}),
            "rows": [
                {
                    "m": r.model,
                    "i": r.intervention,
                    "s": r.source,
                    "t": r.target,
                    "de": round(r.differential_elicitation, 4),
                }
                for r in reference
                if (r.source, r.target) in ours
            ],
            "means": plots.reference_means(runs, reference),
        }
    return data, embed.blobs


def _section(anchor: str, title: str, note: str, *content: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{html.escape(title)}</h2><p class="note">{note}</p>'
        + "".join(content)
        + "</section>"
    )


def _figure(svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{svg}{cap}</figure>"


def _overview(runs: Sequence[Run]) -> str:
    cards = []
    for run in runs:
        info = run.info
        facts = [
            ("model", info.get("model")),
            ("preset", info.get("preset")),
            ("seed", info.get("seed")),
            ("shifts", f"{info.get('shifts', '?')} ({len(run.shifts)})"),
            ("interventions", ", ".join(run.interventions)),
            ("target-tuned", info.get("target_tuned")),
        ]
        body = "".join(
            f'<div><span class="k">{html.escape(k)}:</span> <span class="v">{html.escape(str(v))}</span></div>'
            for k, v in facts
            if v is not None
        )
        cards.append(
            f'<div class="card"><div class="v">{html.escape(run.label)}</div>{body}'
            f'<div class="k">{html.escape(str(run.path))}</div></div>'
        )
    failed = [(run.label, f) for run in runs for f in run.failed]
    warn = ""
    if failed:
        items = "".join(
            f"<pre>{html.escape(label)} · {html.escape(f.job)}\n{html.escape(f.error)}</pre>" for label, f in failed
        )
        warn = (
            f'<details class="warn" id="failed-jobs"><summary>{len(failed)} job(s) failed; their rows are missing '
            f"from this report</summary>{items}</details>"
        )
    return f'<div class="cards">{"".join(cards)}</div>{warn}{_method_reports(runs)}'


def _method_reports(runs: Sequence[Run]) -> str:
    """One line per evaluation whose method reported something beside its predictions (a legacy
    script's own metrics, a warning), so those numbers are seen next to ours."""
    lines = [
        (run.label, _eval_label(ev), _info_text(ev.info)) for run in runs for ev in run.evaluations() if ev.info
    ]
    if not lines:
        return ""
    items = "".join(
        f"<li>{html.escape(label)} · <b>{html.escape(name)}</b>: {html.escape(text)}</li>"
        for label, name, text in lines
    )
    return (
        f'<details class="warn" id="method-reports" open><summary>{len(lines)} evaluation(s) carry what the method '
        f"itself reported</summary><ul>{items}</ul></details>"
    )


def _no_rows(runs: Sequence[Run]) -> str:
    """The empty state of the table and the sample browser when no run has a row."""
    if any(run.rows for run in runs):
        return ""
    return '<p class="empty">No data: no cell of this run could be computed (see the failed jobs above).</p>'


def build_report(run_dirs: Sequence[str | Path], out: str | Path, reference_dir: str | Path | None = None) -> Path:
    """Write the report HTML to `out` and its figures (PNG + SVG) to `<out stem>-figures/`."""
    out = Path(out)
    runs = load_runs(list(run_dirs))
    reference = load_reference(reference_dir) if reference_dir else None
    figs = figures_dir(out)
    bars = plots.save_figure(plots.de_bars(runs), figs, "de_by_intervention")
    heatmaps = [
        plots.save_figure(plots.de_heatmap(run), figs, "de_heatmap" if len(runs) == 1 else f"de_heatmap_{k + 1}")
        for k, run in enumerate(runs)
    ]
    calibration = plots.save_figure(plots.reliability(runs), figs, "reliability")
    ref_svg = None
    if reference:
        ref_fig = plots.reference_bars(runs, reference)
        ref_svg = plots.save_figure(ref_fig, figs, "reference") if ref_fig is not None else None
    data, blobs = report_payload(runs, reference)

    title = "genies report: " + " vs ".join(run.label for run in runs)
    nav = (
        [("overview", "Overview"), ("results", "Results table"), ("heatmap", "Heatmap"), ("calibration", "Calibration")]
        + ([("reference", "Published")] if reference else [])
        + [("samples", "Sample browser")]
    )
    sections = [
        _section(
            "overview",
            "Mean differential elicitation",
            "DE = (generalization accuracy − zero-shot accuracy on the target) / target-tuned capability. "
            "Positive: the intervention, trained on the source only, elicits more of the model's ability to judge the "
            "target than zero-shot scoring does. Error bars and brackets are the run's bootstrap confidence intervals "
            "over shifts; one panel for all shifts, then one per category.",
            _overview(runs),
            '<div id="summary-table" style="margin-top:14px"></div>',
            _figure(bars, f"Figure files: {figs.name}/de_by_intervention.png and .svg"),
        ),
        _section(
            "results",
            "Per-shift results",
            "One row per shift for the chosen run and intervention; sort by clicking a column header, filter by "
            "category, family or intervention, and click a row to see that shift's examples in the sample browser.",
            _no_rows(runs),
            '<div class="controls" id="table-controls"></div><div class="count" id="table-count"></div>'
            '<div class="tablewrap"><table id="results-table"></table></div>',
        ),
        _section(
            "heatmap",
            "DE by shift and intervention",
            "Blue: the intervention generalized better than zero-shot; red: worse. Shifts are grouped by category.",
            '<div class="figrow">' + "".join(_figure(svg) for svg in heatmaps) + "</div>",
        ),
        _section(
            "calibration",
            "Calibration (reliability diagrams)",
            "Every target pair of an intervention, pooled over shifts and binned by the model's confidence in the "
            "response it ranks higher; a calibrated model lies on the dashed diagonal. Marker size: pairs in the bin. "
            "ECE: count-weighted mean gap between accuracy and confidence.",
            _figure(calibration),
        ),
    ]
    if reference:
        sections.append(
            _section(
                "reference",
                "Published GENIES numbers",
                f"Read from {html.escape(str(reference_dir))}. Means are over the shifts this report's runs cover, "
                "so the bars compare models and code, not shift sets. The summary table above lists the same means; "
                "the results table shows the published DE per shift.",
                _figure(ref_svg) if ref_svg else "<p>No published result overlaps these interventions and shifts.</p>",
            )
        )
    sections.append(
        _section(
            "samples",
            "Sample browser",
            "Target examples with every response: the preferred response is green; a dispreferred response the model "
            "ranked above it is red, and the one it was most confident about is marked MODEL'S PICK. "
            "P(preferred over this) is the model's probability that the preferred response wins that pair. Filter to "
            "errors and order by confidence to see where the reward model generalized the wrong way.",
            _no_rows(runs),
            '<div id="browser"></div>',
        )
    )
    links = "".join(f'<a href="#{anchor}">{text}</a>' for anchor, text in nav)
    body = (
        f'<header class="top"><h1>{html.escape(title)}</h1>'
        f'<div class="sub">GENIES reward-model generalization report · {len(runs)} run(s)</div>'
        f"<nav>{links}</nav></header><main>{''.join(sections)}</main>"
    )
    write_atomic(out, render_page(title, body, data, blobs))
    return out
