"""`genies report` for a `genies w2s` folder: the weak-to-strong page.

Per source, bars of weak / each student (one per loss) / ceiling accuracy with their 95 %
intervals, PGR with its interval (or `undefined`), the students' and ceiling's accuracy and DE on
each target, and a browser of the half-B examples whose weak label is wrong: those where a student
picks the truth against it, and those where it follows it. It reads only the folder
(`w2s.json`, `w2s-examples.json`) and shares the judge pages' shell, tables and sorting script;
what failed is shown as `-` (or a missing list), never a crash.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from genies.report.build import figures_dir
from genies.report.judge_page import _figure, _page, _section, _table, _td, _text
from genies.report.judge_plots import HORIZONTAL, _chance, _whiskers
from genies.report.plots import RUN_COLORS, no_data, save_figure
from genies.rounding import number
from genies.weak_to_strong.files import load_examples, load_results
from genies.weak_to_strong.metrics import (
    Accuracy,
    De,
    LabelledExample,
    Pgr,
    SourceExamples,
    SourceResult,
    W2SResults,
    pgr_text,
)

WEAK_COLOR, CEILING_COLOR = "#9aa3ad", "#5d6b7a"
EXAMPLES_SHOWN = 200  # per list; a note says how many more there are


def _bars(source: SourceResult, losses: Sequence[str]) -> list[tuple[str, Accuracy | None, str]]:
    """(label, accuracy or None when its jobs failed, colour) of one source's bars, top to bottom."""
    students = [(f"student {loss}", s.accuracy if (s := source.student(loss)) else None,
                 RUN_COLORS[k % len(RUN_COLORS)]) for k, loss in enumerate(losses)]
    return [("weak", source.weak, WEAK_COLOR), *students, ("ceiling", source.ceiling, CEILING_COLOR)]


def accuracy_bars(results: W2SResults) -> Figure:
    """One panel per source: weak, each student and the ceiling, pair accuracy on the source's test
    split with its 95 % interval as a whisker; a failed job is an empty row labelled so."""
    if not results.sources:
        return no_data("weak-to-strong accuracy")
    losses = results.run.losses
    cols = min(len(results.sources), 3)
    nrows = -(-len(results.sources) // cols)
    height = 0.45 + 0.26 * (len(losses) + 2)
    with rc_context(HORIZONTAL):
        fig = Figure(figsize=(2.6 + 2.8 * cols, nrows * height + 0.5), layout="constrained")
        axes = fig.subplots(nrows, cols, squeeze=False, sharex=True).ravel()
        for ax, source in zip(axes, results.sources, strict=False):
            bars = _bars(source, losses)
            value = np.array([a.value if a else np.nan for _, a, _ in bars])
            low = np.array([a.low if a else np.nan for _, a, _ in bars])
            high = np.array([a.high if a else np.nan for _, a, _ in bars])
            y = np.arange(len(bars))[::-1]
            ax.barh(y, np.nan_to_num(value), 0.7, xerr=_whiskers(value, low, high), color=[c for *_, c in bars],
                    capsize=2, error_kw={"elinewidth": 0.9, "ecolor": "#333"})
            _chance(ax)
            ax.set_yticks(y, [label if a else f"{label} (failed)" for label, a, _ in bars], fontsize=8)
            ax.set_title(source.source, loc="left")
        for ax in axes[len(results.sources):]:
            ax.set_visible(False)
        for ax in axes[(nrows - 1) * cols:]:
            ax.set_xlabel("pair accuracy, source test split")
    return fig


def _pgr_cell(p: Pgr | None) -> str:
    """PGR with its interval; `undefined` (ceiling <= weak) and `-` (weak or ceiling failed) as text."""
    if p is None or not p.defined:
        return f'<td data-v="" class="undefined">{pgr_text(p)}</td>'
    return _td(p.value, p.low, p.high)


def _acc(a: Accuracy | De | None) -> str:
    return _td(None) if a is None else _td(a.value, a.low, a.high)


def _source_rows(results: W2SResults) -> list[str]:
    rows = []
    for s in results.sources:
        for st in s.students or (None,):
            share = st.pgr.undefined_share if st and st.pgr else None
            rows.append(f'<tr data-source="{html.escape(s.source)}" data-loss="{html.escape(st.loss) if st else ""}">'
                        f"{_text(s.source)}{_text(st.loss if st else '-')}{_acc(s.weak)}"
                        f"{_td(s.weak_label_accuracy)}{_acc(st.accuracy if st else None)}{_acc(s.ceiling)}"
                        f"{_pgr_cell(st.pgr if st else None)}{_td(share)}"
                        f'<td data-v="{s.test_pairs}">{s.test_pairs}</td>'
                        f'<td data-v="{s.train_examples}">{s.train_examples}</td></tr>')
    return rows


def _target_rows(results: W2SResults) -> list[str]:
    rows = []
    for t in results.targets:
        for st in t.students or (None,):
            diff = (st.accuracy.value - t.ceiling.value) if st and t.ceiling else None
            ref = t.reference
            rows.append(f"<tr>{_text(t.source)}{_text(t.target)}{_text(st.loss if st else '-')}"
                        f"{_acc(st.accuracy if st else None)}{_acc(t.ceiling)}{_td(diff, diff=True)}"
                        f"{_acc(st.de if st else None)}{_acc(t.ceiling_de)}{_acc(ref.baseline if ref else None)}"
                        f"{_acc(ref.target_tuned if ref else None)}</tr>")
    return rows


def _response(k: int, text: str, ex: LabelledExample, choice_prob: float) -> str:
    tags = []
    if k == ex.truth:
        tags.append('<span class="tag pref">truth</span>')
    if k == ex.weak:
        tags.append(f'<span class="tag pick">weak label {number(ex.weak_confidence)}</span>')
    if choice_prob >= 0:
        tags.append(f'<span class="badge tie">student {number(choice_prob)}</span>')
    cls = "resp pref" if k == ex.truth else "resp beats" if k == ex.weak else "resp"
    return (f'<div class="{cls}"><div class="rh">response {k + 1} {"".join(tags)}</div>'
            f'<div class="rt">{html.escape(text)}</div></div>')


def _example(ex: LabelledExample, loss: str) -> str:
    (choice,) = [c for c in ex.students if c.loss == loss]
    right = choice.preferred == ex.truth
    badge = ('<span class="badge ok">student picks the truth</span>' if right
             else '<span class="badge err">student follows the weak label</span>')
    resps = "".join(_response(k, r, ex, choice.probability if k == choice.preferred else -1.0)
                    for k, r in enumerate(ex.responses))
    return (f'<div class="ex {"ok" if right else "err"}" data-index="{ex.index}"><div class="ex-head">'
            f'<span class="idx">half-B example {ex.index}</span>{badge}<span>weak soft label '
            f"{number(ex.weak_confidence)} on response {ex.weak + 1}; student's probability {number(choice.probability)} "
            f"on response {choice.preferred + 1}; truth: response {ex.truth + 1}</span></div>"
            f'<div class="prompt open">{html.escape(ex.prompt)}</div><div class="resps">{resps}</div></div>')


def _example_list(list_id: str, title: str, examples: Sequence[LabelledExample], loss: str) -> str:
    shown = examples[:EXAMPLES_SHOWN]
    more = (f'<p class="count">the first {len(shown)} of {len(examples)} (w2s-examples.json has them all)</p>'
            if len(examples) > len(shown) else "")
    body = "".join(_example(ex, loss) for ex in shown) or '<div class="empty">none</div>'
    return (f'<details class="w2s-list" id="{html.escape(list_id)}" data-count="{len(examples)}"'
            f'{" open" if examples else ""}><summary class="colhead">{html.escape(title)} ({len(examples)})'
            f"</summary>{more}{body}</details>")


def _browser(results: W2SResults, examples: Sequence[SourceExamples] | None) -> str:
    if examples is None:
        return '<div class="empty">This run wrote no w2s-examples.json (it stopped before its end).</div>'
    parts = []
    for k, src in enumerate(examples):
        stored = {c.loss for e in src.wrong_weak_labels for c in e.students}
        head = (f"<h3>{html.escape(src.source)}</h3><p class=\"count\">{len(src.wrong_weak_labels)} of the {src.half_b} "
                "half-B examples have a wrong weak label.</p>")
        lists = []
        for loss in results.run.losses:
            if loss not in stored and src.wrong_weak_labels:
                lists.append(f'<p class="count">student {html.escape(loss)}: no predictions on half B (its jobs '
                             "failed)</p>")
                continue
            lists.append('<div class="excols two">'
                         + _example_list(f"overruled-{k}-{loss}", f"student {loss} picks the truth against its weak "
                                         "label", src.overruled(loss), loss)
                         + _example_list(f"followed-{k}-{loss}", f"student {loss} follows the wrong weak label",
                                         src.followed(loss), loss) + "</div>")
        parts.append(f'<div class="w2s-source" data-source="{html.escape(src.source)}">{head}{"".join(lists)}</div>')
    return "".join(parts) or '<div class="empty">no source has weak labels (their jobs failed)</div>'


def _card(results: W2SResults, folder: Path) -> str:
    r = results.run
    facts = [("weak", f"{r.weak} ({r.weak_method})"), ("strong", f"{r.strong} ({r.method})"),
             ("losses", ", ".join(r.losses) + (f" (aux_max {r.aux_max})" if "aux_conf" in r.losses else "")),
             ("labels", r.labels), ("DE target-tuned", r.target_tuned), ("shifts", r.shifts), ("preset", r.preset), ("seed", r.seed),
             ("examples", f"max-train {r.max_train if r.max_train is not None else 'all'}, max-eval "
                          f"{r.max_eval if r.max_eval is not None else 'all'}"),
             ("wall time", f"{r.wall_seconds:.0f} s")]
    body = "".join(f'<div><span class="k">{html.escape(k)}:</span> <span class="v">{html.escape(str(v))}</span></div>'
                   for k, v in facts)
    return f'<div class="card"><div class="v">weak-to-strong run</div>{body}<div class="k">{html.escape(str(folder))}</div></div>'


def _failed(results: W2SResults) -> str:
    if not results.failed:
        return ""
    items = "".join(f"<pre>{html.escape(f)}</pre>" for f in results.failed)
    return (f'<details class="warn" id="failed-jobs" open><summary>{len(results.failed)} job(s) failed; what they '
            "would have computed is shown as '-'</summary>" + items + "</details>")


def _sentences(results: W2SResults) -> str:
    """Per source and student, PGR in words, whether the weak supervisor is below the ceiling, and
    a sentence for a source whose students all failed (its table row alone would read '-')."""
    items = []
    for s in results.sources:
        if not s.students:
            items.append(f"{s.source}: every student's jobs failed (listed above), so no student has an accuracy "
                         "or a PGR.")
        if s.weak is None or s.ceiling is None:
            items.append(f"{s.source}: the weak supervisor's or the ceiling's jobs failed, so there is no gap to recover.")
            continue
        if s.ceiling.value <= s.weak.value:
            items.append(f"{s.source}: the weak supervisor ({number(s.weak.value)}) is not below the strong ceiling "
                         f"({number(s.ceiling.value)}), so PGR is undefined.")
            continue
        for st in s.students:
            p = st.pgr
            ci = f" [{number(p.low)}, {number(p.high)}]" if p and p.low is not None else ""
            items.append(f"{s.source}, student {st.loss}: PGR {pgr_text(p)}{ci} (weak {number(s.weak.value)}, "
                         f"student {number(st.accuracy.value)}, ceiling {number(s.ceiling.value)}).")
    return "".join(f"<li>{html.escape(i)}</li>" for i in items)


def _de_text(results: W2SResults) -> str:
    if results.run.target_tuned == "none":
        return "This run computed no DE (--target-tuned none): its DE columns are '-'."
    return ("The target-tuned reference is the best of the candidates of --target-tuned "
            f"{results.run.target_tuned}; '-' where a job failed.")


def build_w2s_report(folder: str | Path, out: str | Path) -> Path:
    """The weak-to-strong page of the `genies w2s --out` folder `folder` at `out`, its figure in
    `<out stem>-figures/`."""
    folder, out = Path(folder), Path(out)
    results = load_results(folder)
    examples = load_examples(folder)
    r = results.run
    figure = save_figure(accuracy_bars(results), figures_dir(out), "w2s_accuracy")
    source_head = [("source", True, ""), ("loss", True, "the student's loss"),
                   ("weak", False, "the weak supervisor's pair accuracy on the source's test split, 95 % interval"),
                   ("labels", False, "share of half B whose weak label (first-ranked response) is the preferred one; "
                                     "chance is 1 / responses per prompt"),
                   ("student", False, ""), ("ceiling", False, "the strong model trained on half B's ground truth"),
                   ("PGR", False, "(student - weak) / (ceiling - weak) with its paired 95 % bootstrap interval; "
                                  "undefined when ceiling <= weak"),
                   ("undefined share", False, "share of bootstrap replicates where ceiling <= weak (left out of "
                                              "the interval)"),
                   ("test pairs", False, ""), ("half B", False, "examples the students trained on")]
    target_head = [("source", True, ""), ("target", True, ""), ("loss", True, ""),
                   ("student", False, "generalization accuracy on the target's test split, 95 % interval"),
                   ("ceiling", False, ""), ("student - ceiling", False, ""),
                   ("student DE", False, "(student - zero-shot) / A_tt, as genies run computes DE, 95 % interval"),
                   ("ceiling DE", False, "(ceiling - zero-shot) / A_tt"),
                   ("zero-shot", False, "the strong model's zero-shot accuracy on the target's test split"),
                   ("A_tt", False, "the strong model's target-tuned accuracy on the target's reference (the best "
                                   "candidate's)")]
    sections = [
        _section("overview", "Overview", "What was run, and PGR per source and student in words.",
                 f'<div class="cards">{_card(results, folder)}</div>', _failed(results),
                 f'<div class="support" id="support"><ul>{_sentences(results)}</ul></div>'),
        _section("sources", "Weak, students, ceiling",
                 "Per source: the weak supervisor (trained on half A's ground truth), one strong student per loss "
                 "(trained on half B's weak labels) and the strong ceiling (half B's ground truth), each scored on "
                 "the source's test split with a 95 % interval over prompts. '-' where a job failed. Click a column "
                 "header to sort.",
                 _figure(figure, f"Bars: accuracy; whiskers: 95 % intervals; dashed line: 0.5. Figure files: "
                                 f"{figures_dir(out).name}/w2s_accuracy.png and .svg"),
                 _table("w2s-sources", source_head, _source_rows(results))),
        _section("targets", "Generalization to the targets",
                 "Each student's and the ceiling's accuracy on every target of the source's shifts, and their DE "
                 "(differential elicitation) against the strong model's zero-shot accuracy and target-tuned "
                 "capability, as genies run defines it: does weak supervision change how the reward model "
                 f"generalizes? {_de_text(results)}",
                 _table("w2s-targets", target_head, _target_rows(results))),
        _section("samples", "Wrong weak labels",
                 "Examples of half B whose weak label is not the preferred response: where each student picks the "
                 "truth against its weak label, and where it follows the wrong label. The student's choice and "
                 "probability are derived from its predictions on half B as the weak labels are (its first-ranked "
                 "response, its mean probability of beating each other one); a student may also pick a third "
                 "response, in neither list.",
                 f'<div id="w2s-browser">{_browser(results, examples)}</div>'),
    ]
    nav = [("overview", "Overview"), ("sources", "Sources"), ("targets", "Targets"), ("samples", "Wrong weak labels")]
    data = {"mode": "w2s", "dir": str(folder), "results": asdict(results)}  # the examples are in the page's HTML
    return _page(out, f"genies w2s report: {r.weak} -> {r.strong}",
                 f"weak-to-strong · {r.method} · {', '.join(r.losses)} · {len(results.sources)} source(s)", nav,
                 sections, data)
