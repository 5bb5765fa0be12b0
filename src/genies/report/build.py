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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from genies._io import write_atomic
from genies.data.schema import Example
from genies.pipeline.run_dir import EVALUATION_FIELDS, Evaluation
from genies.report import plots
from genies.report.load import Run, load_runs
from genies.report.page import render_page, round_probabilities
from genies.report.published import PublishedComparisons, compare_with_published
from genies.report.reference import load_reference
from genies.report.support import comparison_sentence, run_support, signed

# ResultRow field -> short key the page uses
ROW_KEYS = {
    "intervention": "intervention",
    "source": "source",
    "target": "target",
    "target_reference": "target_reference",
    "category": "category",
    "family": "family",
    "differential_elicitation": "de",
    "de_ci_low": "de_lo",
    "de_ci_high": "de_hi",
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
INFO_LIST_ITEMS = 8  # a method's reported list longer than this is summarised by its length
BEYOND = ' class="beyond"'  # a comparison whose interval excludes 0, shown in bold
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
        if isinstance(value, list):  # a long list is data (ccs's legacy pairs), not something to read
            return ", ".join(text(v) for v in value) if len(value) <= INFO_LIST_ITEMS else f"{len(value)} items"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    ordered = sorted(info.items(), key=lambda item: item[0] != "warning")
    return "; ".join(f"{k}: {text(v)}" for k, v in ordered)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null so the page's JSON stays strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def report_payload(
    runs: Sequence[Run], compared: Sequence[PublishedComparisons] | None, models: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The page's main JSON (runs, rows, aggregates, published DE per shift) and its lazily parsed
    blocks. `compared[k]` is run k's like-for-like comparison with the published `models`; only
    its pairs reach the page, with the published DE as compared (recomputed with LoRA's A_tt for
    a default-mode run)."""
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
    if compared is not None:
        data["reference"] = {
            "models": list(models),
            "rows": [
                {"r": k, "m": c.model, "i": c.intervention, "p": c.published, "s": pair.source, "t": pair.target,
                 "de": round(pair.published_de, 4), "printed": round(pair.published_de_as_printed, 4)}
                for k, done in enumerate(compared)
                for c in done.comparisons
                for pair in c.shifts
            ],
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
    return (f'{_support(runs)}<div class="cards">{"".join(cards)}</div>{_shift_mismatch(runs)}{warn}'
            f"{_method_reports(runs)}")


def shift_mismatch(runs: Sequence[Run]) -> str | None:
    """A warning when compared runs cover different shifts: their mean DEs then average different
    things, and side by side they would read as a comparison of models or presets alone."""
    sets = [set(run.shifts) for run in runs]
    if len(runs) < 2 or all(s == sets[0] for s in sets):
        return None
    shared = set.intersection(*sets)
    counts = ", ".join(f"{run.label}: {len(s)}" for run, s in zip(runs, sets, strict=True))
    return (f"These runs cover different shifts ({counts}; {len(shared)} shared): their mean DEs are over "
            "different shift lists, so compare them per shift (the results table and heatmaps) rather than by mean.")


def _shift_mismatch(runs: Sequence[Run]) -> str:
    text = shift_mismatch(runs)
    return f'<p class="warn" id="shift-mismatch">{html.escape(text)}</p>' if text else ""


def _support(runs: Sequence[Run]) -> str:
    """Per run, in plain words: whether any intervention beats another beyond noise and how wide
    its mean-DE intervals are (`genies.report.support`); every paired comparison folded below."""
    blocks = []
    for k, run in enumerate(runs):
        support = run_support(run.results)
        title = "What this run can support" + (f" ({run.label})" if len(runs) > 1 else "")
        listed = "".join(
            f"<li{BEYOND if c.beyond_noise else ''}>{html.escape(comparison_sentence(c))}</li>"
            for c in support.comparisons
        )
        folded = (
            f"<details><summary>all {len(support.comparisons)} paired comparisons (difference of mean DE, "
            f"its interval, the shifts both ran)</summary><ul>{listed}</ul></details>"
            if support.comparisons else ""
        )
        blocks.append(
            f'<div class="support" id="support-{k}"><div class="v">{html.escape(title)}</div>'
            f"<p>{html.escape(support.verdict_sentence())}</p><p>{html.escape(support.widths_sentence())}</p>"
            f"{folded}</div>"
        )
    return "".join(blocks)


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


def _published_section(runs: Sequence[Run], compared: Sequence[PublishedComparisons], figure: str | None) -> str:
    """The like-for-like comparisons as a table, each with how A_tt was matched and its caveat
    beside the numbers, then the interventions that have nothing comparable and why."""
    several = len(runs) > 1
    head = "".join(
        f'<th class="{"t" if text else ""}">{html.escape(name)}</th>'
        for name, text in [("run", True)] * several + [
            ("ours", True), ("published", True), ("model", True), ("shifts", False), ("our mean DE", False),
            ("published mean DE", False), ("A_tt", True), ("caveat", True)]
    )
    body = "".join(
        "<tr>" + (f'<td class="t">{html.escape(runs[k].label)}</td>' if several else "")
        + "".join(f'<td class="t">{html.escape(v)}</td>' for v in (c.intervention, c.published, c.model))
        + f"<td>{c.n_shifts}</td><td>{signed(c.ours_mean_de)}</td><td>{signed(c.published_mean_de)}</td>"
        + f'<td class="t">{html.escape(c.att_text)}</td><td class="t wrap">{html.escape(c.caveat or "")}</td></tr>'
        for k, done in enumerate(compared)
        for c in done.comparisons
    )
    table = (f'<div class="tablewrap fit"><table class="summary" id="published-table"><thead><tr>{head}</tr></thead>'
             f"<tbody>{body}</tbody></table></div>" if body else "")
    missing = "".join(
        f"<li>{html.escape((runs[k].label + ' · ') if several else '')}<b>{html.escape(n.intervention)}</b>"
        f"{html.escape(f' (published {n.model})' if n.model else '')}: {html.escape(n.reason)}</li>"
        for k, done in enumerate(compared)
        for n in done.not_compared
    )
    return (
        (_figure(figure) if figure else "<p>No published result is comparable with these interventions and shifts.</p>")
        + table
        + (f'<div class="warn" id="not-compared"><b>Not compared</b><ul>{missing}</ul></div>' if missing else "")
    )


def build_report(run_dirs: Sequence[str | Path], out: str | Path, reference_dir: str | Path | None = None) -> Path:
    """Write the report HTML to `out` and its figures (PNG + SVG) to `<out stem>-figures/`."""
    out = Path(out)
    loaded = load_runs(list(run_dirs))
    # Target-mixing rows (`--mix-target`) have their own figure; every other part shows the ordinary rows.
    runs = [Run(replace(run.results, rows=tuple(r for r in run.rows if not r.target_mix)), run.label,
                run._evaluations) for run in loaded]
    reference = load_reference(reference_dir) if reference_dir else None
    models = sorted({r.model for r in reference}) if reference else []
    compared = (
        [compare_with_published(run.results, reference, evaluation=run.evaluation) for run in runs]
        if reference else None
    )
    figs = figures_dir(out)
    bars = plots.save_figure(plots.de_bars(runs), figs, "de_by_intervention")
    heatmaps = [
        plots.save_figure(plots.de_heatmap(run), figs, "de_heatmap" if len(runs) == 1 else f"de_heatmap_{k + 1}")
        for k, run in enumerate(runs)
    ]
    calibration = plots.save_figure(plots.reliability(runs), figs, "reliability")
    mix_fig = plots.target_mix(loaded)
    mix_svg = plots.save_figure(mix_fig, figs, "target_mix") if mix_fig is not None else None
    ref_svg = None
    if compared is not None:
        ref_fig = plots.reference_bars(runs, compared)
        ref_svg = plots.save_figure(ref_fig, figs, "reference") if ref_fig is not None else None
    data, blobs = report_payload(runs, compared, models)

    title = "genies report: " + " vs ".join(run.label for run in runs)
    nav = (
        [("overview", "Overview"), ("results", "Results table"), ("heatmap", "Heatmap"), ("calibration", "Calibration")]
        + ([("target-mix", "Target data")] if mix_svg else [])
        + ([("reference", "Published")] if reference else [])
        + [("samples", "Sample browser")]
    )
    sections = [
        _section(
            "overview",
            "Mean differential elicitation",
            "DE = (generalization accuracy − zero-shot accuracy on the target) / target-tuned capability. "
            "Positive: the intervention, trained on the source only, elicits more of the model's ability to judge the "
            "target than zero-shot scoring does. Error bars and brackets are the run's 95 % bootstrap intervals, "
            "resampling the shifts and the prompts within each; one panel for all shifts, then one per category.",
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
            "Blue: the intervention generalized better than zero-shot; red: worse. Under each DE, its 95 % interval "
            "from resampling the target's prompts (jointly for the intervention and zero-shot) and the reference's "
            "(for the target-tuned capability). Shifts are grouped by category.",
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
    if mix_svg is not None:
        sections.append(
            _section(
                "target-mix",
                "How much target data fixes a shift",
                "Target accuracy when a fraction of the intervention's training set (the source's train split, same "
                "size) is replaced by seeded examples of the target's train split (genies run --mix-target); "
                "fraction 0 is the ordinary run. Dashed: zero-shot on the target; dotted: the target-tuned "
                "capability A_tt; crosses: the GENIES paper's 30B LoRA on the same shift (docs/sweeps.md).",
                _figure(mix_svg, f"Figure files: {figs.name}/target_mix.png and .svg"),
            )
        )
    if compared is not None:
        sections.append(
            _section(
                "reference",
                "Published GENIES numbers",
                f"Read from {html.escape(str(reference_dir))}. Only like-for-like pairs are drawn: lat beside "
                "lat_stim_1 or lat_stim_2 by its stimulus, ccs only in its legacy-oracle variant (both sides the "
                "original's per-response figure), and for a run in the default target-tuned mode the published DE "
                "recomputed with LoRA's target-tuned capability where the tables give it. Both means of a pair are "
                "over the shifts both sides have. Hatched bars (starred labels) carry a caveat, given in the table; "
                "the results table shows the published DE per shift, as compared.",
                _published_section(runs, compared, ref_svg),
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
