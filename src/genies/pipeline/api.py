"""`genies.run(config)`: plan, execute, compute metrics, write the run directory, return RunResults."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from genies.data.home import DataNotFoundError, genies_home
from genies.data.schema import Distribution
from genies.data.shift import Shift
from genies.models.base import LoadedModel
from genies.pipeline.executor import JobEnv, LocalExecutor, RunLog
from genies._io import write_atomic
from genies.errors import ConfigError, UnknownNameError
from genies.pipeline.config import RunConfig
from genies.pipeline.plan import TARGET_TUNED_BEST, TARGET_TUNED_DEFAULT, Plan, build_plan, configure_methods
from genies.pipeline.results import RunResults, compute_results, write_run
from genies.pipeline.store import JobStore
from genies.provenance import package_versions

TARGET_TUNED_CANDIDATES = {"default": TARGET_TUNED_DEFAULT, "best": TARGET_TUNED_BEST, "none": ()}
PACKAGES = ("genies", "torch", "transformers", "peft", "numpy", "safetensors", "datasets", "scikit-learn")


@dataclass
class ResolvedData:
    shifts: list[Shift]
    load: Callable[[str], Distribution]
    label: str
    data_root: Path | None
    note: str | None = None


def resolve_data(shifts: str | Sequence[Shift], *, data_root: Path | None = None,
                 distributions: Mapping[str, Distribution] | None = None,
                 synthetic_size: int = 64, seed: int = 0, synthetic_if_no_data: bool = False) -> ResolvedData:
    """The shift list and a distribution loader. The data root is `data_root`, else
    `data.shifts.data_root_for`'s: a shift file's own folder when it holds the distributions the
    file names, else the configured one. Without any, a run stops
    with one line, unless `synthetic_if_no_data` asks for the synthetic suite instead (`note` says
    so; `make run` does): a cluster job asking for GENIES-15 must not silently measure something else."""
    from genies.data.loading import load_distribution
    from genies.data.shifts import data_root_for, get_shifts, shift_file_of

    if distributions is not None:
        table = dict(distributions)

        def from_table(name: str) -> Distribution:
            if name not in table:
                raise UnknownNameError("distribution", name, table)
            return table[name]

        listed = list(shifts) if not isinstance(shifts, str) else get_shifts(shifts)
        return ResolvedData(listed, from_table, "custom" if not isinstance(shifts, str) else shifts, None)

    def synthetic(note: str | None) -> ResolvedData:
        from genies.data.synth import ensure_synthetic, synthetic_shifts

        root = Path(ensure_synthetic(synthetic_size, seed))
        return ResolvedData(list(synthetic_shifts()), lambda n: load_distribution(n, root), "synthetic", root, note)

    if isinstance(shifts, str) and shifts == "synthetic":
        return synthetic(None)
    listed = list(shifts) if not isinstance(shifts, str) else get_shifts(shifts)
    label = shifts if isinstance(shifts, str) else "custom"
    if data_root is None:
        shift_file = shift_file_of(shifts)
        try:
            data_root = data_root_for(listed, shift_file)
        except DataNotFoundError as err:
            if synthetic_if_no_data and shift_file is None:
                return synthetic(f"{err} -> running the synthetic suite instead (--synthetic-if-no-data)")
            raise DataNotFoundError(f"{err}; or run the synthetic suite with --shifts synthetic") from None
    root = Path(data_root)
    return ResolvedData(listed, lambda n: load_distribution(n, root), label, root)


def _activation_store() -> Any:
    from genies.models.activations import ActivationStore

    return ActivationStore(genies_home() / "activations")


def _hardware() -> dict[str, Any]:
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _versions() -> dict[str, str | None]:
    return package_versions(PACKAGES)


def run(config: RunConfig, *, lm: LoadedModel | None = None,
        distributions: Mapping[str, Distribution] | None = None,
        executor: LocalExecutor | None = None) -> RunResults:
    """Run `config.interventions` over `config.shifts` and write the run directory `config.out`.

    `lm` runs an already loaded model instead of loading `config.model`; `distributions` replaces
    the data on disk by a table of distributions (tests, notebooks); `executor` is the local
    executor with the display of the caller's choice (the command line's progress bars or plain
    lines; default: rich progress on stderr). Rerunning the same configuration reuses every
    finished job (outputs are cached by content hash under `config.cache_dir`, default
    `genies_home()/jobs`), so an interrupted run resumes and a finished one returns in seconds.
    See docs/running.md for every column of the results.
    """
    started = time.time()
    budget = config.example_budget
    specs = [intervention_spec(name) for name in config.interventions]
    candidates = tuple(config.target_tuned_interventions or TARGET_TUNED_CANDIDATES[config.target_tuned])
    methods = configure_methods([*specs, config.baseline, *candidates], config.preset, config.hparams)
    placement = lm.placement if lm is not None else config.placement
    if placement is not None:  # before data or weights are touched: one line, nothing written
        if lm is None:
            placement.check()
        for method in methods.values():
            method.check_placement(placement)  # e.g. full_fine_tune cannot train --quantize 4bit weights

    data = resolve_data(config.shifts, data_root=config.data_root, distributions=distributions,
                        synthetic_size=budget.synthetic_size, seed=config.seed,
                        synthetic_if_no_data=config.synthetic_if_no_data)
    console = executor.console if executor is not None else Console(stderr=True)
    if data.note:
        console.print(data.note, highlight=False, markup=False)
    if not data.shifts:
        raise ConfigError("the shift list is empty")
    limited: dict[str, Distribution] = {}
    subsets: dict[str, dict[str, list[int]]] = {}  # the example indices each cap kept, for the manifest
    subset_seed = None if config.first_n else config.seed

    def distribution(name: str) -> Distribution:
        if name not in limited:
            full = data.load(name)
            subsets[name] = {split: full.kept_indices(split, cap, subset_seed)
                             for split, cap in (("train", budget.max_train), ("test", budget.max_eval)) if cap}
            limited[name] = full.limited(budget.max_train, budget.max_eval, seed=subset_seed)
        return limited[name]

    names = sorted({n for s in data.shifts for n in (s.source, s.target, s.target_reference)})
    data_hashes = {n: {split: distribution(n).content_hash(split) for split in ("train", "test")} for n in names}

    model = model_access(config, lm)
    model_name, fingerprint, precision, load, folder = model.name, model.fingerprint, model.precision, model.load, \
        model.folder

    def plan_with(configured: Mapping[str, Any]) -> Plan:
        return build_plan(interventions=specs, shifts=data.shifts, methods=configured, seed=config.seed,
                          model_fingerprint=fingerprint, precision=precision,
                          data_hash=lambda n, s: data_hashes[n][s], baseline=config.baseline, target_tuned=candidates,
                          mix_target=config.mix_target)

    plan = plan_with(methods)
    if lm is None:  # a job that cannot fit the run's memory is refused now, in one line, not mid-run
        from genies.pipeline.sizing import check_run, checkpointing_overrides

        recommended = checkpointing_overrides(check_run(plan, config, folder, distribution))
        hparams = {name: dict(values) for name, values in config.hparams.items()}
        for name, values in recommended.items():  # the user's own --set wins over the planner's advice
            for param, value in values.items():
                hparams.setdefault(name, {}).setdefault(param, value)
        if hparams != config.hparams:  # an execution setting: the rebuilt plan has the same job keys
            methods = configure_methods([*specs, config.baseline, *candidates], config.preset, hparams)
            plan = plan_with(methods)

    runner = job_executor(config, lm, model, executor)
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    store = JobStore(config.cache_dir)
    log = RunLog(out / "log.txt")
    argv = _command_line()
    log.write(f"start: {' '.join(argv)} ({plan.n_jobs} jobs: {len(plan.fits)} fits, {len(plan.predicts)} predictions)")
    env = JobEnv(load_model=load, distribution=distribution, store=store, seed=config.seed,
                 activation_store=_activation_store())
    try:
        records = runner.execute(plan, env, log)
    except KeyboardInterrupt:
        log.write("interrupted: finished jobs are kept; rerun the same command to resume")
        raise

    failed = [{"job": r.label, "error": r.error or ""} for r in records if r.status == "failed"]
    run_info = {
        "model": model_name, "model_fingerprint": fingerprint, "preset": config.preset,
        "budget": config.budget or config.preset, "seed": config.seed, "shifts": data.label,
        "interventions": [methods[s].label for s in specs], "target_tuned": config.target_tuned,
        "target_tuned_candidates": list(candidates), "baseline_intervention": config.baseline,
        "max_train": budget.max_train, "max_eval": budget.max_eval,
        "examples": "first N" if config.first_n else f"random subset seeded by {config.seed}",
        "precision": dict(precision), "placement": placement.describe() if placement else None,
        "hyperparameters": plan.hparams, "mix_target": list(config.mix_target),
        "hparams_file": str(config.hparams_file) if config.hparams_file else None,
    }
    results = write_run(out, compute_results(plan, store, distribution, config.seed, run_info, failed))
    _write_manifest(out, plan, records, run_info, data, data_hashes, subsets, argv, started)
    log.write(f"finish: {len(results.rows)} rows, {len(failed)} failed jobs, {time.time() - started:.1f}s")
    return results


@dataclass(frozen=True)
class ModelAccess:
    """The run's model as jobs see it: its name, fingerprint and precision plan the jobs (no
    weights needed), `load()` loads it when a job first runs, `folder` is None for a given model."""

    name: str
    fingerprint: str
    precision: Mapping[str, Any]
    load: Callable[[], LoadedModel]
    folder: Path | None
    placement: Any


def model_access(config: RunConfig, lm: LoadedModel | None = None) -> ModelAccess:
    """`lm` as it is, else `config.model` fingerprinted now and loaded by `load()` on first use."""
    if lm is not None:
        return ModelAccess(lm.name, lm.fingerprint, lm.precision_key(), lambda: lm, None, lm.placement)
    from genies.models.loading import load_folder, model_fingerprint

    folder, fingerprint = model_fingerprint(config.model, trust_remote_code=config.trust_remote_code)
    placement = config.placement

    def load() -> LoadedModel:
        return load_folder(folder, name=config.model, trust_remote_code=config.trust_remote_code,
                           placement=placement)
    return ModelAccess(config.model, fingerprint, placement.precision_key(), load, folder, placement)


def job_executor(config: RunConfig, lm: LoadedModel | None, model: ModelAccess,
                 executor: LocalExecutor | None) -> Any:
    """The local executor (the caller's, else one with rich progress), or with `--executor ray` a
    Ray executor showing the same display; joining the cluster happens now, so an unreachable one
    fails before anything is written."""
    runner = executor or LocalExecutor()
    if config.executor != "ray":
        return runner
    from genies.pipeline.ray_executor import ModelRecipe, RayExecutor

    recipe = (ModelRecipe.of(lm) if lm is not None else
              ModelRecipe.for_run(model.folder, model.name, config.trust_remote_code, model.placement,
                                  model.fingerprint))
    return RayExecutor(recipe, config.ray_address, plain=runner.plain, console=runner.console)


def intervention_spec(name: str) -> str:
    """A name or spec as it is; a folder written for the original GENIES (it holds eval.py)
    becomes the spec `legacy:<absolute folder>`, which any process resolves."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / "eval.py").is_file():
        return f"legacy:{path.resolve()}"
    return name


def _command_line() -> list[str]:
    """The command as typed (`genies run ...`), or the Python process's argv for library use."""
    if Path(sys.argv[0]).name == "genies":
        return ["genies", *sys.argv[1:]]
    return list(sys.argv)


def _write_manifest(out: Path, plan: Plan, records: Sequence[Any], run_info: Mapping[str, Any], data: ResolvedData,
                    data_hashes: Mapping[str, Any], subsets: Mapping[str, Any], argv: Sequence[str],
                    started: float) -> None:
    import json

    doc = {
        "genies_version": _versions()["genies"],
        "command_line": list(argv),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "finished": datetime.now(timezone.utc).isoformat(),
        "wall_seconds": round(time.time() - started, 3),
        "run": dict(run_info),
        "seeds": {"run": run_info["seed"], "metrics": run_info["seed"], "jobs": run_info["seed"]},
        "hyperparameters": plan.hparams,
        "data_root": str(data.data_root) if data.data_root else None,
        "data_hashes": data_hashes,
        "example_indices": subsets,
        "shifts": [asdict(s) for s in data.shifts],
        "packages": _versions(),
        "hardware": _hardware(),
        "jobs": [{"key": r.key, "kind": r.kind, "label": r.label, "status": r.status,
                  "seconds": round(r.seconds, 3), "error": r.error} for r in records],
    }
    write_atomic(out / "manifest.json", json.dumps(doc, indent=1) + "\n")
