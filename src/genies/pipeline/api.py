"""`genies.run(...)`: plan, execute, compute metrics, write the run directory, return RunResults."""

from __future__ import annotations

import importlib.metadata
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

from genies.data.home import DataNotFoundError, find_data_root, genies_home
from genies.data.schema import Distribution
from genies.data.shift import Shift
from genies.models.base import LoadedModel
from genies.pipeline.executor import JobEnv, LocalExecutor, RayExecutor, RunLog
from genies.pipeline.plan import BASELINE, TARGET_TUNED_BEST, TARGET_TUNED_DEFAULT, Plan, build_plan
from genies.pipeline.results import RunResults, compute_results
from genies._io import write_atomic
from genies.pipeline.store import JobStore

# Example caps per preset. `cpu` keeps `make run` (GENIES-15 x {mms, lora} on the embedded
# 135M model) inside its 20-minute budget on two cores; `paper` uses every example.
PRESETS: dict[str, dict[str, int | None]] = {
    "cpu": {"max_train": 32, "max_eval": 16, "synthetic_size": 64},
    "paper": {"max_train": None, "max_eval": None, "synthetic_size": 600},
}
TARGET_TUNED_MODES = {"default": TARGET_TUNED_DEFAULT, "best": TARGET_TUNED_BEST}
PACKAGES = ("genies", "torch", "transformers", "peft", "numpy", "safetensors", "datasets", "scikit-learn")


class RunConfigError(ValueError):
    """A run argument is invalid; the message lists the valid choices."""


@dataclass
class ResolvedData:
    shifts: list[Shift]
    load: Callable[[str], Distribution]
    label: str
    data_root: Path | None
    note: str | None = None


def resolve_data(shifts: str | Sequence[Shift], *, data_root: Path | None = None,
                 distributions: Mapping[str, Distribution] | None = None,
                 synthetic_size: int = 64, seed: int = 0) -> ResolvedData:
    """The shift list and a distribution loader. Without any GENIES data the built-in lists
    fall back to the synthetic suite (`note` says so); a shift file never falls back."""
    from genies.data.loading import load_distribution
    from genies.data.shifts import get_shifts

    if distributions is not None:
        table = dict(distributions)

        def from_table(name: str) -> Distribution:
            if name not in table:
                raise RunConfigError(f"unknown distribution {name!r}; available: {', '.join(sorted(table))}")
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
        try:
            data_root = find_data_root()
        except DataNotFoundError as err:
            if isinstance(shifts, str) and not Path(shifts).expanduser().is_file():
                return synthetic(f"{err} -> running the synthetic suite instead")
            raise
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
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def run(
    model: str | LoadedModel = "default",
    interventions: Sequence[str] = ("mms",),
    shifts: str | Sequence[Shift] = "genies",
    *,
    out: str | Path,
    preset: str = "cpu",
    max_train: int | None = None,
    max_eval: int | None = None,
    target_tuned: str = "default",
    seed: int = 0,
    plain: bool = False,
    trust_remote_code: bool = False,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    distributions: Mapping[str, Distribution] | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    executor: str = "local",
    baseline: str = BASELINE,
    target_tuned_interventions: Sequence[str] | None = None,
    console: Console | None = None,
    command_line: Sequence[str] | None = None,
) -> RunResults:
    """Run `interventions` over `shifts` on `model` and write the run directory `out`.

    Rerunning with the same arguments reuses every finished job (outputs are cached by content
    hash under `cache_dir`, default `genies_home()/jobs`), so an interrupted run resumes and a
    finished one returns in seconds. See docs/running.md for every column of the results.
    """
    started = time.time()
    console = console or Console(stderr=True)
    if preset not in PRESETS:
        raise RunConfigError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if target_tuned not in TARGET_TUNED_MODES:
        raise RunConfigError(f"unknown target-tuned mode {target_tuned!r}; choose from {', '.join(TARGET_TUNED_MODES)}")
    if executor not in ("local", "ray"):
        raise RunConfigError(f"unknown executor {executor!r}; choose from local, ray")
    if not interventions:
        raise RunConfigError("name at least one intervention")
    caps = PRESETS[preset]
    max_train = max_train if max_train is not None else caps["max_train"]
    max_eval = max_eval if max_eval is not None else caps["max_eval"]
    candidates = tuple(target_tuned_interventions or TARGET_TUNED_MODES[target_tuned])
    interventions = [_intervention_name(name) for name in interventions]
    _check_interventions([*interventions, baseline, *candidates])

    data = resolve_data(shifts, data_root=Path(data_root) if data_root else None, distributions=distributions,
                        synthetic_size=int(caps["synthetic_size"] or 64), seed=seed)
    if data.note:
        console.print(data.note, highlight=False, markup=False)
    if not data.shifts:
        raise RunConfigError("the shift list is empty")
    limited: dict[str, Distribution] = {}

    def distribution(name: str) -> Distribution:
        if name not in limited:
            limited[name] = data.load(name).limited(max_train, max_eval)
        return limited[name]

    names = sorted({n for s in data.shifts for n in (s.source, s.target, s.target_reference)})
    data_hashes = {n: {split: distribution(n).content_hash(split) for split in ("train", "test")} for n in names}

    if isinstance(model, LoadedModel):
        model_name, fingerprint, load = model.name, model.fingerprint, (lambda: model)
    else:  # the fingerprint alone plans the run; the weights load when a job first needs them
        from genies.models.loading import load_folder, model_fingerprint

        folder, fingerprint = model_fingerprint(model, trust_remote_code=trust_remote_code)
        model_name = model

        def load() -> LoadedModel:
            return load_folder(folder, name=model_name, trust_remote_code=trust_remote_code)
    plan = build_plan(interventions=list(interventions), shifts=data.shifts, preset=preset, seed=seed,
                      model_fingerprint=fingerprint, data_hash=lambda n, s: data_hashes[n][s],
                      hparams=hparams, baseline=baseline, target_tuned=candidates)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = JobStore(Path(cache_dir) if cache_dir else None)
    log = RunLog(out / "log.txt")
    argv = list(command_line) if command_line is not None else sys.argv
    log.write(f"start: {' '.join(argv)} ({plan.n_jobs} jobs: {len(plan.fits)} fits, {len(plan.predicts)} predictions)")
    env = JobEnv(load_model=load, distribution=distribution, store=store, seed=seed,
                 activation_store=_activation_store())
    if executor == "ray":
        records = RayExecutor(lambda: env).execute(plan, env, log)
    else:
        records = LocalExecutor(plain=plain, console=console).execute(plan, env, log)

    failed = [{"job": r.label, "error": r.error or ""} for r in records if r.status == "failed"]
    run_info = {
        "model": model_name, "model_fingerprint": fingerprint, "preset": preset, "seed": seed,
        "shifts": data.label, "interventions": list(interventions), "target_tuned": target_tuned,
        "target_tuned_candidates": list(candidates), "baseline_intervention": baseline,
        "max_train": max_train, "max_eval": max_eval,
    }
    results = compute_results(plan, store, distribution, seed, run_info, failed, run_dir=out)
    results.write(out)
    _write_manifest(out, plan, records, run_info, data, data_hashes, argv, started)
    log.write(f"finish: {len(results.rows)} rows, {len(failed)} failed jobs, {time.time() - started:.1f}s")
    return results


def _intervention_name(name: str) -> str:
    """A registered name as it is; a folder written for the original GENIES (it holds eval.py)
    becomes the method `legacy:<folder name>` run through the legacy adapter."""
    path = Path(name).expanduser()
    if path.is_dir() and (path / "eval.py").is_file():
        from genies.interventions._legacy import register_folder

        return register_folder(path)
    return name


def _check_interventions(names: Sequence[str]) -> None:
    from genies.interventions.base import get_intervention

    for name in dict.fromkeys(names):
        try:
            get_intervention(name)
        except KeyError as err:
            raise RunConfigError(err.args[0]) from None


def _write_manifest(out: Path, plan: Plan, records: Sequence[Any], run_info: Mapping[str, Any], data: ResolvedData,
                    data_hashes: Mapping[str, Any], argv: Sequence[str], started: float) -> None:
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
        "shifts": [asdict(s) for s in data.shifts],
        "packages": _versions(),
        "hardware": _hardware(),
        "jobs": [{"key": r.key, "kind": r.kind, "label": r.label, "status": r.status,
                  "seconds": round(r.seconds, 3), "error": r.error} for r in records],
    }
    write_atomic(out / "manifest.json", json.dumps(doc, indent=1) + "\n")
