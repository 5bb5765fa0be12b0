"""`genies data validate | list | show`: check, count and read preference data.

`validate` prints every problem in every file plus the quirk audit, because a researcher fixing
a dataset wants the whole list at once and needs to know about leakage before trusting a number.
Missing data or an unknown name raises a `GeniesError` that says what to run; the CLI prints it as
one line (exit 2), never a traceback.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from genies.commands._format import Column, OutputFormat, format_option, print_table, stdout_console, write_records
from genies.data.audit import audit_distribution, audit_identical_distributions, length_cue
from genies.data.home import find_data_root
from genies.data.loading import check_hf_split, is_hf_folder, list_distributions, load_distribution
from genies.data.schema import SPLITS, Distribution
from genies.data.validation import ERROR, Finding, check_distribution_folder, errors, is_distribution_folder
from genies.errors import UnknownNameError
from genies.rounding import count, number

console = Console(soft_wrap=True)  # one finding per line, so output greps cleanly
err_console = Console(stderr=True, soft_wrap=True)


def _distribution_folders(paths: list[Path]) -> tuple[list[Path], list[Finding]]:
    """Expand each PATH: a distribution folder is itself, a folder of them is its children."""
    folders: list[Path] = []
    findings: list[Finding] = []
    for path in paths:
        if is_distribution_folder(path) or is_hf_folder(path):
            folders.append(path)
        elif path.is_dir() and (children := [path / n for n in list_distributions(path)]):
            folders.extend(children)
        else:
            findings.append(Finding(str(path), "not a distribution folder (no train/test .json or .jsonl) "
                                               "and no distribution folders inside"))
    return folders, findings


def _check_hf(folder: Path) -> tuple[Distribution | None, list[Finding]]:
    import datasets

    try:
        dataset_dict = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as err:
        return None, [Finding(str(folder), f"cannot read the saved Hugging Face dataset: {err}")]
    splits, findings = {}, []
    for split in SPLITS:
        splits[split], problems = check_hf_split(dataset_dict, split, str(folder))
        findings.extend(problems)
    if errors(findings):
        return None, findings
    dist = Distribution.from_examples(folder.name, splits["train"], splits["test"], {"id": folder.name}, folder)
    return dist, findings


def validate(
    paths: list[Path] = typer.Argument(None, help="Distribution folders, or folders of them (default: the installed data)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary line and errors."),
) -> None:
    """Report every problem in every file and the known data quirks; exit 1 on any error."""
    folders, findings = _distribution_folders(paths or [find_data_root()])
    loaded: list[Distribution] = []
    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("validating", total=len(folders))
        for folder in folders:
            # the distribution holds the splits just parsed, so the audit does not read the files twice
            dist, problems = _check_hf(folder) if is_hf_folder(folder) else check_distribution_folder(folder)
            findings.extend(problems)
            if dist is not None:
                loaded.append(dist)
                findings.extend(audit_distribution(dist))
            progress.advance(task)
        findings.extend(audit_identical_distributions(loaded))
    n_errors = len(errors(findings))
    warnings = [f for f in findings if f.severity != ERROR]
    for f in findings:
        if f.severity == ERROR:
            console.print(f"[red]error[/red]: {escape(f.where)}: {escape(f.problem)}")
        elif not quiet:
            console.print(f"[yellow]warning[/yellow]: {escape(f.where)}: {escape(f.problem)}")
    kinds = Counter(f.problem.split(":", 1)[0] for f in warnings)
    detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})" if kinds else ""
    colour = "red" if n_errors else "green"
    console.print(f"[{colour}]{len(folders)} distributions checked: {n_errors} errors, "
                  f"{len(warnings)} warnings{detail}[/{colour}]")
    if n_errors:
        raise typer.Exit(1)


def _counts(dist: Distribution) -> dict[str, object]:
    row: dict[str, object] = {"name": dist.id}
    for split in SPLITS:
        examples = dist.split(split)
        sizes = sorted({len(ex.responses) for ex in examples})
        row[f"{split}_prompts"] = len(examples)
        row[f"{split}_responses_per_prompt"] = sizes[0] if len(sizes) == 1 else sizes
        row[f"{split}_pairs"] = sum(len(ex.responses) - 1 for ex in examples)
    cue = length_cue(dist.test)
    row["test_preferred_longest"] = cue.preferred_longest
    row["test_preferred_shortest"] = cue.preferred_shortest
    return row


def _responses(sizes: int | list[int]) -> str:
    """Responses per prompt: one count, or the range when prompts differ (`sizes` is sorted)."""
    return count(sizes) if isinstance(sizes, int) else f"{sizes[0]}-{sizes[-1]}"


LIST_COLUMNS = (
    Column("name", lambda r: escape(str(r["name"]))),
    Column("train", lambda r: count(r["train_prompts"]), kind="number"),
    Column("test", lambda r: count(r["test_prompts"]), kind="number"),
    Column("resp.", lambda r: _responses(r["test_responses_per_prompt"]), kind="number", drop=2),
    Column("train pairs", lambda r: count(r["train_pairs"]), kind="number", drop=3),
    Column("test pairs", lambda r: count(r["test_pairs"]), kind="number"),
    Column("longest+", lambda r: number(r["test_preferred_longest"]), kind="number", drop=1),
    Column("shortest+", lambda r: number(r["test_preferred_shortest"]), kind="number", drop=1),
)
LIST_NOTE = ("train, test: prompts per split; resp.: responses per test prompt; pairs: (preferred, dispreferred) "
             "pairs scored; longest+ / shortest+: share of test prompts whose preferred response is the longest / "
             "shortest")


def list_(
    fmt: OutputFormat = format_option(),
    as_json: bool = typer.Option(False, "--json", hidden=True, help="Same as --format json (kept for scripts)."),
) -> None:
    """Counts per distribution: prompts, responses per prompt and evaluation pairs per split,
    and how often the preferred test response is the longest or the shortest."""
    root = find_data_root()
    rows = []
    with Progress(console=err_console, transient=True) as progress:
        names = list_distributions(root)
        task = progress.add_task("reading", total=len(names))
        for name in names:
            rows.append(_counts(load_distribution(name, root)))
            progress.advance(task)
    if as_json or fmt is not OutputFormat.table:
        write_records(OutputFormat.json if as_json else fmt, rows)
        return
    print_table(stdout_console(), f"{len(rows)} distributions in {escape(str(root))}", LIST_COLUMNS, rows,
                [LIST_NOTE])


def show(
    name: str = typer.Argument(..., help="A distribution name (or folder)."),
    split: str = typer.Option("test", "--split", help="train or test."),
    n: int = typer.Option(3, "-n", help="How many examples."),
) -> None:
    """Print readable examples: the prompt, each response, and which one is preferred."""
    if split not in SPLITS:
        raise UnknownNameError("split", split, SPLITS)
    root = None if Path(name).exists() else find_data_root()
    dist = load_distribution(name, root)
    examples = dist.split(split)
    console.print(f"[bold]{escape(dist.id)}[/bold] {split}: {len(examples)} examples, showing {min(n, len(examples))}")
    for i, ex in enumerate(examples[:n]):
        console.rule(f"example {i}")
        console.print("[bold]prompt[/bold]")
        console.print(escape(ex.prompt), highlight=False)
        for j, response in enumerate(ex.responses):
            mark = "[green]+ preferred[/green]" if j == ex.preferred else "[red]- dispreferred[/red]"
            console.print(f"[bold]response {j}[/bold] {mark}")
            console.print(escape(response), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("list")(list_)
    app.command("show")(show)
