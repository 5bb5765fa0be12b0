"""Synthetic run directories for the report's tests and demos, written by the real writer.

The values are typed (`ResultRow`, `Evaluation`, `Aggregate`) and the folder is written by
`genies.pipeline.run_dir.write_run`, the writer `genies run` uses, so a fixture cannot drift from
the run-directory schema. The numbers are synthetic but consistent: every evaluation's metrics
come from its own pair probabilities, every row's from its evaluations and every aggregate from
the rows, through `genies.metrics`, so a test can check what the report shows against the files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genies import metrics
from genies._io import write_atomic
from genies.data.schema import Example, eval_pairs
from genies.data.shift import CATEGORIES, Shift
from genies.pipeline.results import result_row, summarize
from genies.pipeline.run_dir import ComputedRun, Evaluation, FailedJob, write_run

N_BOOT = 200  # bootstrap samples of the fixtures' intervals (fewer than a run's: tests stay fast)

WORDS = (
    "the model should answer the question carefully and explain each step of its reasoning about history "
    "code cooking math persuasion ranking raven matrices spanish comma separated quality sycophancy truth "
    "persona reward power survival gender feedback ambitious ethical helpful refuse"
).split()
PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n"
)
BASELINE, TARGET_TUNED = "zero_shot", "lora"


def fake_shifts(n: int, n_sources: int = 12) -> list[Shift]:
    """n shifts over the 8 categories; sources are reused, as alpaca_mmlu is in the real list."""
    shifts = []
    for k in range(n):
        category = CATEGORIES[k % len(CATEGORIES)]
        family = "probing" if category in ("spurious_cues", "unwanted_personas") else "extreme"
        shifts.append(Shift(f"source_{k % n_sources}", f"target_{k}", f"target_{k}", category, family))
    return shifts


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def fake_examples(name: str, n: int, seed: int, prompt_words: int = 60, response_words: int = 20) -> list[Example]:
    """n examples of 2-4 responses; each prompt embeds the distribution name and index for search tests."""
    rng = random.Random(f"{seed}-{name}")
    k = rng.choice((2, 3, 4))
    out = []
    for i in range(n):
        prompt = f"{PREAMBLE}[{name} #{i}] {_text(rng, prompt_words)}\n\n### Response:\n"
        responses = tuple(f"({chr(65 + j)}) {_text(rng, response_words)}" for j in range(k))
        out.append(Example(prompt, responses, rng.randrange(k)))
    return out


def fake_evaluation(
    intervention: str,
    trained_on: str | None,
    dist: str,
    examples: list[Example],
    skill: float,
    rng: np.random.Generator,
    seed: int = 0,
    info: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Pair probabilities drawn around `skill` (the chance the preferred response wins), in the
    pipeline's canonical pair order."""
    pairs = eval_pairs(examples)
    right = rng.random(len(pairs)) < skill
    confidence = 0.5 + 0.5 * rng.beta(2, 2, len(pairs))
    p = np.round(np.where(right, confidence, 1 - confidence), 4)
    return Evaluation(
        intervention=intervention,
        trained_on=trained_on,
        distribution=dist,
        split="test",
        accuracy=metrics.accuracy(p, seed),
        brier=metrics.brier(p),
        average_probability=metrics.average_probability(p),
        examples=tuple(examples),
        example_index=np.array([q.example_index for q in pairs], dtype=np.int64),
        preferred_index=np.array([q.preferred_index for q in pairs], dtype=np.int64),
        dispreferred_index=np.array([q.dispreferred_index for q in pairs], dtype=np.int64),
        p_preferred=p,
        info=dict(info or {}),
    )


def write_run_dir(
    run_dir: str | Path,
    *,
    n_shifts: int = 6,
    interventions: tuple[str, ...] = ("zero_shot", "lora", "mms"),
    n_examples: int = 20,
    seed: int = 0,
    model: str = "tiny-random",
    preset: str = "test",
    prompt_words: int = 60,
    response_words: int = 20,
    failed: int = 0,
    info: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a complete RUN_DIR (results.csv/json, evaluations/, manifest.json, log.txt).

    `failed` adds that many failed `ccs` fits (and their cells); `info` maps an intervention to
    what it reports beside its predictions, stored in each of its evaluations.
    """
    root = Path(run_dir)
    rng = np.random.default_rng(seed)
    shifts = fake_shifts(n_shifts)
    dists = {
        name: fake_examples(name, n_examples, seed, prompt_words, response_words)
        for s in shifts
        for name in (s.source, s.target)
    }
    evaluations: dict[str, Evaluation] = {}

    def evaluation(intervention: str, trained_on: str | None, dist: str, skill: float) -> Evaluation:
        ev = fake_evaluation(intervention, trained_on, dist, dists[dist], skill, rng, seed,
                             (info or {}).get(intervention))
        return evaluations.setdefault(ev.path, ev)

    rows, replicates = [], []
    for s in shifts:
        baseline = evaluation(BASELINE, None, s.target, 0.45)
        tuned = evaluation(TARGET_TUNED, s.target_reference, s.target_reference, 0.9)
        for k, intervention in enumerate(interventions):
            skill = float(np.clip(0.45 + 0.05 * k + rng.normal(0, 0.1), 0.05, 0.95))
            target = baseline if intervention == BASELINE else evaluation(intervention, s.source, s.target, skill)
            source = evaluation(intervention, None if intervention == BASELINE else s.source, s.source, 0.8)
            row, reps = result_row(s, intervention, target, source, baseline, tuned, seed, N_BOOT)
            rows.append(row)
            replicates.append(reps)
    failed_sources = [f"source_{k}" for k in range(failed)]
    results = summarize(
        {
            "model": model,
            "model_fingerprint": f"fp-{seed}",
            "preset": preset,
            "seed": seed,
            "shifts": "synthetic",
            "interventions": list(interventions),
            "target_tuned": "default",
        },
        rows, replicates, seed, N_BOOT,
        failed=tuple(FailedJob(f"fit ccs on {src}", "Traceback ...\nRuntimeError: synthetic failure")
                     for src in failed_sources),
        failed_cells=tuple(f"ccs: {s.name}" for s in shifts if s.source in failed_sources),
    )
    write_run(root, ComputedRun(results, tuple(evaluations.values())))
    write_atomic(root / "manifest.json", json.dumps({"command": "synthetic", "seed": seed}))
    write_atomic(root / "log.txt", "".join(f"ok {path}\n" for path in sorted(evaluations)))
    return root
