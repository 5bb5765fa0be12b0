"""The run configuration: one validated dataclass whose fields carry their help.

`genies run`'s options are generated from these fields (src/genies/commands/run.py), and
`genies.run(RunConfig(...))` takes the same object, so the command line and the library cannot
drift apart. Two words that used to be one: a method's hyperparameter *preset* (`--preset`:
each method's `paper` or `cpu` values) and the run's example *budget* (`--budget`: how many
train and test examples of each distribution are used), which defaults to the preset's namesake.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genies.data.shift import Shift
from genies.errors import ConfigError, FileError, UnknownNameError
from genies.models.placement import Placement


@dataclass(frozen=True)
class Budget:
    """How many examples of each distribution a run uses (None = all)."""

    max_train: int | None
    max_eval: int | None
    synthetic_size: int


# `cpu` keeps `make run` (GENIES-15 x {mms, lora} on the embedded 135M model) inside its budget on
# two cores; `paper` uses every example.
BUDGETS: dict[str, Budget] = {
    "cpu": Budget(max_train=32, max_eval=16, synthetic_size=64),
    "paper": Budget(max_train=None, max_eval=None, synthetic_size=600),
}
TARGET_TUNED_MODES = ("default", "best", "none")
EXECUTORS = ("local", "ray")


def setting(default: Any, help: str, *flags: str, cli: bool = True, cli_type: Any = None) -> Any:
    """A run setting: `help` and `flags` become its `genies run` option (`cli=False`: library only;
    `cli_type`: the option's type where the field's is wider, e.g. shifts given as a list of Shift)."""
    metadata = {"help": help, "flags": flags, "cli": cli, "cli_type": cli_type}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunConfig:
    """What a run computes and where it writes; validated when built."""

    out: Path = setting(None, "Run directory to write (and to resume).", "--out")
    model: str = setting("default", "`default`, a local folder, a .gguf file or a cached hub id.", "--model")
    interventions: tuple[str, ...] = setting(
        ("mms",), "Intervention name or spec (`legacy:FOLDER`, or a folder with eval.py); repeat for several.",
        "--intervention", "-i")
    shifts: str | tuple[Shift, ...] = setting(
        "genies", "genies | all | all-69 | extreme | probing | <category> | synthetic | <file>", "--shifts",
        cli_type=str)
    preset: str = setting("cpu", "Each method's hyperparameter preset: cpu (small, fast) | paper.", "--preset")
    budget: str | None = setting(None, "Examples per distribution: cpu (32 train, 16 test) | paper (all); "
                                       "default: the preset's namesake.", "--budget")
    max_train: int | None = setting(None, "Train examples per distribution (overrides the budget).", "--max-train")
    max_eval: int | None = setting(None, "Test examples per distribution (overrides the budget).", "--max-eval")
    first_n: bool = setting(False, "Budgets keep each split's first N examples instead of a random subset "
                                   "seeded by --seed.", "--first-n")
    target_tuned: str = setting("default", "default: LoRA on the target reference | best: max over 5 methods | "
                                           "none: skip it (accuracies only; DE and elicitation are empty)",
                                "--target-tuned")
    seed: int = setting(0, "Seed of every job and of the metrics' resampling.", "--seed")
    hparams: Mapping[str, Mapping[str, Any]] = setting(
        {}, "Hyperparameter overrides by method name, e.g. {'mms': {'k': 8}} (`--set mms.k=8`).", cli=False)
    hparams_file: Path | None = setting(
        None, "JSON file of hyperparameters by method name, e.g. a sweep's best-hparams.json; --set wins.",
        "--hparams")
    mix_target: tuple[float, ...] = setting(
        (), "Target-data ablation: for each fraction (0.01,0.05,...) an extra cell per shift whose intervention "
            "trains on the source with that fraction replaced by target train examples (docs/sweeps.md).",
        "--mix-target", cli_type=list[str])
    trust_remote_code: bool = setting(False, "Allow a model folder's own Python code to run.", "--trust-remote-code")
    device: str = setting("auto", "auto (the GPU when there is one) | cpu | cuda | cuda:N", "--device")
    dtype: str = setting("auto", "auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16", "--dtype")
    quantize: str = setting("none", "none | 8bit | 4bit (bitsandbytes NF4; with lora: QLoRA). Scores of a "
                                    "quantized model are not comparable with bf16 ones.", "--quantize")
    gpus: int | None = setting(None, "GPUs a job may shard its model over (default: all visible).", "--gpus")
    gpu_memory: float | None = setting(None, "GiB of memory per GPU the planner may use (default: what the "
                                             "GPU reports).", "--gpu-memory")
    executor: str = setting("local", "local | ray (needs `pip install genies[ray]`)", "--executor")
    ray_address: str | None = setting(None, "Ray cluster to join: auto | HOST:PORT (default: start a local one).",
                                      "--ray-address")
    cache_dir: Path | None = setting(None, "Job cache (default: GENIES_HOME/jobs); shared by runs.", "--cache-dir")
    data_root: Path | None = setting(None, "Folder of GENIES distributions (default: a shift file's own folder "
                                           "when it holds every distribution the file names, then GENIES_DATA_DIR, "
                                           "then GENIES_HOME/distributions).", "--data-root")
    synthetic_if_no_data: bool = setting(False, "With no GENIES data, run the synthetic suite instead of stopping "
                                                "(make run does).", "--synthetic-if-no-data")
    baseline: str = setting("zero_shot", "Method of the baseline accuracy column.", cli=False)
    target_tuned_interventions: tuple[str, ...] | None = setting(
        None, "Candidates of the target-tuned capability (default: those of --target-tuned).", cli=False)

    def __post_init__(self) -> None:
        if self.out is None:
            raise ConfigError("a run needs an output folder (--out)")
        object.__setattr__(self, "out", Path(self.out))
        if isinstance(self.interventions, str):  # one name, not its letters
            object.__setattr__(self, "interventions", (self.interventions,))
        object.__setattr__(self, "interventions", tuple(self.interventions))
        if not isinstance(self.shifts, str):
            object.__setattr__(self, "shifts", tuple(self.shifts))
        if not self.interventions:
            raise ConfigError("name at least one intervention")
        if self.budget is not None and self.budget not in BUDGETS:
            raise UnknownNameError("budget", self.budget, BUDGETS)
        if self.target_tuned not in TARGET_TUNED_MODES:
            raise UnknownNameError("target-tuned mode", self.target_tuned, TARGET_TUNED_MODES)
        if self.executor not in EXECUTORS:
            raise UnknownNameError("executor", self.executor, EXECUTORS)
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            raise ConfigError("--executor ray needs Ray, which is not installed: pip install 'genies[ray]'")
        if self.ray_address is not None and self.executor != "ray":
            raise ConfigError("--ray-address needs --executor ray")
        if self.hparams_file is not None:  # the file first, explicit hparams (--set) on top
            object.__setattr__(self, "hparams_file", Path(self.hparams_file))
            object.__setattr__(self, "hparams", merge_hparams(read_hparams(self.hparams_file), self.hparams))
        object.__setattr__(self, "mix_target", parse_fractions(self.mix_target))
        self.placement  # noqa: B018 - checks device, dtype, quantize and gpus now, before anything runs
        for name in ("max_train", "max_eval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")

    @property
    def placement(self) -> Placement:
        """Where and at what precision the model runs (`--device`, `--dtype`, `--quantize`, `--gpus`)."""
        return Placement(device=self.device, dtype=self.dtype, quantize=self.quantize, gpus=self.gpus,
                         gpu_memory=self.gpu_memory)

    @property
    def example_budget(self) -> Budget:
        """The budget's caps with --max-train / --max-eval on top."""
        name = self.budget or (self.preset if self.preset in BUDGETS else "paper")
        caps = BUDGETS[name]
        return Budget(self.max_train if self.max_train is not None else caps.max_train,
                      self.max_eval if self.max_eval is not None else caps.max_eval, caps.synthetic_size)

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        """The fields `genies run` exposes as options, in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]


def parse_fractions(values: str | float | tuple | list) -> tuple[float, ...]:
    """`--mix-target 0.01,0.05 --mix-target 0.1` (or numbers) -> (0.01, 0.05, 0.1): sorted, unique,
    each in [0, 1]; 0 is dropped, since fraction 0 is the ordinary cell every run has."""
    items = [values] if isinstance(values, (str, int, float)) else list(values)
    out = set()
    for item in items:
        for text in str(item).split(",") if isinstance(item, str) else [item]:
            try:
                value = float(text)
            except ValueError:
                raise ConfigError(f"--mix-target: {text!r} is not a fraction (expected e.g. 0.01,0.05)") from None
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--mix-target: {value:g} is not a fraction in [0, 1]")
            if value > 0:
                out.add(value)
    return tuple(sorted(out))


def read_hparams(path: Path) -> dict[str, dict[str, Any]]:
    """A hyperparameter file: a JSON object of method name -> {parameter: value}, the format
    `genies sweep` writes as best-hparams.json. Values are checked when the methods are configured."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileError(path, "hyperparameter file not found") from None
    except json.JSONDecodeError as err:
        raise FileError(path, f"not valid JSON ({err})") from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise FileError(path, 'expected {"METHOD": {"PARAM": VALUE, ...}, ...}, e.g. {"lora": {"learning_rate": 1e-4}}')
    return {str(name): dict(values) for name, values in doc.items()}


def merge_hparams(base: Mapping[str, Mapping[str, Any]],
                  top: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """`base` with `top`'s values on top, parameter by parameter."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in top.items():
        merged.setdefault(name, {}).update(values)
    return merged
