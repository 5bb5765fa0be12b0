"""`genies report RUN_DIR [RUN_DIR ...] --out report.html [--reference DIR] [--serve]`.

Writes one self-contained HTML report (it opens offline, from a file or an e-mail attachment)
and the same figures as PNG and SVG beside it; several run folders compare models or presets in
one page. `--serve` shows it on 127.0.0.1 only, for machines where opening a file is awkward.

`genies judge` folders get their own pages (`genies.report.judge_page`): one folder its judge
report (default DIR/report.html), several a leaderboard (default ./leaderboard.html: it belongs
to none of them). Run and judge folders are never mixed in one page. A `genies w2s` folder (it
holds w2s.json) gets the weak-to-strong page (`genies.report.w2s_page`), on its own.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)


def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run folders written by `genies run`, or folders "
                                          "written by `genies judge` (several: a leaderboard)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="The HTML file to write (default: report.html in "
                                    "the run folder; compare-report.html in the first one for several runs; "
                                    "leaderboard.html in the current folder for several judge folders)."),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Published results in the generalization_metrics layout: DIR/<model>/<intervention>/{GENIES,all}.csv.",
    ),
    serve_: bool = typer.Option(
        False, "--serve", help="Serve the report on 127.0.0.1 after writing it (Ctrl-C stops)."
    ),
    port: int = typer.Option(0, "--port", help="Port for --serve (0: any free port)."),
    serve_seconds: float | None = typer.Option(None, "--serve-seconds", help="Stop serving after this many seconds."),
) -> None:
    """Write the HTML report (table, plots, calibration, sample browser) and its PNG/SVG figures."""
    # A run or reference folder that cannot be read raises a GeniesError naming the file, and so
    # does a file the system refuses to read or write: `genies` prints it as one line.
    from genies.errors import ConfigError
    from genies.report.leaderboard import judge_folders
    from genies.weak_to_strong.files import is_w2s_folder

    w2s = [d for d in run_dirs if is_w2s_folder(d)]
    if w2s and (len(run_dirs) > 1 or reference is not None):
        raise ConfigError(f"genies report: {w2s[0]} is a `genies w2s` folder; its page shows it alone, without "
                          "--reference")
    judges = judge_folders(run_dirs)
    if judges and reference is not None:
        raise ConfigError("--reference compares `genies run` results with published DEs; a judge folder has none")
    if out is None:  # next to the run, so reporting another run never overwrites this one
        if judges and len(run_dirs) > 1:
            out = Path("leaderboard.html")
        else:
            out = run_dirs[0] / ("report.html" if len(run_dirs) == 1 else "compare-report.html")
    kind = "judge folder(s)" if judges else "run(s)"
    with console.status(f"building the report for {len(run_dirs)} {kind}"):
        from genies.report.build import build_report, figures_dir  # matplotlib: only when used
        from genies.report.judge_page import build_judge_pages
        from genies.report.load import ReportError
        from genies.report.serve import serve, served_files
        from genies.report.w2s_page import build_w2s_report

        try:
            if w2s:
                path = build_w2s_report(run_dirs[0], out)
            else:
                path = build_judge_pages(run_dirs, out) if judges else build_report(run_dirs, out,
                                                                                     reference_dir=reference)
        except OSError as err:
            raise ReportError(err.filename or out, err.strerror or str(err)) from err
    console.print(f"report: {escape(str(path.resolve()))}")
    console.print(f"figures (PNG + SVG): {escape(str(figures_dir(path).resolve()))}")
    if serve_:
        serve(
            served_files(path, figures_dir(path)),
            port=port,
            seconds=serve_seconds,
            announce=lambda url: console.print(f"serving on {url}  (127.0.0.1 only; Ctrl-C stops)"),
        )


def register(app: typer.Typer) -> None:
    app.command("report")(report)
