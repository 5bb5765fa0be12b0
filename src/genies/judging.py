"""`genies judge`: one external judge (`rm:`, `dpo:`, `judge:`) on the test split of every chosen
distribution, reward-bench style, and how its accuracy moves across the GENIES shifts.

For each distribution: the judge's pair accuracy (exact ties settled by the run's seeded coin,
as everywhere in genies) with a 95 % bootstrap interval over prompts, the length-only baselines
beside it (prefer the longer / the shorter response), and for `judge:` its position bias. Per
scope (all, each category and each family of the shifts the distributions belong to): the mean
accuracy over those distributions with a bootstrap interval over distributions. Per shift whose
source and target were both judged: the accuracy on the source, on the target, and the change -
with nothing fitted, that change is the judge's generalization across the shift.

Predictions go to the shared job store under a key of the judge's checkpoint fingerprints and
result-affecting settings and the split's content, so an interrupted `genies judge` resumes and a
second one over the same data is instant. The results are written to the output folder as
`judge.json` (everything) and `judge.csv` (one row per distribution); the same values give the
same bytes. Beside them, `judge-outcomes.json` keeps, per distribution, how many pairs of each
prompt the judge got right: what a leaderboard needs to compare two judges on the same prompts
(`genies report DIR1 DIR2`). `read_results` reads a folder back. docs/judges.md describes the files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from genies import metrics
from genies._io import write_atomic
from genies._typed_json import decode, read_json
from genies.data.schema import NO_TRAINING_DATA, Distribution, eval_pairs
from genies.data.shift import CATEGORIES, FAMILIES, Shift
from genies.errors import ConfigError, FileError, GeniesError
from genies.interventions._external import ExternalJudge
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.scores import Predictions, pair_with_labels

JUDGE_SCHEMA = 1
JSON_FILE = "judge.json"
CSV_FILE = "judge.csv"
OUTCOMES_FILE = "judge-outcomes.json"
SHIFT_LISTS = ("genies", "all", *FAMILIES, *CATEGORIES)


@dataclass(frozen=True)
class Selection:
    """The distributions to judge, in order, and the shifts among them (for categories,
    families and the per-shift table)."""

    distributions: tuple[str, ...]
    shifts: tuple[Shift, ...]


def select(selectors: Sequence[str], available: Callable[[], list[str]]) -> Selection:
    """`genies`, `all`, `extreme`, `probing` or a category: the sources and targets of those
    shifts (`all`: also every other distribution `available()` lists); anything else names a
    distribution (a name under the data root or a folder). Named distributions take the built-in
    shifts whose source and target are both named."""
    from genies.data.shifts import get_shifts

    names: list[str] = []
    shifts: list[Shift] = []
    plain: list[str] = []
    for selector in selectors:
        if selector in SHIFT_LISTS:
            listed = get_shifts(selector)
            shifts.extend(listed)
            names.extend(n for s in listed for n in (s.source, s.target))
            if selector == "all":
                names.extend(available())
        else:
            plain.append(selector)
    if plain:
        names.extend(plain)
        named = set(plain)
        shifts.extend(s for s in get_shifts("all") if s.source in named and s.target in named)
    if not names:
        raise ConfigError("genies judge: no distributions selected; use --dists genies, all, a category or names")
    return Selection(tuple(dict.fromkeys(names)), tuple(dict.fromkeys(shifts)))


@dataclass(frozen=True)
class DistributionResult:
    """The judge on one distribution's test split (`judge.csv` has one row per instance)."""

    distribution: str
    accuracy: float
    ci_low: float
    ci_high: float
    pairs: int
    prompts: int
    length_longer_accuracy: float
    length_shorter_accuracy: float
    length_cue_flag: bool
    position_bias: float | None
    categories: tuple[str, ...]
    families: tuple[str, ...]


@dataclass(frozen=True)
class ScopeResult:
    """Mean accuracy over the distributions of a scope (`all`, `category:NAME`, `family:NAME`),
    its 95 % bootstrap interval over those distributions, and the mean length baselines."""

    scope: str
    distributions: int
    mean_accuracy: float
    ci_low: float
    ci_high: float
    mean_length_longer_accuracy: float
    mean_length_shorter_accuracy: float


@dataclass(frozen=True)
class ShiftResult:
    """The judge's accuracy on a shift's source and target test splits; `change` = target - source."""

    source: str
    target: str
    category: str
    family: str
    source_accuracy: float
    target_accuracy: float
    change: float


@dataclass(frozen=True)
class PromptOutcomes:
    """Per prompt of one judged test split, in the split's order: the pairs the judge got right
    (exact ties settled by the run's coin, so sum(hits) / sum(pairs) is the distribution's
    accuracy) and the pairs asked. `examples` is the split's content hash: two runs are compared
    prompt by prompt only where they judged the same examples."""

    distribution: str
    examples: str
    hits: tuple[int, ...]
    pairs: tuple[int, ...]


@dataclass(frozen=True)
class FailedDistribution:
    distribution: str
    error: str


@dataclass(frozen=True)
class JudgeResults:
    """Everything `genies judge` computed; `to_json` is judge.json."""

    judge: str
    spec: str
    hyperparameters: Mapping[str, Any]
    models: tuple[Mapping[str, str], ...]
    seed: int
    max_eval: int | None
    distributions: tuple[DistributionResult, ...]
    scopes: tuple[ScopeResult, ...]
    shifts: tuple[ShiftResult, ...]
    failed: tuple[FailedDistribution, ...] = ()
    position_bias: float | None = None
    versions: Mapping[str, str | None] = field(default_factory=dict)
    outcomes: tuple[PromptOutcomes, ...] = field(default=(), repr=False)  # judge-outcomes.json; () for older runs

    def to_json(self) -> dict[str, Any]:
        """judge.json: everything but the per-prompt outcomes (their own file, so judge.json stays readable)."""
        doc = asdict(self)
        del doc["outcomes"]
        return {"schema": JUDGE_SCHEMA, **doc}


class JudgeFileError(FileError, ValueError):
    """A `genies judge` folder (judge.json, judge-outcomes.json) cannot be read; the message names
    the file and the problem."""


def external_method(spec: str, overrides: Mapping[str, Any]) -> ExternalJudge:
    """The judge a spec names, configured; anything but an external judge is one line."""
    from genies.interventions.registry import load_intervention

    method = load_intervention(spec, None, **dict(overrides))
    if not isinstance(method, ExternalJudge):
        raise ConfigError(f"genies judge: {spec!r} is not an external judge; give rm:MODEL, dpo:POLICY[,REF] or "
                          "judge:MODEL (genies run evaluates the methods it trains)")
    return method


def _prediction_key(method: Intervention, dist: Distribution) -> str:
    from genies.pipeline.jobs import content_hash
    from genies.provenance import package_versions

    return content_hash("judge", method.name, method.code_version(), method.key_hparams(),
                        f"{dist.id}:{dist.content_hash('test')}", "test", package_versions())


def run_judge(spec: str, selectors: Sequence[str], *, data_root: Path | None = None, max_eval: int | None = None,
              seed: int = 0, overrides: Mapping[str, Any] | None = None, cache_dir: Path | None = None,
              on_distribution: Callable[[str, str], None] | None = None) -> JudgeResults:
    """Judge every selected distribution's test split (the first `max_eval` examples of a seeded
    random subset when set, as `genies run --max-eval` keeps them). A distribution that cannot be
    loaded or scored is listed in `failed` and the others go on; a judge that cannot be built
    (no such model, a model of the wrong kind) stops before anything is scored.
    `on_distribution(name, status)` reports progress ("scoring", "cached", "done", "failed")."""
    from genies.data.home import find_data_root
    from genies.data.loading import UnknownDistributionError, closest_names, list_distributions, load_distribution
    from genies.data.shifts import is_distribution_path
    from genies.pipeline.store import JobStore
    from genies.provenance import package_versions

    root = Path(data_root) if data_root is not None else find_data_root()
    available = list_distributions(root)
    selection = select(selectors, lambda: available)
    for name in selectors:  # a misspelt name stops here, before a model loads (a shift list's gaps go to `failed`)
        if name not in SHIFT_LISTS and not is_distribution_path(name) and name not in available:
            raise UnknownDistributionError(name, root, closest_names(name, available))
    method = external_method(spec, overrides or {})
    method.check_placement(method.placement())  # the checkpoints' kind and fingerprints, before anything is scored
    models = method.resolved()
    store = JobStore(cache_dir)
    ctx = FitContext(seed=seed)
    scorer: Scorer | None = None
    report = on_distribution or (lambda name, status: None)
    results: list[DistributionResult] = []
    failed: list[FailedDistribution] = []
    biases: list[tuple[float, int]] = []
    outcomes: list[PromptOutcomes] = []
    for name in selection.distributions:
        try:
            full = load_distribution(name, root)  # only its test split is read
            dist = Distribution.from_examples(full.id, [], [full.test[i] for i in
                                                            full.kept_indices("test", max_eval, seed)], full.metadata)
            key = _prediction_key(method, dist)
            if store.has_predictions(key):
                report(name, "cached")
                pred = store.load_predictions(key)
            else:
                report(name, "scoring")
                if scorer is None:
                    scorer = method.scorer(None, method.fit(None, NO_TRAINING_DATA, ctx), ctx)
                pred = pair_with_labels(scorer(dist.eval_set("test")), dist.test, f"{name}/test")
                store.save_predictions(key, pred)
                report(name, "done")
        except GeniesError as err:
            failed.append(FailedDistribution(name, str(err).splitlines()[0]))
            report(name, "failed")
            continue
        results.append(_distribution_result(dist, pred, selection.shifts, seed))
        outcomes.append(prompt_outcomes(dist, pred, seed))
        if pred.info.get("position_bias") is not None:
            biases.append((float(pred.info["position_bias"]), int(pred.info.get("presentations", 0))))
    accuracy = {r.distribution: r.accuracy for r in results}
    shifts = tuple(ShiftResult(s.source, s.target, s.category, s.family, accuracy[s.source], accuracy[s.target],
                               accuracy[s.target] - accuracy[s.source])
                   for s in selection.shifts if s.source in accuracy and s.target in accuracy)
    total = sum(n for _, n in biases)
    return JudgeResults(
        judge=method.label, spec=spec, hyperparameters=method.hparams(),
        models=tuple({"model": m.spec, "fingerprint": m.fingerprint} for m in models), seed=seed, max_eval=max_eval,
        distributions=tuple(results), scopes=scopes(results, seed), shifts=shifts, failed=tuple(failed),
        position_bias=sum(b * n for b, n in biases) / total if total else None,
        versions=package_versions(("genies", "torch", "transformers")), outcomes=tuple(outcomes))


def prompt_outcomes(dist: Distribution, pred: Predictions, seed: int) -> PromptOutcomes:
    """Right pairs and pairs per prompt of `dist`'s test split, ties settled as `accuracy` settles them."""
    correct = metrics.pair_correct(np.asarray(pred.p_preferred, dtype=np.float64), seed)
    index = np.asarray(pred.example_index, dtype=np.int64)
    n = len(dist.test)
    return PromptOutcomes(dist.id, dist.content_hash("test"),
                          tuple(int(x) for x in np.bincount(index, weights=correct, minlength=n)),
                          tuple(int(x) for x in np.bincount(index, minlength=n)))


def _distribution_result(dist: Distribution, pred: Predictions, shifts: Sequence[Shift], seed: int
                         ) -> DistributionResult:
    p = np.asarray(pred.p_preferred, dtype=np.float64)
    low, high = metrics.bootstrap_accuracy_ci(p, seed, groups=pred.example_index)
    lengths = metrics.length_baselines([(x.preferred, x.dispreferred) for x in eval_pairs(dist.test)], seed)
    mine = [s for s in shifts if dist.id in (s.source, s.target)]
    bias = pred.info.get("position_bias")
    return DistributionResult(
        distribution=dist.id, accuracy=metrics.accuracy(p, seed), ci_low=low, ci_high=high, pairs=len(p),
        prompts=len(dist.test), length_longer_accuracy=lengths.longer, length_shorter_accuracy=lengths.shorter,
        length_cue_flag=lengths.flagged, position_bias=None if bias is None else float(bias),
        categories=tuple(sorted({s.category for s in mine})), families=tuple(sorted({s.family for s in mine})))


def scopes(results: Sequence[DistributionResult], seed: int) -> tuple[ScopeResult, ...]:
    """Mean accuracy over all distributions, then per category and per family of their shifts."""
    members: dict[str, list[DistributionResult]] = {}
    for r in results:
        for scope in ("all", *(f"category:{c}" for c in r.categories), *(f"family:{f}" for f in r.families)):
            members.setdefault(scope, []).append(r)
    order = {"all": 0, "category": 1, "family": 2}
    out = []
    for scope in sorted(members, key=lambda s: (order[s.split(":")[0]], s)):
        group = members[scope]
        mean, low, high = metrics.mean_with_ci([r.accuracy for r in group], seed)
        out.append(ScopeResult(scope, len(group), mean, low, high,
                               float(np.mean([r.length_longer_accuracy for r in group])),
                               float(np.mean([r.length_shorter_accuracy for r in group]))))
    return tuple(out)


def csv_rows(results: JudgeResults) -> list[dict[str, Any]]:
    """judge.csv's rows: one per distribution, lists joined with ';'."""
    return [{**asdict(r), "categories": ";".join(r.categories), "families": ";".join(r.families)}
            for r in results.distributions]


def write_results(results: JudgeResults, out: Path) -> None:
    """judge.json (strict JSON: NaN as null), judge.csv and judge-outcomes.json (compact) in `out`
    (created), each written atomically."""
    import csv
    import io
    import json

    from genies.pipeline.run_dir import plain_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / JSON_FILE, json.dumps(plain_json(results.to_json()), indent=1) + "\n")
    buffer = io.StringIO()
    rows = csv_rows(results)
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(plain_json(rows))
    write_atomic(out / CSV_FILE, buffer.getvalue())
    outcomes = {"schema": JUDGE_SCHEMA, "outcomes": [asdict(o) for o in results.outcomes]}
    write_atomic(out / OUTCOMES_FILE, json.dumps(outcomes, separators=(",", ":")) + "\n")


def read_results(folder: Path) -> JudgeResults:
    """A folder `write_results` wrote, read back into typed values (NaN where judge.json has null);
    the outcomes are () when judge-outcomes.json is absent (a folder from before it existed).
    Anything unreadable is one `JudgeFileError` naming the file and the field."""
    folder = Path(folder)
    if not folder.is_dir():
        raise JudgeFileError(folder, "folder not found")
    path = folder / JSON_FILE
    doc = read_json(path, partial(JudgeFileError, path), f"no {JSON_FILE}: is {folder} a `genies judge --out` folder?")
    if not isinstance(doc, dict) or doc.get("schema") != JUDGE_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise JudgeFileError(path, f"schema {found!r} is not supported (this genies reads {JUDGE_SCHEMA}); "
                                   "rerun the same `genies judge` command to rewrite it from the cached predictions")
    results = decode(JudgeResults, {k: v for k, v in doc.items() if k not in ("schema", "outcomes")},
                     partial(JudgeFileError, path))
    extra = folder / OUTCOMES_FILE
    if extra.exists():
        side = read_json(extra, partial(JudgeFileError, extra))
        if not isinstance(side, dict) or not isinstance(side.get("outcomes"), list):
            raise JudgeFileError(extra, "expected an object with an 'outcomes' list")
        results = replace(results, outcomes=decode(tuple[PromptOutcomes, ...], side["outcomes"],
                                                   partial(JudgeFileError, extra), "outcomes"))
    for o in results.outcomes:
        if len(o.hits) != len(o.pairs) or any(h < 0 or h > n for h, n in zip(o.hits, o.pairs, strict=True)):
            raise JudgeFileError(extra, f"{o.distribution}: hits and pairs do not match prompt by prompt")
    return results
