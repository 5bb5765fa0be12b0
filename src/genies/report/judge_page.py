"""`genies report` for `genies judge` folders: one judge's page (the reward-bench-style tables of
judge.json) or, for several, a leaderboard page. Both use the report's page shell, styles and
figure style, write their figures as PNG and SVG beside the HTML, and embed what they show as
JSON (`genies-data`) so a script can read the page's numbers without parsing tables.

Numbers are shown by the terminal's one rounding rule (2 decimals); intervals are 95 %. Tables
are written here, not by a script: the page's only script sorts them by a clicked column.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genies._io import write_atomic
from genies.judging import JudgeResults
from genies.pipeline.run_dir import plain_json
from genies.report import judge_plots
from genies.report.build import figures_dir
from genies.report.leaderboard import (
    JudgeComparison,
    JudgeRun,
    Pairing,
    comparisons,
    coverage_warning,
    load_judges,
    ranked,
)
from genies.report.page import render_page
from genies.report.plots import save_figure
from genies.report.support import interval_text, signed
from genies.rounding import number

SCRIPT = "judge.js"
BEYOND = ' class="beyond"'


def _td(value: float | None, low: float | None = None, high: float | None = None, *, diff: bool = False,
        extra: str = "") -> str:
    """A numeric cell: the value (signed for a difference) with its interval in grey, and the
    exact value in data-v for sorting; "-" and an empty data-v for a missing or NaN value."""
    if value is None or not math.isfinite(value):
        return f'<td data-v="">-{extra}</td>'
    ci = ""
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        ci = f' <span class="ci">{interval_text(low, high) if diff else f"[{number(low)}, {number(high)}]"}</span>'
    cls = (' class="pos"' if value > 0 else ' class="neg"' if value < 0 else "") if diff else ""
    return f'<td{cls} data-v="{value!r}">{(signed if diff else number)(value)}{ci}{extra}</td>'


def _text(value: str) -> str:
    return f'<td class="t">{html.escape(value)}</td>'


def _table(table_id: str, head: Iterable[tuple[str, bool, str]], rows: Iterable[str]) -> str:
    """A sortable table; `head` is (label, is_text, tooltip) per column, `rows` the <tr>s."""
    ths = "".join(f'<th class="{"t" if text else ""}" title="{html.escape(tip)}">{html.escape(label)}</th>'
                  for label, text, tip in head)
    body = "".join(rows) or '<tr><td class="empty t" colspan="99">no data</td></tr>'
    return (f'<div class="tablewrap fit"><table class="summary sortable" id="{table_id}"><thead><tr>{ths}</tr>'
            f"</thead><tbody>{body}</tbody></table></div>")


def _section(anchor: str, title: str, note: str, *content: str) -> str:
    return (f'<section id="{anchor}"><h2>{html.escape(title)}</h2><p class="note">{html.escape(note)}</p>'
            + "".join(content) + "</section>")


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _page(out: Path, title: str, subtitle: str, nav: Sequence[tuple[str, str]], sections: Sequence[str],
          data: dict[str, Any]) -> Path:
    links = "".join(f'<a href="#{anchor}">{html.escape(text)}</a>' for anchor, text in nav)
    body = (f'<header class="top"><h1>{html.escape(title)}</h1><div class="sub">{html.escape(subtitle)}</div>'
            f"<nav>{links}</nav></header><main>{''.join(sections)}</main>")
    write_atomic(out, render_page(title, body, plain_json(data), {}, script=SCRIPT))
    return out


def _card(judge: JudgeRun) -> str:
    r = judge.results
    facts = [("spec", r.spec), ("seed", r.seed), ("max-eval", r.max_eval if r.max_eval is not None else "all"),
             *((f"model {k + 1}" if len(r.models) > 1 else "model",
                f"{m.get('model')} ({str(m.get('fingerprint', ''))[:12]})") for k, m in enumerate(r.models)),
             ("settings", ", ".join(f"{k}={v}" for k, v in r.hyperparameters.items())),
             ("versions", ", ".join(f"{k} {v}" for k, v in r.versions.items() if v))]
    body = "".join(f'<div><span class="k">{html.escape(k)}:</span> <span class="v">{html.escape(str(v))}</span></div>'
                   for k, v in facts if v not in (None, ""))
    return (f'<div class="card"><div class="v">{html.escape(judge.label)}</div>{body}'
            f'<div class="k">{html.escape(str(judge.path))}</div></div>')


def _failed(judges: Sequence[JudgeRun]) -> str:
    failed = [(j.label, f) for j in judges for f in j.results.failed]
    if not failed:
        return ""
    several = len(judges) > 1
    items = "".join(f"<pre>{html.escape(label + ' · ' if several else '')}{html.escape(f.distribution)}\n"
                    f"{html.escape(f.error)}</pre>" for label, f in failed)
    return (f'<details class="warn" id="failed-distributions" open><summary>{len(failed)} distribution(s) could not '
            f"be judged; they are missing from the tables and means</summary>{items}</details>")


# ----- one judge -------------------------------------------------------------------------------


def _distribution_rows(r: JudgeResults, bias: bool) -> list[str]:
    rows = []
    for d in r.distributions:
        flag = '<span class="pill flag">length cue</span>' if d.length_cue_flag else ""
        rows.append(
            f"<tr>{_text(d.distribution)}{_td(d.accuracy, d.ci_low, d.ci_high)}"
            f'<td data-v="{d.pairs}">{d.pairs}</td><td data-v="{d.prompts}">{d.prompts}</td>'
            f"{_td(d.length_longer_accuracy)}{_td(d.length_shorter_accuracy)}"
            + (_td(d.position_bias, diff=True) if bias else "")
            + f'<td class="t">{flag}</td>{_text(", ".join(d.categories))}{_text(", ".join(d.families))}</tr>')
    return rows


def _overall_sentence(judge: JudgeRun) -> str:
    r, overall = judge.results, judge.scope("all")
    if overall is None:
        return "No distribution could be judged (see the failures above)."
    text = (f"Mean accuracy over {overall.distributions} distribution(s): {number(overall.mean_accuracy)} "
            f"[{number(overall.ci_low)}, {number(overall.ci_high)}] (95 % interval over distributions); "
            f"preferring the longer response: {number(overall.mean_length_longer_accuracy)}, the shorter: "
            f"{number(overall.mean_length_shorter_accuracy)}.")
    if r.position_bias is not None:
        text += (f" Position bias over every presentation: {signed(r.position_bias)} (P(the first response shown "
                 "wins) - 0.5; 0 is none).")
    return text


def build_judge_report(folder: str | Path, out: str | Path) -> Path:
    """One judge folder's page at `out`, its figure in `<out stem>-figures/`."""
    (judge,) = load_judges([Path(folder)])
    out = Path(out)
    r = judge.results
    figure = save_figure(judge_plots.accuracy_by_distribution(judge), figures_dir(out), "accuracy_by_distribution")
    bias = any(d.position_bias is not None for d in r.distributions)
    dist_head = [("distribution", True, ""), ("accuracy", False, "pair accuracy on the test split, 95 % interval "
                                              "over prompts"), ("pairs", False, ""), ("prompts", False, ""),
                 ("prefer longer", False, "accuracy of preferring the longer response"),
                 ("prefer shorter", False, "accuracy of preferring the shorter response")]
    if bias:
        dist_head.append(("position bias", False, "P(the first response shown wins) - 0.5, over both orders"))
    dist_head += [("length cue", True, "a length-only rule beats 0.5 by more than 0.2"), ("categories", True, ""),
                  ("families", True, "")]
    scope_rows = [f"<tr>{_text(s.scope)}{_td(s.mean_accuracy, s.ci_low, s.ci_high)}"
                  f'<td data-v="{s.distributions}">{s.distributions}</td>'
                  f"{_td(s.mean_length_longer_accuracy)}{_td(s.mean_length_shorter_accuracy)}</tr>" for s in r.scopes]
    shift_rows = [f"<tr>{_text(f'{s.source} → {s.target}')}{_text(s.category)}{_text(s.family)}"
                  f"{_td(s.source_accuracy)}{_td(s.target_accuracy)}{_td(s.change, diff=True)}</tr>" for s in r.shifts]
    sections = [
        _section("overview", "Overview", "The judge, what it was judged on, and its accuracy over all distributions.",
                 f'<div class="support"><p id="overall">{html.escape(_overall_sentence(judge))}</p></div>',
                 f'<div class="cards">{_card(judge)}</div>', _failed([judge]),
                 _figure(figure, f"Figure files: {figures_dir(out).name}/accuracy_by_distribution.png and .svg")),
        _section("distributions", "Accuracy per distribution",
                 "The judge's pair accuracy on each distribution's test split (exact ties settled by the run's seeded "
                 "coin) with its 95 % bootstrap interval over prompts, beside the accuracy of preferring the longer "
                 "or the shorter response. Click a column header to sort.",
                 _table("distributions-table", dist_head, _distribution_rows(r, bias))),
        _section("scopes", "Mean accuracy by category and family",
                 "The mean over the distributions of each scope (a distribution counts in every category and family "
                 "of the shifts it belongs to), with a 95 % bootstrap interval over those distributions.",
                 _table("scopes-table", [("scope", True, ""), ("mean accuracy", False, ""), ("distributions", False, ""),
                                         ("prefer longer", False, ""), ("prefer shorter", False, "")], scope_rows)),
        _section("shifts", "Across shifts",
                 "For each shift whose source and target were both judged: the accuracy on each and the change "
                 "(target - source). Nothing is fitted, so the change is the judge's generalization across the shift.",
                 _table("shifts-table", [("shift", True, ""), ("category", True, ""), ("family", True, ""),
                                         ("source", False, ""), ("target", False, ""), ("change", False, "")],
                        shift_rows)),
    ]
    nav = [("overview", "Overview"), ("distributions", "Distributions"), ("scopes", "Categories & families"),
           ("shifts", "Shifts")]
    data = {"mode": "judge", "label": judge.label, "dir": str(judge.path), "judge": r.to_json()}
    return _page(out, f"genies judge report: {judge.label}", "GENIES external-judge report · 1 judge", nav, sections,
                 data)


# ----- several judges --------------------------------------------------------------------------


def comparison_sentence(c: JudgeComparison) -> str:
    """`rm:a vs rm:b: +0.20 [+0.05, +0.35] over 2 distributions (paired over 80 prompts): rm:a is
    more accurate beyond noise`, or why there is no verdict."""
    if c.pairing is Pairing.NONE:
        return f"{c.a} vs {c.b}: no distribution judged by both on the same examples; not compared"
    how = (f"paired over {c.prompts} prompts" if c.pairing is Pairing.PROMPTS
           else "per-distribution accuracies only: a folder has no judge-outcomes.json")
    head = f"{c.a} vs {c.b}: {signed(c.difference)} "
    head += (interval_text(c.ci_low, c.ci_high) + " " if number(c.ci_low) != "-" else "(no interval) ")
    head += f"over {c.distributions} distribution(s) ({how})"
    if not c.beyond_noise:
        return f"{head}: not beyond noise"
    winner, loser = (c.a, c.b) if c.difference > 0 else (c.b, c.a)
    return f"{head}: {winner} is more accurate than {loser} beyond noise"


def _scope_names(judges: Sequence[JudgeRun], kind: str) -> list[str]:
    return sorted({s.scope for j in judges for s in j.results.scopes if s.scope.startswith(kind + ":")})


def _leaderboard_rows(judges: Sequence[JudgeRun], versus: dict[str, JudgeComparison], scopes: Sequence[str]
                      ) -> list[str]:
    rows = []
    for rank, j in enumerate(judges, start=1):
        overall = j.scope("all")
        c = versus.get(j.label)
        if c is None:
            vs = '<td data-v="0">top</td>' if rank == 1 else _td(None)
        else:
            mark = ' <span class="pill flag">beyond noise</span>' if c.beyond_noise else ""
            vs = _td(-c.difference, -c.ci_high, -c.ci_low, diff=True, extra=mark)
        cells = "".join(_td(s.mean_accuracy, s.ci_low, s.ci_high) if (s := j.scope(name)) else _td(None)
                        for name in scopes)
        n = overall.distributions if overall else 0
        rows.append(f'<tr data-judge="{html.escape(j.label)}"{BEYOND if c and c.beyond_noise else ""}>'
                    f'<td data-v="{rank}">{rank}</td>{_text(j.label)}'
                    f"{_td(j.accuracy, overall.ci_low if overall else None, overall.ci_high if overall else None)}"
                    f'<td data-v="{n}">{n}</td>{vs}{cells}</tr>')
    return rows


def _per_distribution_rows(judges: Sequence[JudgeRun]) -> list[str]:
    names = list(dict.fromkeys(d.distribution for j in judges for d in j.results.distributions))
    rows = []
    for name in names:
        cells = "".join(_td(d.accuracy, d.ci_low, d.ci_high) if (d := j.distribution(name)) else _td(None)
                        for j in judges)
        rows.append(f"<tr>{_text(name)}{cells}</tr>")
    return rows


def _data(judges: Sequence[JudgeRun], compared: Sequence[JudgeComparison]) -> dict[str, Any]:
    return {
        "mode": "leaderboard",
        "judges": [{"rank": k + 1, "label": j.label, "dir": str(j.path), "spec": j.results.spec,
                    "accuracy": j.accuracy, "scopes": [asdict(s) for s in j.results.scopes],
                    "distributions": [{"distribution": d.distribution, "accuracy": d.accuracy, "ci_low": d.ci_low,
                                       "ci_high": d.ci_high} for d in j.results.distributions]}
                   for k, j in enumerate(judges)],
        "comparisons": [{**asdict(c), "pairing": c.pairing.value, "beyond_noise": c.beyond_noise} for c in compared],
    }


def build_leaderboard(folders: Sequence[str | Path], out: str | Path) -> Path:
    """Several judge folders ranked on one page at `out`, its figure in `<out stem>-figures/`."""
    out = Path(out)
    judges = ranked(load_judges([Path(f) for f in folders]))
    compared = comparisons(judges)
    versus = {c.b: c for c in compared}
    categories, families = _scope_names(judges, "category"), _scope_names(judges, "family")
    figure = save_figure(judge_plots.leaderboard(judges, categories), figures_dir(out), "leaderboard")
    scope_head = [(s.split(":", 1)[1].replace("_", " ") + (" (family)" if s in families else ""), False,
                   f"mean accuracy over the {s} distributions, 95 % interval over them") for s in (*categories, *families)]
    head = [("rank", False, ""), ("judge", True, ""),
            ("mean accuracy", False, "over every distribution the judge was judged on; 95 % interval over them"),
            ("distributions", False, ""),
            ("vs top", False, "this judge's accuracy minus the top judge's, over the distributions both judged on the "
                              "same examples, with its paired 95 % interval"), *scope_head]
    warning = coverage_warning(judges)
    sentences = "".join(f"<li{BEYOND if c.beyond_noise else ''}>{html.escape(comparison_sentence(c))}</li>"
                        for c in compared)
    beyond = sum(c.beyond_noise for c in compared)
    verdict = (f"{judges[0].label} is first; it is more accurate than {beyond} of the {len(compared)} other judge(s) "
               "beyond noise." if compared else "One judge: nothing to compare.")
    sections = [
        _section("leaderboard", "Leaderboard",
                 "One row per judge, best mean accuracy first. 'vs top' is the judge's accuracy minus the top judge's "
                 "over the distributions both judged on the same examples, with a paired 95 % interval (distributions "
                 "and, within each, prompts resampled, the same draws for both judges); 'beyond noise' marks an "
                 "interval that excludes 0. The category and family columns are means over those distributions.",
                 f'<div class="support" id="support"><div class="v">What these runs can support</div>'
                 f"<p>{html.escape(verdict)}</p><ul>{sentences}</ul></div>",
                 f'<p class="warn" id="coverage">{html.escape(warning)}</p>' if warning else "", _failed(judges),
                 _table("leaderboard-table", head, _leaderboard_rows(judges, versus, (*categories, *families))),
                 _figure(figure, f"Mean accuracy with its 95 % interval over distributions, all of them and per "
                                 f"category. Figure files: {figures_dir(out).name}/leaderboard.png and .svg")),
        _section("distributions", "Accuracy per distribution",
                 "Each judge's accuracy on each distribution's test split with its 95 % interval over prompts; '-' "
                 "where the judge was not judged on it (or failed).",
                 _table("distributions-table", [("distribution", True, ""), *((j.label, False, "") for j in judges)],
                        _per_distribution_rows(judges))),
        _section("judges", "The judges", "What each folder holds: the judge, its checkpoints and settings.",
                 f'<div class="cards">{"".join(_card(j) for j in judges)}</div>'),
    ]
    nav = [("leaderboard", "Leaderboard"), ("distributions", "Distributions"), ("judges", "Judges")]
    return _page(out, "genies judge leaderboard: " + " vs ".join(j.label for j in judges),
                 f"GENIES external-judge leaderboard · {len(judges)} judges", nav, sections, _data(judges, compared))


def build_judge_pages(folders: Sequence[str | Path], out: str | Path) -> Path:
    """One folder: its judge page; several: the leaderboard."""
    return build_judge_report(folders[0], out) if len(folders) == 1 else build_leaderboard(folders, out)
