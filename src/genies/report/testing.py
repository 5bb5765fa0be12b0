"""Generate RUN_DIRs that follow the RUNDIR contract exactly, for the report's tests and demos.

The numbers are synthetic but consistent: every evaluation's accuracy and Brier score are
computed from its own pair probabilities, and every row's metrics from its evaluations, so a
test can check what the report shows against what the files say.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genies.data.shift import CATEGORIES

CSV_COLUMNS = (
    "source",
    "target",
    "target_reference",
    "generalization_accuracy",
    "baseline_accuracy",
    "baseline_intervention",
    "target_tuned_capability",
    "target_tuned_capability_intervention",
    "source_ID_accuracy",
    "RMS_calibration_error",
    "differential_elicitation",
    "intervention",
    "category",
    "family",
    "elicitation",
    "brier",
    "ece",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "length_longer_accuracy",
    "length_shorter_accuracy",
    "length_cue_flag",
)
WORDS = (
    "the model should answer the question carefully and explain each step of its reasoning about history "
    "code cooking math persuasion ranking raven matrices spanish comma separated quality sycophancy truth "
    "persona reward power survival gender feedback ambitious ethical helpful refuse"
).split()
PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n"
)


@dataclass(frozen=True)
class FakeShift:
    source: str
    target: str
    category: str
    family: str


def fake_shifts(n: int, n_sources: int = 12) -> list[FakeShift]:
    """n shifts over the 8 categories; sources are reused, as alpaca_mmlu is in the real list."""
    shifts = []
    for k in range(n):
        category = CATEGORIES[k % len(CATEGORIES)]
        family = "probing" if category in ("spurious_cues", "unwanted_personas") else "extreme"
        shifts.append(FakeShift(f"source_{k % n_sources}", f"target_{k}", category, family))
    return shifts


def _text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def fake_examples(
    name: str, n: int, seed: int, prompt_words: int = 60, response_words: int = 20
) -> list[dict[str, Any]]:
    """n examples of 2-4 responses; the first few embed the distribution name for search tests."""
    rng = random.Random(f"{seed}-{name}")
    k = rng.choice((2, 3, 4))
    out = []
    for i in range(n):
        prompt = f"{PREAMBLE}[{name} #{i}] {_text(rng, prompt_words)}\n\n### Response:\n"
        responses = [f"({chr(65 + j)}) {_text(rng, response_words)}" for j in range(k)]
        out.append({"prompt": prompt, "responses": responses, "preferred": rng.randrange(k)})
    return out


def _evaluation(
    intervention: str,
    trained_on: str | None,
    dist: str,
    examples: list[dict[str, Any]],
    skill: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Pair probabilities drawn around `skill` (the chance the preferred response wins)."""
    pairs = []
    for i, ex in enumerate(examples):
        for j in range(len(ex["responses"])):
            if j == ex["preferred"]:
                continue
            right = rng.random() < skill
            confidence = 0.5 + 0.5 * rng.beta(2, 2)
            pairs.append(
                {
                    "example_index": i,
                    "preferred_index": ex["preferred"],
                    "dispreferred_index": j,
                    "p_preferred": round(float(confidence if right else 1 - confidence), 4),
                }
            )
    p = np.array([q["p_preferred"] for q in pairs])
    return {
        "intervention": intervention,
        "trained_on": trained_on,
        "distribution": dist,
        "split": "test",
        "accuracy": float(np.mean(p > 0.5)),
        "brier": float(np.mean((1 - p) ** 2)),
        "average_probability": float(p.mean()),
        "examples": examples,
        "pairs": pairs,
        "response_scores": None,
    }


def _bootstrap(values: list[float], rng: np.random.Generator, n: int = 300) -> tuple[float, float]:
    arr = np.asarray(values)
    means = arr[rng.integers(0, len(arr), (n, len(arr)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


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
) -> Path:
    """Write a complete RUN_DIR (results.csv/json, evaluations/, manifest.json, log.txt)."""
    root = Path(run_dir)
    (root / "evaluations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shifts = fake_shifts(n_shifts)
    dists = {
        name: fake_examples(name, n_examples, seed, prompt_words, response_words)
        for s in shifts
        for name in (s.source, s.target)
    }
    written: dict[str, dict[str, Any]] = {}

    def evaluation(intervention: str, trained_on: str | None, dist: str, skill: float) -> str:
        name = f"evaluations/{intervention}__{trained_on or 'none'}__{dist}.json"
        if name not in written:
            written[name] = _evaluation(intervention, trained_on, dist, dists[dist], skill, rng)
            (root / name).write_text(json.dumps(written[name]), encoding="utf-8")
        return name

    rows = []
    for s in shifts:
        base_file = evaluation("zero_shot", None, s.target, 0.45)
        att = float(rng.uniform(0.8, 1.0))
        for k, intervention in enumerate(interventions):
            target_file = (
                base_file
                if intervention == "zero_shot"
                else evaluation(
                    intervention, s.source, s.target, float(np.clip(0.45 + 0.05 * k + rng.normal(0, 0.1), 0.05, 0.95))
                )
            )
            source_file = evaluation(intervention, s.source, s.source, 0.8)
            ga, base = written[target_file]["accuracy"], written[base_file]["accuracy"]
            n_pairs = len(written[target_file]["pairs"])
            half = 1.96 * (ga * (1 - ga) / max(1, n_pairs)) ** 0.5
            rows.append(
                {
                    "source": s.source,
                    "target": s.target,
                    "target_reference": s.target,
                    "generalization_accuracy": ga,
                    "baseline_accuracy": base,
                    "baseline_intervention": "zero_shot",
                    "target_tuned_capability": att,
                    "target_tuned_capability_intervention": "lora",
                    "source_ID_accuracy": written[source_file]["accuracy"],
                    "RMS_calibration_error": float(rng.uniform(0, 0.3)),
                    "differential_elicitation": (ga - base) / att,
                    "intervention": intervention,
                    "category": s.category,
                    "family": s.family,
                    "elicitation": ga / att,
                    "brier": written[target_file]["brier"],
                    "ece": float(rng.uniform(0, 0.3)),
                    "accuracy_ci_low": max(0.0, ga - half),
                    "accuracy_ci_high": min(1.0, ga + half),
                    "length_longer_accuracy": float(rng.uniform(0, 1)),
                    "length_shorter_accuracy": float(rng.uniform(0, 1)),
                    "length_cue_flag": bool(rng.random() < 0.1),
                    "target_evaluation": target_file,
                    "source_evaluation": source_file,
                    "baseline_evaluation": base_file,
                }
            )
    aggregates = []
    scopes = (
        ["all"]
        + [f"category:{c}" for c in dict.fromkeys(s.category for s in shifts)]
        + [f"family:{f}" for f in dict.fromkeys(s.family for s in shifts)]
    )
    for intervention in interventions:
        for scope in scopes:
            chosen = [
                r
                for r in rows
                if r["intervention"] == intervention
                and (scope == "all" or scope == f"category:{r['category']}" or scope == f"family:{r['family']}")
            ]
            de = [r["differential_elicitation"] for r in chosen]
            low, high = _bootstrap(de, rng)
            aggregates.append(
                {
                    "intervention": intervention,
                    "scope": scope,
                    "mean_de": float(np.mean(de)),
                    "ci_low": low,
                    "ci_high": high,
                    "n_shifts": len(de),
                    "mean_generalization_accuracy": float(np.mean([r["generalization_accuracy"] for r in chosen])),
                }
            )
    results = {
        "schema_version": 1,
        "run": {
            "model": model,
            "model_fingerprint": f"fp-{seed}",
            "preset": preset,
            "seed": seed,
            "shifts": "synthetic",
            "interventions": list(interventions),
            "target_tuned": "default",
        },
        "rows": rows,
        "aggregates": aggregates,
        "failed": [
            {"job": f"fit ccs on source_{k}", "error": "Traceback ...\nRuntimeError: synthetic failure"}
            for k in range(failed)
        ],
    }
    (root / "results.json").write_text(json.dumps(results), encoding="utf-8")
    with (root / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (root / "manifest.json").write_text(json.dumps({"command": "synthetic", "seed": seed}), encoding="utf-8")
    (root / "log.txt").write_text("".join(f"ok {name}\n" for name in written), encoding="utf-8")
    return root
