"""Run a plan's groups on a Ray cluster (`genies run --executor ray [--ray-address auto|HOST:PORT]`).

Workers are Ray actors, as many as the cluster has room for (`JobResources`: one CPU each on a
CPU cluster, the placement's GPUs each when the model runs on CUDA). Each actor rebuilds the job
environment from a `JobRecipe` - plain, picklable data, never a closure holding a loaded model -
loads the model once, on the first group that needs it, and keeps it for every later group. A
group (one fit and the predictions made with its state) is one actor call, so independent fits
run in parallel and predictions follow their fit. The call streams one record per job back, in
job order, so the driver shows the same `JobDisplay` as the local executor while jobs finish.

Outputs land in the driver's content-addressed store. A worker that sees that store on a shared
file system writes to it directly (as a local run does, under the same locks and atomic
renames); one that does not computes into its node's own store (its GENIES_HOME) and sends each
output back through Ray's object store, and the driver writes it. A worker learns which case it
is in from a probe file the driver creates in the store; `GENIES_RAY_SHARED_FS=1|0` in a node's
environment (when its `ray start` runs) says it instead, for every worker of that node.

A worker that dies loses only the job it was running: Ray restarts the actor and retries the call
(`MAX_TASK_RETRIES`), and since every finished job is stored, the retry finds them cached and the
driver keeps the record it already had for each. A driver that dies loses its workers; the rerun
resumes from the store exactly like a local rerun.

Every job key depends on the model's fingerprint and precision, and on the data hashes the driver
computed; so workers read the very distributions the driver hashed (shipped once each through the
object store), load the model at the driver's precision and check its fingerprint, and resolve
methods registered at run time in the driver (classes shipped by value; `legacy:PATH` specs and
plugins resolve by name, the legacy folder read on the worker's file system).

A run given an in-memory model (`genies.run(config, lm=...)`) is run from the folder it was
loaded from (`lm.path`): each worker loads that folder and checks the fingerprint, so weights
changed in memory after loading are not what the workers see.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from rich.console import Console

from genies._io import write_atomic
from genies.errors import ConfigError, JobError
from genies.models.base import LoadedModel
from genies.models.placement import Placement
from genies.pipeline.executor import (JobDisplay, JobEnv, JobRecord, RunLog, cached_group, groups, one_line,
                                      run_group)
from genies.pipeline.jobs import FitJob, PredictJob
from genies.pipeline.plan import Plan
from genies.pipeline.store import JobStore, default_root

SHARED_FS_ENV = "GENIES_RAY_SHARED_FS"
# Retries of a group whose worker died (the actor itself is restarted as often as needed); a job
# that kills its worker every time (out of memory) fails after this many more tries.
MAX_TASK_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0
# Groups are handed out once every worker is up, or this long after the first one is: otherwise
# the first worker up could take every group of a short run while the others still import torch.
START_GRACE_S = 30.0

# Files of one job output, by path relative to the output (a fitted state's folder, or the one
# predictions file), as they travel back from a worker that does not share the store.
Files = dict[str, bytes]


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker loads the run's model. The placement is pinned to what the driver resolved
    (`cuda` or `cpu`, and the dtype its precision key names), so a worker whose own "auto" would
    differ still computes what the job keys say; `precision` is the driver's key, checked again
    on the worker (a different bitsandbytes there would change 4-bit numbers)."""

    folder: Path
    name: str
    trust_remote_code: bool
    placement: Placement
    fingerprint: str
    precision: dict[str, Any]

    @classmethod
    def for_run(cls, folder: Path, name: str, trust_remote_code: bool, placement: Placement,
                fingerprint: str) -> ModelRecipe:
        device = "cuda" if placement.torch_device.type == "cuda" else "cpu"
        pinned = Placement(device=device, dtype=str(placement.torch_dtype).removeprefix("torch."),
                           quantize=placement.quantize, gpus=placement.gpus)
        return cls(Path(folder).resolve(), name, trust_remote_code, pinned, fingerprint, placement.precision_key())

    @classmethod
    def of(cls, lm: LoadedModel) -> ModelRecipe:
        """The recipe of an already loaded model: its folder, name and placement."""
        placement = lm.placement or Placement(device=lm.device.type, dtype=str(lm.dtype).removeprefix("torch."))
        return cls.for_run(lm.path, lm.name, lm.trust_remote_code, placement, lm.fingerprint)

    def load(self) -> LoadedModel:
        """Load on this worker: the driver's folder when this node sees it, else the model resolved
        by name here; either way it must be the very model the driver fingerprinted."""
        from genies.models.loading import load_folder, model_fingerprint

        here = self.placement.precision_key()
        if here != self.precision:
            raise JobError(f"this Ray worker would load {self.name} at precision {here}, the driver planned "
                           f"{self.precision}: install the same versions on every node")
        folder = self.folder
        if not (folder / "config.json").is_file():
            folder, _ = model_fingerprint(self.name, trust_remote_code=self.trust_remote_code)
        lm = load_folder(folder, name=self.name, trust_remote_code=self.trust_remote_code, placement=self.placement)
        if lm.fingerprint != self.fingerprint:
            raise JobError(f"the model {self.name} at {folder} on this Ray worker is not the driver's (fingerprint "
                           f"{lm.fingerprint}, expected {self.fingerprint}): share GENIES_HOME or install the same "
                           "model on every node")
        return lm


@dataclass(frozen=True)
class JobResources:
    """What one worker reserves on the cluster for as long as it lives (it runs one job at a time).

    `memory` (bytes, Ray's `memory` resource) is where the planner's per-job peak estimate plugs
    in (genies.pipeline.sizing); None reserves no memory, so Ray schedules by CPUs and GPUs only."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int | None = None

    @classmethod
    def for_placement(cls, placement: Placement, memory: int | None = None) -> JobResources:
        """One CPU per job; on CUDA also the GPUs the model is placed on (`--gpus`, default 1)."""
        gpus = (placement.gpus or 1) if placement.torch_device.type == "cuda" else 0
        return cls(num_cpus=1.0, num_gpus=float(gpus), memory=memory)

    def actor_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory:
            options["memory"] = self.memory
        return options

    def per_node(self, resources: Mapping[str, float]) -> int:
        """How many such workers fit at once on a node with these total resources."""
        fits = [resources.get("CPU", 0.0) // self.num_cpus]
        if self.num_gpus:
            fits.append(resources.get("GPU", 0.0) // self.num_gpus)
        if self.memory:
            fits.append(resources.get("memory", 0.0) // self.memory)
        return int(min(fits))

    def describe(self) -> str:
        memory = f", {self.memory / 2**30:.1f} GiB" if self.memory else ""
        return f"{self.num_cpus:g} CPU, {self.num_gpus:g} GPU{memory}"


@dataclass(frozen=True)
class JobRecipe:
    """Everything a worker needs to rebuild the run's job environment, as plain data.

    `distributions` maps each distribution the plan reads to a Ray object reference of the very
    (capped) `Distribution` the driver hashed. `store_root` and `activation_root` are the driver's
    absolute paths, used by workers that share them (no `activation_root`: each worker's default
    activation store); `probe` is a file the driver created in the store, so a worker that sees
    it shares the store. `threads` is the torch thread count of every job: the CPUs a worker
    reserves, so workers never oversubscribe a node. Torch's CPU sums change in their last bits
    with the thread count, so results are byte-identical to a local run's computed with as many
    threads (the local executor uses torch's default, one per core). `registrations` are the
    classes of methods registered at run time in the driver, pickled by value."""

    model: ModelRecipe
    distributions: Mapping[str, Any]
    store_root: Path
    activation_root: Path | None
    seed: int
    probe: Path
    threads: int
    registrations: tuple[bytes, ...] = ()


def shipped_registrations(plan: Plan) -> tuple[bytes, ...]:
    """The plan's methods a worker could not resolve by name: neither genies' own modules nor an
    installed plugin, but classes registered at run time (in a script, a notebook, a test). Each is
    pickled by value, with the functions of its module, so the worker needs none of its code."""
    from ray import cloudpickle

    from genies.interventions.registry import ENTRY_POINT_GROUP, get_intervention

    plugins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    shipped = []
    for name in sorted({fit.method_name for fit in plan.fits.values()}):
        cls = get_intervention(name)
        if cls.__module__.split(".")[0] == "genies" or name in plugins:
            continue
        module = sys.modules.get(cls.__module__)
        by_value = (module is not None and cls.__module__ != "__main__"
                    and cls.__module__ not in cloudpickle.list_registry_pickle_by_value())
        if by_value:
            cloudpickle.register_pickle_by_value(module)
        try:
            shipped.append(cloudpickle.dumps(cls))
        finally:
            if by_value:
                cloudpickle.unregister_pickle_by_value(module)
    return tuple(shipped)


def register_shipped(registrations: tuple[bytes, ...]) -> None:
    """Register, in this worker, the classes `shipped_registrations` pickled in the driver."""
    from genies.interventions.registry import register

    for blob in registrations:
        cls = pickle.loads(blob)  # noqa: S301 - written by this run's driver
        register(cls.name, family=cls.family, description=cls.description)(cls)


def read_files(folder: Path) -> Files:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


def write_files(folder: Path, files: Files) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def publish_output(store: JobStore, rec: JobRecord, files: Files) -> None:
    """Write an output a worker sent back into the driver's store, as atomically as a local job."""
    if rec.kind == "fit":
        with store.publish_fit(rec.key) as staging:
            write_files(staging, files)
    else:
        write_atomic(store.predict_file(rec.key), files[store.predict_file(rec.key).name])


class GroupWorker:
    """The body of one Ray actor: the job environment rebuilt from the recipe, one model load for
    every group it runs. Its methods run one at a time (an actor's calls queue)."""

    def __init__(self, recipe: JobRecipe) -> None:
        import torch

        from genies.models.activations import ActivationStore

        torch.set_num_threads(recipe.threads)
        register_shipped(recipe.registrations)
        self.recipe = recipe
        said = os.environ.get(SHARED_FS_ENV, "")
        self.shared = said == "1" if said in ("0", "1") else recipe.probe.is_file()
        # A worker outside the shared file system works in its node's own store and cache.
        self.store = JobStore(recipe.store_root if self.shared else default_root())
        self.activations = ActivationStore(recipe.activation_root if self.shared else None)
        self._lm: LoadedModel | None = None
        self._distributions: dict[str, Any] = {}

    def shares_store(self) -> bool:
        """Whether outputs are written straight into the driver's store (answered once started)."""
        return self.shared

    def _model(self) -> LoadedModel:
        if self._lm is None:
            self._lm = self.recipe.model.load()
        return self._lm

    def _distribution(self, name: str) -> Any:
        import ray

        if name not in self._distributions:
            self._distributions[name] = ray.get(self.recipe.distributions[name])
        return self._distributions[name]

    def run(self, fit: FitJob, predicts: list[PredictJob],
            fit_files: Files | None) -> Iterator[tuple[JobRecord, str | None, Files | None]]:
        """Run one group; yield (record, traceback, output files or None) per job, in job order.
        `fit_files` is the fitted state the driver already has (sent only to a worker that does
        not share its store); outputs go back only from such a worker, and only what the driver
        lacks: every prediction it asked for, and the fit unless it sent it."""
        if fit_files is not None and not self.store.has_fit(fit.key):
            with self.store.publish_fit(fit.key) as staging:
                write_files(staging, fit_files)
        env = JobEnv(load_model=self._model, distribution=self._distribution, store=self.store,
                     seed=self.recipe.seed, activation_store=self.activations)
        for rec, tb in run_group(fit, predicts, env):
            files = None
            if not self.shared and rec.status != "failed" and (rec.kind == "predict" or fit_files is None):
                output = self.store.fit_dir(rec.key) if rec.kind == "fit" else self.store.predict_file(rec.key)
                files = read_files(output) if rec.kind == "fit" else {output.name: output.read_bytes()}
            yield rec, tb, files


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` ("auto" or HOST:PORT), or start a local Ray when it is
    None, using the CPUs this process may run on. True when this call initialized Ray (the
    executor then shuts it down at the end); False when the caller had already done so. An
    address where no cluster answers is a ConfigError before anything is written."""
    import ray

    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable names a cluster too
    if address is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        try:
            ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"could not start a local Ray ({one_line(err)}); or join a running cluster with "
                              "--ray-address") from None
        return True
    _check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except Exception as err:  # noqa: BLE001 - whatever Ray raises, the user needs one line
        raise ConfigError(f"--ray-address {address}: could not join the Ray cluster ({one_line(err)}); check "
                          "that every node runs the same Ray and genies, and the cluster's auth token "
                          "(RAY_AUTH_TOKEN)") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail fast, in one line, where Ray itself would retry for minutes: no cluster found for
    "auto", a malformed address, or nothing listening at HOST:PORT."""
    target = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address_or_die

        try:
            target = canonicalize_bootstrap_address_or_die("auto")
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"--ray-address auto: no running Ray cluster found ({one_line(err)}); start one "
                              "with `ray start --head` or leave out --ray-address to start a local Ray") from None
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray-address {address!r}: expected auto or HOST:PORT, e.g. 10.0.0.1:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers at {host}:{port} "
                          f"({err.strerror or type(err).__name__}); start its head there with `ray start --head "
                          f"--port={port}`, correct the address, or leave out --ray-address to start a local "
                          "Ray") from None


@dataclass
class _Call:
    """One group running on one actor: the jobs whose records have not arrived yet."""

    actor: Any
    shares: bool
    jobs: list[FitJob | PredictJob]
    received: set[str] = field(default_factory=set)

    def remaining(self) -> list[FitJob | PredictJob]:
        return [job for job in self.jobs if job.key not in self.received]


class RayExecutor:
    """Runs a plan's groups on Ray actors (see the module docstring), with the local executor's
    display. Constructing it joins or starts the cluster, so an unreachable address fails before
    the run writes anything."""

    def __init__(self, model: ModelRecipe, address: str | None = None, *, plain: bool = False,
                 console: Console | None = None, resources: JobResources | None = None) -> None:
        self.model = model
        self.plain = plain
        self.console = console or Console(stderr=True)
        self.resources = resources or JobResources.for_placement(model.placement)
        self._started = connect(address)

    def execute(self, plan: Plan, env: JobEnv, log: RunLog) -> list[JobRecord]:
        import ray

        store = env.store
        probe = store.root.resolve() / f".ray-probe-{uuid.uuid4().hex}"
        try:
            with JobDisplay(plan.n_jobs, log, self.plain, self.console) as display:
                todo = []  # each group with the predictions the store lacks; the rest is reported cached now
                for fit, predicts in groups(plan):
                    stored = cached_group(fit, predicts, store)
                    if stored is None:
                        missing = [p for p in predicts if not store.has_predictions(p.key)]
                        stored = [JobRecord(p.key, "predict", p.label, "cached") for p in predicts if p not in missing]
                        todo.append((fit, missing))
                    for rec in stored:
                        display.finished(rec, None)
                if todo:
                    probe.parent.mkdir(parents=True, exist_ok=True)
                    probe.touch()
                    self._run(todo, self._recipe(plan, env, probe), store, display)
            return display.records
        finally:
            probe.unlink(missing_ok=True)
            if self._started:
                ray.shutdown()

    def _recipe(self, plan: Plan, env: JobEnv, probe: Path) -> JobRecipe:
        import ray

        names = {fit.source for fit in plan.fits.values() if fit.source} | {p.distribution
                                                                            for p in plan.predicts.values()}
        names |= {name for fit in plan.fits.values() if fit.view for name in fit.view.distributions()}
        activations = getattr(env.activation_store, "root", None)
        return JobRecipe(model=self.model, distributions={n: ray.put(env.distribution(n)) for n in sorted(names)},
                         store_root=env.store.root.resolve(),
                         activation_root=None if activations is None else Path(activations).resolve(),
                         seed=env.seed, probe=probe, threads=max(1, int(self.resources.num_cpus)),
                         registrations=shipped_registrations(plan))

    def _workers(self, wanted: int) -> int:
        import ray

        room = sum(self.resources.per_node(node["Resources"]) for node in ray.nodes() if node.get("Alive"))
        if room < 1:
            raise ConfigError(f"the Ray cluster has no node with room for one job ({self.resources.describe()}): "
                              "add such nodes, or run on CPU (--device cpu)")
        return min(wanted, room)

    def _run(self, todo: list[tuple[FitJob, list[PredictJob]]], recipe: JobRecipe, store: JobStore,
             display: JobDisplay) -> None:
        """Keep every worker busy with the next group; take each record as it arrives."""
        import ray
        from ray.exceptions import RayError

        worker = ray.remote(GroupWorker).options(max_restarts=-1, max_task_retries=MAX_TASK_RETRIES,
                                                 **self.resources.actor_options())
        actors = [worker.remote(recipe) for _ in range(self._workers(len(todo)))]
        starting = {actor.shares_store.remote(): actor for actor in actors}
        idle: list[tuple[Any, bool]] = []
        pending = deque(todo)
        running: dict[Any, _Call] = {}
        grace_end: float | None = None  # set when the first worker is up
        try:
            while pending or running:
                holding = bool(starting) and (grace_end is None or time.monotonic() < grace_end)
                while pending and idle and not holding:
                    actor, shares = idle.pop()
                    fit, predicts = pending.popleft()
                    fit_files = None if shares or not store.has_fit(fit.key) else read_files(store.fit_dir(fit.key))
                    running[actor.run.remote(fit, predicts, fit_files)] = _Call(actor, shares, [fit, *predicts])
                    display.started(fit.label)
                timeout = max(0.0, grace_end - time.monotonic()) if holding and grace_end else None
                done, _ = ray.wait([*starting, *running], num_returns=1, timeout=timeout)
                if not done:  # the grace period is over: start with the workers that are up
                    continue
                ready = done[0]
                if ready in starting:
                    grace_end = grace_end or time.monotonic() + START_GRACE_S
                    actor = starting.pop(ready)
                    try:
                        idle.append((actor, ray.get(ready)))
                    except RayError as err:  # this worker cannot start; the others may
                        if not (starting or idle or running):
                            raise ConfigError(f"no Ray worker could start ({one_line(err)}): every node needs "
                                              "the driver's Python with genies installed") from None
                    continue
                call = running[ready]
                try:
                    rec, tb, files = ray.get(next(ready))
                except StopIteration:
                    del running[ready]
                    idle.append((call.actor, call.shares))
                    continue
                except RayError as err:  # the worker died more often than Ray retries, or Ray failed
                    del running[ready]
                    idle.append((call.actor, call.shares))
                    self._lost(call, err, display)
                    continue
                if rec.key in call.received:  # a retried call reports jobs the driver already has
                    continue
                call.received.add(rec.key)
                if files is not None:
                    publish_output(store, rec, files)
                display.finished(rec, tb)
                if call.remaining():
                    display.started(call.remaining()[0].label)
        finally:
            for actor in actors:
                ray.kill(actor)

    @staticmethod
    def _lost(call: _Call, err: Exception, display: JobDisplay) -> None:
        """Record the jobs of a group whose worker was lost: the running one failed with Ray's
        error, the rest not run (nothing of theirs is stored, so a rerun retries exactly them)."""
        if not call.remaining():
            return
        first, *rest = call.remaining()
        display.finished(JobRecord(first.key, "fit" if isinstance(first, FitJob) else "predict", first.label,
                                   "failed", 0.0, one_line(err)), str(err))
        for job in rest:
            display.finished(JobRecord(job.key, "fit" if isinstance(job, FitJob) else "predict", job.label,
                                       "failed", 0.0, f"not run: {first.label} failed"), None)
