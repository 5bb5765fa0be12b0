"""Executor benchmark: the synthetic suite run by the local executor and by Ray, side by side.

The Ray run uses a real two-node cluster (a head and a second node, one CPU each, so two
single-CPU workers) started inside a namespace of its own: a network namespace with only
loopback, so no Ray traffic can reach the machine's routable address, and a PID namespace, so
every process of the cluster ends with it and `ray stop --force` there sees only its own. Ray's
session files go to a private temporary folder (`RAY_TMPDIR`). The same helper starts the cluster
of the Ray executor's tests.

Both runs happen in one driver process inside that namespace, each from an empty job store and
activation cache (its own GENIES_HOME), on the same model folder, local first; the interventions
benchmarked are also the target-tuned candidates (the default, LoRA, would dominate the time).
Each time is the wall time of `genies.run`; the Ray one includes starting the workers (importing
genies and torch in each) and loading the model in each - the overhead Ray adds to a run - but
not starting the cluster, which is reported apart.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from genies.bench.machine import describe_machine
from genies.errors import ConfigError

ISOLATE = ("unshare", "--net", "--pid", "--fork", "--mount-proc")
PORT = 6390
WORKERS = 2  # the loopback cluster's nodes, one CPU each


def isolation_problem() -> str | None:
    """Why a loopback-only cluster cannot start here (no `unshare`, or namespaces not permitted,
    e.g. not root and no user namespaces), or None when it can."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is not installed"
    done = subprocess.run([*ISOLATE, "true"], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create network and PID namespaces ({done.stderr.strip() or done.returncode}); run as root"
    return None


def run_in_loopback_cluster(driver: list[str], workdir: Path, *, timeout_s: float,
                            second_node_env: Mapping[str, str] | None = None,
                            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Start a head and a second node (one CPU each) on 127.0.0.1:PORT in fresh loopback-only
    network and PID namespaces, run `driver` there, stop the cluster, and return how the driver
    ended. `second_node_env` is extra environment of the second node (its workers), `env` of
    everything. The cluster's log goes to `workdir/cluster.log`; `workdir/cluster.seconds` holds
    the Unix times when it began and finished starting."""
    ray = shlex.quote(str(Path(sys.executable).parent / "ray"))
    log = shlex.quote(str(workdir / "cluster.log"))
    common = f"--node-ip-address=127.0.0.1 --num-cpus=1 --disable-usage-stats >>{log} 2>&1"
    node_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in (second_node_env or {}).items())
    script = "\n".join([
        "ip link set lo up || exit 3",
        f"trap '{ray} stop --force >/dev/null 2>&1' EXIT",
        "started=$(date +%s.%N)",
        f"{ray} start --head --port={PORT} --include-dashboard=false {common} || exit 3",
        f"{node_env} {ray} start --address=127.0.0.1:{PORT} {common} || exit 3",
        f"echo \"$started $(date +%s.%N)\" > {shlex.quote(str(workdir / 'cluster.seconds'))}",
        shlex.join(driver),
    ])
    # Ray's session files (and its sockets, whose paths must stay short) in a private folder; a
    # cluster-private token, so token authentication is on and no token file lands in ~/.ray.
    with tempfile.TemporaryDirectory(prefix="genies-ray-") as ray_tmp:
        full_env = {**os.environ, **(env or {}), "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        return subprocess.run([*ISOLATE, "sh", "-c", script], env=full_env, capture_output=True, text=True,
                              timeout=timeout_s)


@dataclass
class ExecutorBenchResult:
    model: str
    interventions: list[str]
    jobs: int
    local_seconds: float
    ray_seconds: float
    ratio: float  # ray / local
    overhead_percent: float
    local_job_seconds: float  # the jobs' own times, summed (from each run's manifest)
    ray_job_seconds: float
    # Ray's wall time beyond its jobs split evenly over its workers: starting them (imports) and
    # handing groups out; each worker's model load is inside its first job's time.
    ray_beyond_jobs_seconds: float
    cluster_start_seconds: float
    identical_results: bool
    machine: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_executor_bench(model_folder: Path, interventions: list[str], max_train: int | None,
                       max_eval: int | None, timeout_s: float = 3600) -> ExecutorBenchResult:
    """Start the loopback cluster, time both runs in one driver there, and stop it."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError("genies bench executor needs Ray, which is not installed: pip install 'genies[ray]'")
    problem = isolation_problem()
    if problem:
        raise ConfigError(f"genies bench executor needs a loopback-only namespace for its Ray cluster: {problem}")
    with tempfile.TemporaryDirectory(prefix="genies-bench-executor-") as tmp:
        work = Path(tmp)
        spec = {"model": str(model_folder), "interventions": interventions, "max_train": max_train,
                "max_eval": max_eval, "address": f"127.0.0.1:{PORT}"}
        (work / "spec.json").write_text(json.dumps(spec))
        done = run_in_loopback_cluster([sys.executable, "-m", "genies.bench.executor", str(work)], work,
                                       timeout_s=timeout_s)
        if done.returncode != 0 or not (work / "times.json").is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"the benchmark's cluster run failed (exit {done.returncode}): " + " | ".join(tail))
        times = json.loads((work / "times.json").read_text())
        began, ready = map(float, (work / "cluster.seconds").read_text().split())
    local, ray = times["local"], times["ray"]
    return ExecutorBenchResult(model=str(model_folder), interventions=interventions, jobs=times["jobs"],
                               local_seconds=round(local, 2), ray_seconds=round(ray, 2), ratio=round(ray / local, 3),
                               overhead_percent=round(100 * (ray / local - 1), 1),
                               local_job_seconds=round(times["local_jobs"], 1),
                               ray_job_seconds=round(times["ray_jobs"], 1),
                               ray_beyond_jobs_seconds=round(ray - times["ray_jobs"] / WORKERS, 1),
                               cluster_start_seconds=round(ready - began, 1), identical_results=times["identical"],
                               machine=describe_machine())


def _driver(work: Path) -> None:
    """Inside the namespace: the local run, then the Ray run, each timed; write times.json."""
    import genies
    from genies.pipeline.config import RunConfig
    from genies.pipeline.executor import LocalExecutor

    spec = json.loads((work / "spec.json").read_text())
    times: dict[str, float | int | bool] = {}
    for executor in ("local", "ray"):
        os.environ["GENIES_HOME"] = str(work / f"home-{executor}")  # its own activation cache
        config = RunConfig(out=work / executor, model=spec["model"], interventions=tuple(spec["interventions"]),
                           target_tuned_interventions=tuple(spec["interventions"]), shifts="synthetic", max_train=spec["max_train"], max_eval=spec["max_eval"],
                           cache_dir=work / f"jobs-{executor}", executor=executor,
                           ray_address=spec["address"] if executor == "ray" else None)
        started = time.perf_counter()
        genies.run(config, executor=LocalExecutor(plain=True))
        times[executor] = time.perf_counter() - started
        jobs = json.loads((work / executor / "manifest.json").read_text())["jobs"]
        times[f"{executor}_jobs"] = sum(job["seconds"] for job in jobs)
    times["jobs"] = len(jobs)
    times["identical"] = (work / "local" / "results.csv").read_bytes() == (work / "ray" / "results.csv").read_bytes()
    (work / "times.json").write_text(json.dumps(times))


if __name__ == "__main__":
    _driver(Path(sys.argv[1]))
