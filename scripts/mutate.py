#!/usr/bin/env python3
"""Mutation testing of the core modules with mutmut 3, one module at a time (`make mutate`).

mutmut reads its configuration from the pyproject.toml of the folder it runs in, so each module
gets a scratch folder .mutmut/<module>/ holding a copy of pyproject.toml with its own
[tool.mutmut] section (the module to mutate, the test files that are its tests) and links to
src/ and tests/. mutmut copies both into .mutmut/<module>/mutants/, runs the module's tests once
to learn which test reaches which function, then runs, for each mutant, only the tests that
reach the mutated function. A mutant is killed when one of them fails (or times out).

    python scripts/mutate.py                       # every module
    python scripts/mutate.py metrics archive       # some
    python scripts/mutate.py metrics --resume      # keep earlier verdicts (mutmut's cache)
    python scripts/mutate.py metrics --ref HEAD    # the committed code, not edits in progress
    python scripts/mutate.py probes --ref HEAD --survivors   # after adding tests: rerun only the
                                                   # last run's survivors (and the mutants a stopped
                                                   # run left unchecked), keep the other verdicts
    python scripts/mutate.py pipeline --only src/genies/pipeline/plan.py src/genies/pipeline/jobs.py
                                                   # some files of a module (against all its tests)
    python scripts/mutate.py --list                # the modules and their tests

It prints, per module, killed / total and the surviving mutants (their diffs go to
.mutmut/<module>/survivors.diff); docs/TESTING.md records the scores and why each survivor is
accepted. Results stay in .mutmut/ (ignored by git): `cd .mutmut/metrics && mutmut show NAME`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutmut"

# module -> (files to mutate, as mutmut `only_mutate` globs; the test files that test them, as globs)
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "metrics": (["src/genies/metrics.py"], ["tests/test_metrics.py"]),
    "archive": (["src/genies/data/archive.py"], ["tests/test_archive.py"]),
    "pipeline": (
        ["src/genies/pipeline/*"],
        ["tests/test_pipeline.py", "tests/test_job_store.py", "tests/test_results.py", "tests/test_plan.py",
         "tests/test_report.py", "tests/test_views.py", "tests/test_memory.py", "tests/test_placement.py",
         "tests/test_mix_target.py", "tests/test_ray_executor.py", "tests/test_ray_units.py", "tests/test_config*.py",
         "tests/test_sizing_*.py", "tests/test_executor_*.py", "tests/test_api_*.py", "tests/test_run_dir*.py",
         "tests/test_store_*.py"],
    ),
    "scoring": (
        ["src/genies/models/scoring.py", "src/genies/models/prefix_tree.py"],
        ["tests/test_scoring.py", "tests/test_tree_attention.py", "tests/test_batching.py", "tests/test_prefix_tree.py"],
    ),
    "probes": (
        ["src/genies/interventions/_probes.py"],
        ["tests/test_probes.py", "tests/test_representation_methods.py"],
    ),
}

# Tests left out of every mutant's run, with why: a surviving mutant costs every test that reaches
# it, and each of these takes seconds to tens of seconds (measured 2026-11-26), while in-process
# tests of the same code stay in. `slow` tests (the embedded model) are left out everywhere. A
# mutant only these tests would kill counts as a survivor: the scores err low, never high.
DESELECTED = {
    "tests/test_pipeline.py::test_kill_and_resume_gives_identical_results": "kills a genies run in a subprocess (11 s)",
    "tests/test_pipeline.py::test_concurrent_runs_share_the_cache_safely": "two genies runs in subprocesses (10 s)",
    "tests/test_report.py::test_report_command": "the CLI end to end (4.5 s)",
    "tests/test_report.py::test_several_runs_get_distinct_labels": "three runs and a report (2.4 s)",
    "tests/test_memory.py::test_lora_and_adamw_sizes": "trains a tiny model to measure its peak (2.2 s)",
    "tests/test_ray_executor.py::test_cluster_results_are_byte_identical_to_local": "starts a Ray cluster (49 s)",
    "tests/test_ray_executor.py::test_a_killed_worker_costs_only_its_running_job": "Ray cluster",
    "tests/test_ray_executor.py::test_both_output_paths_and_a_legacy_folder_run_on_the_cluster": "Ray cluster",
    "tests/test_ray_executor.py::test_a_rerun_on_the_cluster_computes_only_what_is_missing": "Ray cluster",
}

# Status names of `mutmut results` that count as killed; the score is killed / (all - skipped).
KILLED = {"killed", "timeout", "caught by type check"}


# no cache folder and no timeout plugin inside the mutants copy (mutmut times mutants out), and no
# `slow` tests. (mutmut itself runs each mutant's tests fastest first and stops at the first failure.)
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:timeout", "-m", "not slow",
               *(arg for test in DESELECTED for arg in ("--deselect", test))]


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare(name: str, *, resume: bool, ref: str | None, only: list[str] | None = None) -> Path:
    """The scratch folder of one module: pyproject.toml with its [tool.mutmut], links to the code."""
    mutate, tests = MODULES[name]
    mutate = only or mutate
    folder = WORK / name
    if not resume and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if ref:  # a committed state, untouched by edits in progress in the working tree
        for part in ("src", "tests"):
            shutil.rmtree(folder / part, ignore_errors=True)
        archive = subprocess.run(["git", "archive", ref, "src", "tests"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    else:
        for link in ("src", "tests"):
            target = folder / link
            if not target.is_symlink():
                target.symlink_to(ROOT / link, target_is_directory=True)
    # globs name the test files helpers add beside a module's; a file the ref predates is left out
    tests = sorted({str(path.relative_to(folder)) for pattern in tests for path in folder.glob(pattern) if path.is_file()})
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", pyproject)  # ours replaces any
    config = (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {toml_list(mutate)}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
    )
    (folder / "pyproject.toml").write_text(pyproject + config)
    return folder


def mutmut(folder: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mutmut")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(
        [str(exe), *args], cwd=folder, env=env, text=True, capture_output=capture, check=False
    )


# `mutmut show` for many mutants in one process (one `mutmut show` each took seconds under load).
SHOW = "import sys\nfrom mutmut.__main__ import show\nfor name in sys.argv[1:]:\n    show.callback(name)\n    print()\n"


def diffs(folder: Path, mutants: list[str]) -> str:
    if not mutants:
        return ""
    return subprocess.run([sys.executable, "-c", SHOW, *mutants], cwd=folder, text=True, capture_output=True,
                          check=False).stdout


def results(folder: Path) -> dict[str, str]:
    """mutant name -> status, from `mutmut results --all true`."""
    out = mutmut(folder, "results", "--all", "true", capture=True).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            found[name] = status
    return found


def mutated_file(mutant: str) -> str:
    """`genies.pipeline.views.xǁPartǁselect__mutmut_2` -> `genies.pipeline.views`."""
    parts = mutant.split(".")
    cut = next(i for i, part in enumerate(parts) if part.startswith(("x_", "xǁ")))
    return ".".join(parts[:cut])


def by_file(verdicts: dict[str, bool]) -> dict[str, dict[str, int]]:
    """Per mutated module: mutants and killed ones, from mutant name -> killed."""
    table: dict[str, dict[str, int]] = {}
    for mutant, killed in verdicts.items():
        row = table.setdefault(mutated_file(mutant), {"total": 0, "killed": 0})
        row["total"] += 1
        row["killed"] += killed
    return dict(sorted(table.items()))


def run_module(name: str, *, resume: bool, max_children: int, ref: str | None,
               survivors_only: bool = False, only: list[str] | None = None) -> dict[str, object]:
    rerun: list[str] = []
    previous: dict = {}
    if survivors_only:
        # The last run's survivors (and the mutants a stopped run left unchecked), in a fresh folder with
        # today's tests and settings; the last run's killed verdicts stand (a test added since cannot
        # revive a mutant an existing test killed, as long as no test was removed or weakened and the
        # mutated files are unchanged, which is checked: mutant numbers follow the code).
        last = WORK / name / "summary.json"
        kept = WORK / f"{name}.last-summary.json"  # survives the fresh folder and a rerun that fails
        source = last if last.is_file() else kept
        if not source.is_file():
            print(f"{name}: no earlier run to take survivors from ({last})", file=sys.stderr)
            return {"module": name, "error": 2}
        previous = json.loads(source.read_text())
        rerun, only = list(previous["survivors"]), previous["mutated"]
        if not rerun:
            print(f"{name}: the last run left no survivors; nothing to rerun", file=sys.stderr)
            return previous
        changed = [f for f, h in previous.get("sources", {}).items() if source_hashes(ref, [f]).get(f) != h]
        if changed:
            print(f"{name}: {', '.join(changed)} changed since the last run, so its mutants are not the same; "
                  f"run the module in full", file=sys.stderr)
            return {"module": name, "error": 2}
        if source != kept:
            shutil.copy(source, kept)
        resume = False
    folder = prepare(name, resume=resume, ref=ref, only=only)
    started = time.monotonic()
    try:
        returncode = mutmut(folder, "run", "--max-children", str(max_children), *rerun).returncode
    except KeyboardInterrupt:  # what was checked still counts
        returncode = 130
    elapsed = time.monotonic() - started
    return summarize(name, folder, returncode, elapsed, ref=ref, only=only, previous=previous, rerun=rerun)


def source_hashes(ref: str | None, patterns: list[str]) -> dict[str, str]:
    """Git blob hash of each mutated file (at `ref`, or in the working tree), to tell whether a
    survivors rerun mutates the same code as the run whose verdicts it keeps."""
    import fnmatch

    listed = subprocess.run(["git", "ls-files", "src"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [f for f in listed.stdout.split() if any(fnmatch.fnmatch(f, g) for g in patterns)]
    if ref:
        hashes = [subprocess.run(["git", "rev-parse", f"{ref}:{f}"], cwd=ROOT, capture_output=True, text=True,
                                 check=False).stdout.strip() for f in files]
    else:
        hashes = [subprocess.run(["git", "hash-object", f], cwd=ROOT, capture_output=True, text=True,
                                 check=False).stdout.strip() for f in files]
    return dict(zip(files, hashes))


def summarize(name: str, folder: Path, returncode: int, elapsed: float, *, ref: str | None,
              only: list[str] | None, previous: dict, rerun: list[str]) -> dict[str, object]:
    """Score the folder's verdicts (merged with the previous run's for a survivors rerun), write
    summary.json and survivors.diff. A run stopped part way still counts what it checked."""
    status = results(folder)
    if not status:
        print(f"{name}: mutmut run failed (exit {returncode}); see the output above", file=sys.stderr)
        return {"module": name, "error": returncode}
    if rerun:
        status = {k: status.get(k, "not checked") for k in rerun}
    unchecked = sum(v == "not checked" for v in status.values())
    if returncode != 0:
        print(f"{name}: mutmut stopped (exit {returncode}) with {unchecked} mutants not checked; they count "
              f"as survivors until `--survivors` reruns them", file=sys.stderr)
    counted = {k: v for k, v in status.items() if v != "skipped"}
    survivors = sorted(k for k, v in counted.items() if v not in KILLED)
    files = by_file({k: v in KILLED for k, v in counted.items()})
    killed, total = len(counted) - len(survivors), len(counted)
    if previous:  # the previous run's killed mutants stand
        killed, total = previous["killed"] + killed, previous["total"]
        for file, row in files.items():
            before = previous.get("by_file", {}).get(file, {"total": row["total"], "killed": 0})
            row["total"], row["killed"] = before["total"], before["killed"] + row["killed"]
        files = {**previous.get("by_file", {}), **files}
    (folder / "survivors.diff").write_text(diffs(folder, [k for k in survivors if counted[k] != "not checked"]))
    summary = {
        "module": name,
        "mutated": only or MODULES[name][0],
        "tests": MODULES[name][1],
        "ref": ref or "working tree",
        "killed": killed,
        "total": total,
        "score": round(killed / total, 4) if total else 0.0,
        "seconds": round(elapsed),
        "rerun": f"{len(rerun)} survivors of the previous run" if rerun else "all mutants",
        "not_checked": unchecked,
        "by_file": files,
        "sources": previous.get("sources") or source_hashes(ref, only or MODULES[name][0]),
        "survivors": {k: counted[k] for k in survivors},
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"{', '.join(MODULES)} (default: all)")
    parser.add_argument("--resume", action="store_true", help="keep the verdicts of the last run")
    parser.add_argument("--survivors", action="store_true",
                        help="rerun only the last run's surviving mutants (after adding tests); keeps the rest")
    parser.add_argument("--only", nargs="+", metavar="PATH",
                        help="mutate only these files of the module (paths from the repository root)")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutants (default 1)")
    parser.add_argument("--ref", help="mutate this git commit's src/ and tests/ (default: the working tree)")
    parser.add_argument("--list", action="store_true", help="print the modules and their tests")
    args = parser.parse_args()
    if args.list:
        for name, (mutate, tests) in MODULES.items():
            print(f"{name}: {' '.join(mutate)}  <-  {' '.join(tests)}")
        return 0
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    if args.only:
        import fnmatch

        if len(args.modules) != 1:
            parser.error("--only needs exactly one module")
        outside = [p for p in args.only if not any(fnmatch.fnmatch(p, g) for g in MODULES[args.modules[0]][0])]
        if outside:
            parser.error(f"--only {' '.join(outside)}: not part of {args.modules[0]} ({' '.join(MODULES[args.modules[0]][0])})")
    if args.ref:  # the commit, recorded in summary.json, not a name that moves on
        args.ref = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=ROOT, capture_output=True,
                                  text=True, check=True).stdout.strip()
    summaries = [run_module(m, resume=args.resume, max_children=args.max_children, ref=args.ref,
                            survivors_only=args.survivors, only=args.only) for m in args.modules or MODULES]
    print()
    failed = False
    for s in summaries:
        if "error" in s:
            failed = True
            print(f"{s['module']}: FAILED to run")
            continue
        print(f"{s['module']}: {s['killed']}/{s['total']} killed = {100 * s['score']:.1f} %  ({s['seconds']} s)")
        for file, row in s.get("by_file", {}).items():  # type: ignore[union-attr]
            print(f"    {file}: {row['killed']}/{row['total']} = {100 * row['killed'] / row['total']:.1f} %")
        if s.get("not_checked"):
            print(f"    not checked: {s['not_checked']} (a stopped run; `--survivors` checks them)")
        for mutant, status in s["survivors"].items():  # type: ignore[union-attr]
            if status != "not checked":
                print(f"    {status}: {mutant}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
