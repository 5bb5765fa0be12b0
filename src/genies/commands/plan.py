"""`genies plan`: every job of a run with its estimated peak memory, placement and time, before
anything loads (the model's config.json is all it reads; no weights, no data needed).

The jobs are those `genies run` would plan for the same options (`build_plan`), each sized by
`genies.pipeline.sizing`. Without a GPU here, `--gpus`, `--gpu-memory` or `--gpu-type` plans for
GPUs anyway (an H100 unless `--gpu-type` says otherwise); with none of them and no GPU, it plans
for this machine's CPU and measures its matmul rate. The table is plain text of at most 80
columns, so it reads the same in a terminal, a log and a pasted issue.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from genies.errors import ConfigError
from genies.models.memory import GIB, GPUS, PUBLISHED, ModelShape, Precision
from genies.pipeline.config import RunConfig
from genies.pipeline.plan import Plan
from genies.pipeline.sizing import (
    TYPICAL_DATA,
    DataShape,
    Hardware,
    JobSize,
    Sizer,
    by_intervention,
    check_fits,
    hardware_for,
    size_plan,
    totals,
)

WIDTH = 80
JOB_WIDTH = 46


def model_config(name: str, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """The config dict of `name`: a published shape (`llama-7b` ...), the embedded model's shape
    (`default`: its converted config.json when there is one, else the built-in copy), a config.json
    file, a model folder, or anything else `genies run --model` takes (a cached hub id)."""
    if name in PUBLISHED:
        return dict(PUBLISHED[name])
    if name == "default":  # the embedded model's shape, converted or not: planning converts nothing
        from genies.doctor.shapes import shape_spec

        return shape_spec("default").fields
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".json":
        file = path
    else:
        from genies.models.loading import resolve_model_folder

        file = resolve_model_folder(name, trust_remote_code=trust_remote_code) / "config.json"
    try:
        return json.loads(file.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{file}: not a readable model config ({err})") from None


def duration(seconds: float | None) -> str:
    """12 s, 3.4 min, 2.1 h; "-" when there is no estimate."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def short_label(size: JobSize) -> str:
    """A fit as `fit lora on alpaca_easy`; a prediction, listed under its fit, as `  -> alpaca_hard`."""
    if size.kind == "fit":
        return f"fit {size.intervention} on {size.distribution or '(no training data)'}"
    split = size.label.rsplit("/", 1)[-1]
    return f"  -> {size.distribution}" + ("" if split == "test" else f"/{split}")


def table_lines(sizes: list[JobSize], hardware: Hardware, header: list[str]) -> list[str]:
    """The plan as lines of at most WIDTH characters: a header, one line per job, the totals."""
    head = f"{'job':<{JOB_WIDTH}} {'peak GiB':>8} {'placement':<13} {'time':>9}"
    lines = [part for line in header for part in textwrap.wrap(line, WIDTH, subsequent_indent="  ")]
    lines += [head, "-" * len(head)]
    for s in sizes:
        lines.append(f"{_short(short_label(s), JOB_WIDTH):<{JOB_WIDTH}} {s.peak / GIB:>8.1f} "
                     f"{s.placement(hardware):<13} {duration(s.seconds):>9}")
    lines.append("-" * len(head))
    lines.append(f"{'by intervention':<{JOB_WIDTH - 10}} {'jobs':>5} {'peak GiB':>8} {'GPUs' if hardware.gpu else '':>5}"
                 f" {'ckpt':>4} {'hours':>7}")
    for name, group in by_intervention(sizes).items():
        hours = "-" if group["hours"] is None else f"{group['hours']:.2f}"
        devices = str(group["max_devices"]) if hardware.gpu else ""
        lines.append(f"{_short(name, JOB_WIDTH - 10):<{JOB_WIDTH - 10}} {group['jobs']:>5} {group['peak_gib']:>8.1f} "
                     f"{devices:>5} {group['gradient_checkpointing']:>4} {hours:>7}")
    t = totals(sizes)
    lines.append("-" * len(head))
    lines.append(f"{t['jobs']} jobs ({t['fits']} fits, {t['predictions']} predictions); largest peak "
                 f"{t['peak_gib']:.1f} GiB; {t['not_fitting']} do not fit")
    if t["hours"] is not None:
        lines.append(_short(f"time one job after another {duration(t['hours'] * 3600)}; "
                            f"{'GPU' if hardware.gpu else 'CPU'}-hours {t['device_hours']:.2f}", WIDTH))
    if t["gradient_checkpointing"]:
        lines.append(f"{t['gradient_checkpointing']} reward-model fits need gradient checkpointing (+ckpt)")
    return lines


def plan_command(
    model: str = typer.Option("default", "--model", help="default | llama-7b | llama-13b | llama-30b | llama-70b | "
                                                         "a model folder | a config.json | a cached hub id"),
    interventions: list[str] = typer.Option(["mms"], "--intervention", "-i", help="Intervention; repeat for several."),
    shifts: str = typer.Option("genies", "--shifts", help="genies | all | <category> | a shift file ..."),
    preset: str = typer.Option("cpu", "--preset", help="Each method's hyperparameter preset: cpu | paper."),
    budget: str | None = typer.Option(None, "--budget", help="Examples per distribution: cpu | paper (default: "
                                                              "the preset's namesake)."),
    max_train: int | None = typer.Option(None, "--max-train", help="Train examples per distribution."),
    max_eval: int | None = typer.Option(None, "--max-eval", help="Test examples per distribution."),
    target_tuned: str = typer.Option("default", "--target-tuned", help="default | best"),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when there is one or one is asked for) | "
                                                         "cpu | cuda"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 on GPU, float32 on CPU) | float32 | "
                                                       "bfloat16 | float16"),
    quantize: str = typer.Option("none", "--quantize", help="none | 8bit | 4bit"),
    gpus: int | None = typer.Option(None, "--gpus", help="GPUs a job may shard its model over."),
    gpu_memory: float | None = typer.Option(None, "--gpu-memory", help="GiB per GPU to plan for (default: "
                                                                          "90 percent of what the GPU has)."),
    gpu_type: str | None = typer.Option(None, "--gpu-type", help=f"GPU to plan for: {' | '.join(GPUS)} "
                                                                 "(default: the visible one, else h100)."),
    set_: list[str] = typer.Option([], "--set", help="Hyperparameter override INTERVENTION.PARAM=VALUE."),
    data_root: Path | None = typer.Option(None, "--data-root", help="GENIES data to take token counts from "
                                                                    "(default: GENIES_DATA_DIR when set)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Estimate every job of a run: peak memory, placement (CPU, GPUs, gradient checkpointing) and time."""
    from genies.commands.run import parse_overrides
    from genies.pipeline.config import RunConfig

    # RunConfig checks every option as `genies run` would (names, budgets, counts)
    config = RunConfig(out=Path("."), model=model, interventions=tuple(interventions), shifts=shifts, preset=preset,
                       budget=budget, max_train=max_train, max_eval=max_eval, target_tuned=target_tuned,
                       hparams=parse_overrides(set_), device=device, dtype=dtype, quantize=quantize, gpus=gpus,
                       gpu_memory=gpu_memory, data_root=data_root)
    shape = ModelShape.from_config(model_config(model))
    hardware, precision = hardware_for(device=device, gpus=gpus, gpu_memory=gpu_memory, gpu_type=gpu_type,
                                       dtype=dtype, quantize=quantize)
    plan, data, tokens = plan_for(config, precision)
    sizes = size_plan(plan, Sizer(shape, precision, hardware.gpu, data), hardware)
    if as_json:
        document = {"model": model, "shape": shape.describe(),
                    "precision": {"dtype": precision.dtype, "quantize": precision.quantize},
                    "hardware": {"kind": hardware.kind, "name": hardware.name, "devices": hardware.devices,
                                 "memory_gib": round(hardware.memory / GIB, 3),
                                 "flop_rate": None if hardware.rate is None else hardware.rate.source},
                    "tokens": tokens, "jobs": [s.to_json(hardware) for s in sizes],
                    "by_intervention": by_intervention(sizes), "totals": totals(sizes)}
        typer.echo(json.dumps(document, indent=2))
        return
    where = (f"{hardware.devices} x {hardware.name} GPU, {hardware.memory / GIB:.1f} GiB usable each"
             if hardware.gpu else f"CPU, {hardware.memory / GIB:.1f} GiB usable")
    quantized = "" if precision.quantize == "none" else f", {precision.quantize}"
    header = [f"model {model}: {shape.parameters('lm') / 1e9:.2f} B parameters, {precision.dtype}{quantized}",
              f"on {where}", f"time: {hardware.rate.source if hardware.rate else 'not estimated'}",
              f"tokens: {tokens}", ""]
    for line in table_lines(sizes, hardware, header):
        typer.echo(line)
    try:
        check_fits(sizes, hardware)
    except ConfigError as err:
        typer.echo(textwrap.fill(f"does not fit: {err}", WIDTH))


def plan_for(config: RunConfig, precision: Precision) -> tuple[Plan, Callable[[str], DataShape], str]:
    """The run's plan as `genies run` would build it (names stand in for data hashes), a
    distribution -> DataShape function, and a line saying where its token counts come from."""
    from genies.data.home import DataNotFoundError
    from genies.data.loading import load_distribution
    from genies.data.shifts import data_root_for, get_shifts, shift_file_of
    from genies.pipeline.api import TARGET_TUNED_CANDIDATES, intervention_spec
    from genies.pipeline.plan import build_plan, configure_methods

    specs = [intervention_spec(name) for name in config.interventions]
    candidates = tuple(config.target_tuned_interventions or TARGET_TUNED_CANDIDATES[config.target_tuned])
    methods = configure_methods([*specs, config.baseline, *candidates], config.preset, config.hparams)
    shifts = get_shifts(config.shifts) if isinstance(config.shifts, str) else list(config.shifts)
    if not shifts:
        raise ConfigError("the shift list is empty")
    plan = build_plan(interventions=specs, shifts=shifts, methods=methods, seed=config.seed, model_fingerprint="plan",
                      precision={"dtype": precision.dtype, "quantize": precision.quantize},
                      data_hash=lambda name, split: f"{name}/{split}", baseline=config.baseline,
                      target_tuned=candidates)
    caps = config.example_budget
    root = config.data_root
    if root is None:
        try:
            root = data_root_for(shifts, shift_file_of(config.shifts))
        except DataNotFoundError:
            root = None
    shapes: dict[str, DataShape] = {}

    def data(name: str) -> DataShape:
        if name not in shapes:
            if root is not None and (Path(root) / name).is_dir():
                shapes[name] = DataShape.of(load_distribution(name, root).limited(caps.max_train, caps.max_eval))
            else:
                shapes[name] = TYPICAL_DATA.capped(caps.max_train, caps.max_eval)
        return shapes[name]

    if root is None:
        return plan, data, "typical GENIES lengths (no data: see GENIES_DATA_DIR, --data-root)"
    return plan, data, f"the data in {root} (typical GENIES lengths where it lacks a distribution)"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
