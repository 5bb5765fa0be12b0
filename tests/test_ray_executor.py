"""The Ray executor on a real two-node cluster (a head and a second node, one CPU each).

The cluster and its driver run in namespaces of their own (`genies.bench.executor`): network
with only loopback, so no traffic leaves 127.0.0.1, and PID, so nothing of the cluster outlives
it. One cluster session runs every scenario (starting workers is most of the cost): the driver
script below runs the synthetic suite with three interventions - mms, a legacy folder, and a
stand-in registered at run time in the driver that kills its own worker once, mid-run - on the
cluster; deletes some outputs and reruns on the cluster (a resumed run); and runs the same
configuration locally. The second node says it does not share the job store
(GENIES_RAY_SHARED_FS=0), so its outputs travel back through Ray's object store while the head's
are written in place: both paths in one run. The tests below read what the session left.
"""

from __future__ import annotations

import json
import socket
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("ray")

from genies.bench.executor import PORT, isolation_problem, run_in_loopback_cluster  # noqa: E402

DRIVER = '''
"""Inside the namespace: the runs of tests/test_ray_executor.py (argv: work folder, cluster address)."""

import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import genies
from genies.interventions import Intervention, Scores, hparam, register
from genies.models.testing import tiny_model
from genies.pipeline.config import RunConfig
from genies.pipeline.executor import LocalExecutor

WORK, ADDRESS = Path(sys.argv[1]), sys.argv[2]
KILLED = WORK / "killed"  # created just before the kill, so there is exactly one
CALLS = WORK / "calls.txt"  # one line per job the stand-in computed
KILL_AT = "synth_arithmetic_madeup"  # the third job of its group: two of it are done by then
torch.set_num_threads(1)  # as each worker (one CPU each): torch's last bits depend on the thread count

TRAIN = """
import json, sys
a = dict(zip(sys.argv[1::2], sys.argv[2::2]))
rows = json.load(open(a["--training_distribution_dir"] + "/train.json"))
longer = sum(len(max(r["responses"], key=r["responses"].get)) >= max(len(t) for t in r["responses"]) for r in rows)
json.dump({"sign": 1 if 2 * longer >= len(rows) else -1}, open(a["--output_dir"] + "/config.json", "w"))
"""
EVAL = """
import ast, json, math, sys
a = dict(zip(sys.argv[1::2], sys.argv[2::2]))
sign = json.load(open(a["--model_dir"] + "/config.json"))["sign"]
for folder, path in zip(ast.literal_eval(a["--distribution_dirs"]), ast.literal_eval(a["--output_paths"])):
    probs = []
    for row in json.load(open(folder + "/test.json")):
        best = [r for r, v in row["responses"].items() if v == 1][0]
        probs += [1 / (1 + math.exp(-sign * (len(best) - len(w)) / 4)) for w, v in row["responses"].items() if v == 0]
    json.dump({"eval_probabilities": probs}, open(path, "w"))
"""


@dataclass(frozen=True)
class Direction:
    direction: int
    source: str


@register("length_killer", family="fine-tuning", description="test stand-in: kills its Ray worker once")
@dataclass
class LengthKiller(Intervention[Direction]):
    """Prefers the longer (or shorter) response as its source's train split does; the first time
    it scores KILL_AT it kills its own process, as a crashing worker would."""

    scale: float = hparam(0.3, "p = 0.5 + scale for the favoured response")

    def fit(self, lm, train, ctx) -> Direction:
        longer = np.mean([len(p.preferred) > len(p.dispreferred) for p in train.train_pairs(ctx.seed)])
        with CALLS.open("a") as calls:
            calls.write(f"fit {train.id}\\n")
        return Direction(1 if longer >= 0.5 else -1, train.id)

    def scorer(self, lm, fitted: Direction, ctx):
        def score(data) -> Scores:
            if data.distribution == KILL_AT and fitted.source != KILL_AT and not KILLED.exists():
                KILLED.touch()
                os.kill(os.getpid(), signal.SIGKILL)
            with CALLS.open("a") as calls:
                calls.write(f"predict {fitted.source} {data.distribution}/{data.split}\\n")
            lengths = np.array([len(r) for q in data.queries for r in q.responses])

            def p_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
                diff = fitted.direction * (lengths[a] - lengths[b])
                return np.where(diff > 0, 0.5 + self.scale, np.where(diff < 0, 0.5 - self.scale, 0.5))

            return Scores.pairwise([len(q.responses) for q in data.queries], p_first)
        return score


def run(name: str, executor: str, cache: str) -> None:
    os.environ["GENIES_HOME"] = str(WORK / f"home-{cache}")  # each cache its own activation store
    config = RunConfig(out=WORK / name, model=str(WORK / "model"), shifts="synthetic", max_train=8, max_eval=8,
                       interventions=("mms", "length_killer", str(WORK / "length_rm")),
                       target_tuned_interventions=("length_killer",), cache_dir=WORK / f"cache-{cache}",
                       executor=executor, ray_address=ADDRESS if executor == "ray" else None)
    genies.run(config, executor=LocalExecutor(plain=True))


def forget(labels: list[str], fit_too: bool) -> None:
    """Delete the stored outputs of the jobs whose label starts with one of `labels`."""
    for job in json.loads((WORK / "ray" / "manifest.json").read_text())["jobs"]:
        if any(job["label"].startswith(label) for label in labels):
            if job["kind"] == "predict":
                (WORK / "cache-ray" / "predict" / f"{job['key']}.json").unlink()
            elif fit_too:
                shutil.rmtree(WORK / "cache-ray" / "fit" / job["key"])


tiny_model(WORK / "model", "llama")
(WORK / "length_rm").mkdir()
(WORK / "length_rm" / "train.py").write_text(TRAIN)
(WORK / "length_rm" / "eval.py").write_text(EVAL)
run("ray", "ray", "ray")
os.replace(CALLS, WORK / "calls-ray.txt")
# A resumed run: one group lost its predictions (its fit stays), another lost everything.
forget(["predict mms (trained on synth_alphabetical)"], fit_too=False)
forget(["fit legacy:length_rm on synth_count_long", "predict legacy:length_rm (trained on synth_count_long)"],
       fit_too=True)
os.replace(WORK / "node2-home" / "jobs", WORK / "node2-jobs")  # the second node cannot answer from its store
run("ray-resumed", "ray", "ray")
run("local", "local", "local")
'''

FORGOTTEN = 3 + 1 + 2  # the driver deletes 3 mms predictions, and a legacy fit with its 2 predictions


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The work folder of one cluster session that ran DRIVER (see the module docstring)."""
    problem = isolation_problem()
    if problem:
        pytest.skip(f"no loopback-only namespace for a Ray cluster: {problem}")
    work = tmp_path_factory.mktemp("ray-session")
    (work / "driver.py").write_text(DRIVER)
    done = run_in_loopback_cluster([sys.executable, str(work / "driver.py"), str(work), f"127.0.0.1:{PORT}"], work,
                                   timeout_s=600, env={"GENIES_HOME": str(work / "head-home")},
                                   second_node_env={"GENIES_RAY_SHARED_FS": "0",
                                                    "GENIES_HOME": str(work / "node2-home")})
    output = done.stdout + done.stderr
    (work / "output.txt").write_text(output)
    assert done.returncode == 0, output[-4000:]
    return work


def jobs(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "manifest.json").read_text())["jobs"]


def test_cluster_results_are_byte_identical_to_local(session: Path) -> None:
    local = (session / "local" / "results.csv").read_bytes()
    assert len(local.splitlines()) == 1 + 9 * 3  # 9 synthetic shifts x 3 interventions
    assert (session / "ray" / "results.csv").read_bytes() == local
    assert (session / "ray-resumed" / "results.csv").read_bytes() == local


def test_a_killed_worker_costs_only_its_running_job(session: Path) -> None:
    """The stand-in killed its worker once, mid-group; Ray restarted it and retried the group, and
    every job - including those of that group finished before the kill - was computed once."""
    assert (session / "killed").exists()
    ray = jobs(session / "ray")
    assert len(ray) == len(jobs(session / "local")) and Counter(j["status"] for j in ray) == {"done": len(ray)}
    calls = (session / "calls-ray.txt").read_text().splitlines()
    stand_in = [j for j in ray if "length_killer" in j["label"]]
    assert len(calls) == len(set(calls)) == len(stand_in)
    assert "fit synth_arithmetic_easy" in calls and "predict synth_arithmetic_easy synth_arithmetic_madeup/test" in calls


def test_both_output_paths_and_a_legacy_folder_run_on_the_cluster(session: Path) -> None:
    """The second node computed in its own store and sent its outputs back; the head wrote into
    the shared store; the driver's store holds every output either way."""
    returned = list((session / "node2-jobs" / "predict").glob("*.json"))
    assert returned, "the second node (no shared store) ran no job"
    store = session / "cache-ray"
    for job in jobs(session / "ray"):
        output = store / "fit" / job["key"] / "fitted.json" if job["kind"] == "fit" else \
            store / "predict" / f"{job['key']}.json"
        assert output.is_file(), job["label"]
    for path in returned:
        assert (store / "predict" / path.name).read_bytes() == path.read_bytes()
    legacy = [j for j in jobs(session / "ray") if "legacy:length_rm" in j["label"]]
    assert len(legacy) == 4 + 13 and {j["status"] for j in legacy} == {"done"}  # 4 sources: 4 fits, 13 predictions


def test_a_rerun_on_the_cluster_computes_only_what_is_missing(session: Path) -> None:
    statuses = Counter(j["status"] for j in jobs(session / "ray-resumed"))
    assert statuses == {"done": FORGOTTEN, "cached": len(jobs(session / "ray")) - FORGOTTEN}


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("address, message", [
    (f"127.0.0.1:{_closed_port()}", "no Ray cluster answers at 127.0.0.1:"),
    ("nowhere", "expected auto or HOST:PORT"),
])
def test_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path, tiny_llama, address, message) -> None:
    from typer.testing import CliRunner

    from genies.cli import _build

    out = tmp_path / "run"
    result = CliRunner().invoke(_build(), ["run", "--executor", "ray", "--ray-address", address, "--shifts",
                                           "synthetic", "--model", str(tiny_llama.path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and message in result.output, result.output
    assert "--ray-address" in result.output and "Traceback" not in result.output
    assert not out.exists()
