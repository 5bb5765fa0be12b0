"""The GENIES metrics of a run, computed from its stored predictions: rows, aggregates, evaluations.

`compute_results` is pure: it reads predictions from the job store and returns a `ComputedRun`;
`genies.pipeline.run_dir.write_run` writes it. Everything is computed from stored predictions
and the run seed only, so the same plan gives byte-identical `results.csv` / `results.json` /
`evaluations/*.json` whether the jobs ran just now, in an interrupted earlier run or in another
run sharing the cache. The manifest is the one file that records the circumstances (timings,
hardware) and so differs between runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from genies import intervals, metrics
from genies.data.schema import eval_pairs
from genies.pipeline.run_dir import (
    ComputedRun,
    Evaluation,
    FailedJob,
    ResultRow,
    RunResults,
    load_run,
    plain_json,
    write_run,
)

if TYPE_CHECKING:
    from genies.data.schema import Distribution
    from genies.data.shift import Shift
    from genies.pipeline.jobs import PredictJob
    from genies.pipeline.plan import Plan
    from genies.pipeline.store import JobStore

# The schema's reader and writer are re-exported: `genies.load_run` and the pipeline import them from here.
__all__ = ["ComputedRun", "ResultRow", "RunResults", "compute_results", "load_run", "result_row", "summarize",
           "write_run"]


class StoredPredictions(Protocol):
    """What the metrics read from one stored prediction job (the store's `Predictions`)."""

    example_index: np.ndarray
    preferred_index: np.ndarray
    dispreferred_index: np.ndarray
    p_preferred: np.ndarray
    response_scores: Sequence[np.ndarray | None] | None
    info: Mapping[str, Any]


def compute_results(plan: Plan, store: JobStore, distribution: Callable[[str], Distribution], seed: int,
                    run: Mapping[str, Any], failed: Sequence[Mapping[str, str]] = ()) -> ComputedRun:
    """Rows, aggregates and the evaluation documents the rows point to, from stored predictions.

    `failed` lists the jobs that failed (`{"job": label, "error": text}`). Cells with a missing
    prediction are left out of the rows and listed in `failed_cells`. Writes nothing.
    """
    evaluations: dict[str, Evaluation] = {}  # by job key: each prediction is read and scored once

    def evaluation(job: PredictJob) -> Evaluation:
        if job.key not in evaluations:
            evaluations[job.key] = _evaluation(job, job.data(distribution), store.load_predictions(job.key),
                                               seed)
        return evaluations[job.key]

    rows, replicates, failed_cells = [], [], []
    for cell in plan.cells:
        needed = (cell.generalization, cell.source_id, cell.baseline, *cell.target_tuned)
        if not all(store.has_predictions(j.key) for j in needed):
            failed_cells.append(f"{cell.intervention}: {cell.shift.name}")
            continue
        # Target-tuned capability: the best candidate on R's test split (ties: first candidate);
        # none with `--target-tuned none`.
        winner = max(cell.target_tuned, key=lambda j: evaluation(j).accuracy, default=None)
        row, reps = result_row(cell.shift, cell.intervention, evaluation(cell.generalization),
                               evaluation(cell.source_id), evaluation(cell.baseline),
                               None if winner is None else evaluation(winner), seed, target_mix=cell.target_mix)
        rows.append(row)
        replicates.append(reps)
    # Only the evaluations a row points to are written (not the losing target-tuned candidates).
    pointed = {p for row in rows for p in row.evaluation_paths()}
    written = {ev.path: ev for ev in evaluations.values() if ev.path in pointed}
    results = summarize(run, rows, replicates, seed, failed=tuple(FailedJob(job=f["job"], error=f["error"])
                                                                  for f in failed),
                        failed_cells=tuple(failed_cells))
    return ComputedRun(results, tuple(written[p] for p in sorted(written)))


def _evaluation(job: PredictJob, dist: Distribution, pred: StoredPredictions, seed: int) -> Evaluation:
    p = np.asarray(pred.p_preferred, dtype=np.float64)
    scores = pred.response_scores
    return Evaluation(
        intervention=job.fit.intervention,
        trained_on=job.fit.trained_on,
        distribution=dist.id,
        split=job.split,
        accuracy=metrics.accuracy(p, seed),
        brier=metrics.brier(p),
        average_probability=metrics.average_probability(p),
        examples=tuple(dist.split(job.split)),
        example_index=np.asarray(pred.example_index, dtype=np.int64),
        preferred_index=np.asarray(pred.preferred_index, dtype=np.int64),
        dispreferred_index=np.asarray(pred.dispreferred_index, dtype=np.int64),
        p_preferred=p,
        response_scores=None if scores is None else tuple(
            None if s is None else tuple(float(v) for v in np.asarray(s, dtype=np.float64).reshape(-1))
            for s in scores),
        info=plain_json(pred.info or {}),
    )


def summarize(run: Mapping[str, Any], rows: Sequence[ResultRow], replicates: Sequence[np.ndarray], seed: int,
              n_boot: int = intervals.N_BOOT, **extra: Any) -> RunResults:
    """The run's results from its rows and each row's DE replicates: per-intervention aggregates
    with two-level intervals and the paired comparisons of every two interventions, over the
    ordinary rows only (a target-mixing row is an ablation, not a shift's result)."""
    de: dict[str, dict[str, float]] = {}
    by_shift: dict[str, dict[str, np.ndarray]] = {}
    ordinary = [(row, reps) for row, reps in zip(rows, replicates, strict=True) if not row.target_mix]
    for row, reps in ordinary:
        shift = f"{row.source}->{row.target}"
        de.setdefault(row.intervention, {})[shift] = row.differential_elicitation
        by_shift.setdefault(row.intervention, {})[shift] = reps
    return RunResults(
        run=dict(run), rows=tuple(rows),
        aggregates=tuple(metrics.aggregate_rows([asdict(r) for r, _ in ordinary], seed, n_boot,
                                                [reps for _, reps in ordinary])),
        comparisons=tuple(intervals.compare(de, by_shift, seed, n_boot)), **extra)


def _prompt_hits(ev: Evaluation, seed: int) -> intervals.PromptHits:
    return intervals.PromptHits.from_pairs(metrics.pair_correct(ev.p_preferred, seed), ev.example_index,
                                           len(ev.examples))


def result_row(shift: Shift, intervention: str, gen: Evaluation, source_id: Evaluation, base: Evaluation,
               tt: Evaluation | None, seed: int, n_boot: int = intervals.N_BOOT,
               target_mix: float = 0.0) -> tuple[ResultRow, np.ndarray]:
    """One cell's row from its four evaluations (generalization on T's test split, in-distribution
    on S's, the baseline on T's, the target-tuned winner on R's, None without a target-tuned
    reference: A_tt, DE and elicitation are then NaN), and its DE's prompt-level bootstrap
    replicates (`genies.intervals`). `target_mix`: the fraction of target examples the
    intervention trained on (0 for an ordinary cell)."""
    p, acc = gen.p_preferred, gen.accuracy
    low, high = metrics.bootstrap_accuracy_ci(p, seed, groups=gen.example_index, n_boot=n_boot)
    if tt is None:
        a_tt, reps = math.nan, np.full(n_boot, np.nan)
    else:
        a_tt = tt.accuracy
        reps = intervals.de_replicates(
            _prompt_hits(gen, seed), _prompt_hits(base, seed), _prompt_hits(tt, seed),
            intervals.prompt_draws(len(gen.examples), seed, gen.distribution, gen.split, n_boot),
            intervals.prompt_draws(len(tt.examples), seed, tt.distribution, tt.split, n_boot))
    de_low, de_high = intervals.percentile_interval(reps)
    lengths = metrics.length_baselines([(q.preferred, q.dispreferred) for q in eval_pairs(gen.examples)], seed)
    return ResultRow(
        source=shift.source, target=shift.target, target_reference=shift.target_reference,
        generalization_accuracy=acc, baseline_accuracy=base.accuracy,
        baseline_intervention=base.intervention,
        target_tuned_capability=a_tt, target_tuned_capability_intervention=tt.intervention if tt else "",
        source_ID_accuracy=source_id.accuracy,
        RMS_calibration_error=metrics.rms_calibration_error(p),
        differential_elicitation=metrics.differential_elicitation(acc, base.accuracy, a_tt),
        intervention=intervention, category=shift.category, family=shift.family,
        elicitation=metrics.elicitation(acc, a_tt), brier=gen.brier,
        ece=metrics.expected_calibration_error(p), accuracy_ci_low=low, accuracy_ci_high=high,
        de_ci_low=de_low, de_ci_high=de_high,
        length_longer_accuracy=lengths.longer, length_shorter_accuracy=lengths.shorter,
        length_cue_flag=lengths.flagged, average_probability=gen.average_probability,
        legacy_RMS_calibration_error=metrics.legacy_rms_calibration_error(p),
        target_evaluation=gen.path, source_evaluation=source_id.path,
        baseline_evaluation=base.path, target_tuned_evaluation=tt.path if tt else "",
        target_mix=target_mix,
    ), reps
