"""The `legacy` adapter: run an intervention folder written for the original GENIES unchanged.

It is an ordinary plugin (the `genies.interventions` entry point `legacy`), named by the spec
string `legacy:PATH`, so any process - a Ray worker included - rebuilds it from that string or
from its hyperparameters; nothing is registered at run time. Its rows are labelled
`legacy:<folder name>`.

Such a folder holds `eval.py` and usually `train.py`; the original driver ran them as scripts
(through python-fire) with these arguments, which genies passes the same way:

    train.py --model_dir M --output_dir O --training_distribution_dir S --test_distribution_dirs "['S']"
             [--key value for every train_kwargs item]
    eval.py  --model_dir O --distribution_dirs "['D']" --output_paths "['P']"
             [--key value for every eval_kwargs item]

M is the base model's safetensors folder (`LoadedModel.path`), O the folder train.py writes its
model to (`model/` in the fitted state's folder; eval.py gets M instead when there is no
train.py), S and D folders in the original layout (train.json, test.json, metadata.json, folder
name = distribution id) that genies writes into a temporary folder: S holds the source's train
split and an empty test.json (fit sees no test split), D the split being scored as test.json and
an empty train.json. P is the JSON file eval.py must write. Lists are Python list literals, as
the original driver wrote them. The original fixed only these argument names, not this contract;
it is defined here and in docs/interventions.md.

The output JSON must hold `eval_probabilities`: the probability of the preferred response for
every pair, in the original pair order (`genies.data.schema.eval_pairs`). Its numeric entries
(`eval_accuracy`, ...) are kept as `Scores.info["legacy_metrics"]`. Without one probability per
pair the scoring job fails with a message naming the folder and the distribution.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genies.data.schema import Distribution, EvalSet, Example, eval_pairs
from genies.errors import ConfigError, JobError
from genies.interventions.base import Intervention, Scorer
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import register
from genies.interventions.scores import Scores

if TYPE_CHECKING:
    from genies.models.base import LoadedModel

TAIL_CHARS = 3000
LABEL_PREFIX = "legacy:"


@dataclass(frozen=True)
class LegacyFit:
    """What fitting a legacy folder leaves: whether train.py ran (its model is then `model/` in
    the fitted state's folder, which the job store keeps whole) and the source it trained on."""

    trained: bool
    source: str


def folder_path(folder: str | Path) -> Path:
    """The absolute path of an original-GENIES intervention folder, or a ConfigError naming it."""
    if not str(folder):
        raise ConfigError("legacy: no folder given; name one as legacy:PATH")
    path = Path(folder).expanduser().resolve()
    if not (path / "eval.py").is_file():
        problem = "no eval.py" if path.is_dir() else "no such folder"
        raise ConfigError(f"legacy: {path} is not an intervention folder written for the original GENIES "
                          f"({problem}; such a folder holds eval.py and usually train.py)")
    return path


def scripts_digest(folder: Path) -> str:
    """A digest of every Python file of the folder (relative path and bytes, in a stable order):
    the folder's code as cache keys see it, wherever the folder lies."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@register("legacy", family="external",
          description="Runs a folder written for the original GENIES (train.py / eval.py) as subprocesses.")
@dataclass
class Legacy(Intervention[LegacyFit]):
    # Where and how the scripts run never changes what they compute; their code does, and it
    # enters the keys through `code_version`, so a moved folder keeps its cached jobs.
    folder: str = hparam("", "the intervention folder (holds eval.py, usually train.py)", execution=True)
    python: str = hparam("", "interpreter for the scripts ('' = the one running genies)", execution=True)
    launcher: list[str] = hparam([], "command in front of the interpreter, e.g. ['accelerate', 'launch'] "
                                     "(then `python` is not used)", execution=True)
    pythonpath: list[str] = hparam([], "extra PYTHONPATH entries, e.g. the original repository's src/",
                                   execution=True)
    cwd: str = hparam("", "working directory of the scripts ('' = the folder itself)", execution=True)
    train_kwargs: dict[str, Any] = hparam({}, "extra --key value arguments for train.py")
    eval_kwargs: dict[str, Any] = hparam({}, "extra --key value arguments for eval.py")
    timeout_s: float | None = hparam(None, "seconds before a script is killed (None = no limit)", execution=True)

    listed = False  # means something only with a folder: `legacy:PATH`

    def __post_init__(self) -> None:
        super().__post_init__()
        self.folder = str(folder_path(self.folder))

    @classmethod
    def spec_overrides(cls, argument: str) -> dict[str, Any]:
        """`legacy:PATH` -> the folder's absolute path, checked, so every process finds it."""
        return {"folder": str(folder_path(argument))}

    @property
    def label(self) -> str:
        return LABEL_PREFIX + Path(self.folder).name

    def code_version(self) -> str:
        """The adapter's version and the digest of the folder's scripts: editing train.py or
        eval.py reruns this method's jobs, moving the folder does not."""
        return f"{self.version}+{scripts_digest(Path(self.folder))}"

    @property
    def reads_eval_labels(self) -> bool:
        """True: eval.py evaluates folders in the original layout, whose test.json holds the
        labels, so the scored split is written with them. genies still takes only the per-pair
        probabilities from its output and pairs them with the labels itself."""
        return True

    # -- running ------------------------------------------------------------------------------
    def _command(self, script: str, args: dict[str, Any]) -> list[str]:
        head = list(self.launcher) if self.launcher else [self.python or sys.executable]
        cmd = [*head, str(Path(self.folder) / script)]
        for key, value in args.items():
            cmd += [f"--{key}", str(list(value)) if isinstance(value, (list, tuple)) else str(value)]
        return cmd

    def _run(self, script: str, args: dict[str, Any], log: Path, keep_log: bool) -> None:
        """Run one script with its output in `log`; a failure or a timeout is a JobError with
        the end of that output (and the log's path when it outlives the call)."""
        env = dict(os.environ)
        paths = [*self.pythonpath, self.folder, env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        cmd = self._command(script, args)
        where = f"; log: {log}" if keep_log else ""
        with open(log, "w") as out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            try:
                proc = subprocess.run(cmd, cwd=self.cwd or self.folder, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as err:
                raise JobError(f"legacy: {script} in {self.folder} ran past {self.timeout_s} s{where}") from err
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-TAIL_CHARS:]
            raise JobError(f"legacy: {script} in {self.folder} exited with status {proc.returncode}{where}; "
                           f"its output ends:\n{tail}")

    # -- the interface ------------------------------------------------------------------------
    def fit(self, lm: LoadedModel, train: Distribution, ctx: FitContext) -> LegacyFit:
        if not (Path(self.folder) / "train.py").is_file():
            return LegacyFit(trained=False, source=train.id)
        directory = ctx.artifact_dir()
        model_dir = directory / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="genies-legacy-") as tmp:
            src = _original_folder(Path(tmp), train.id, train.train, train.test, train.metadata)
            ctx.report(f"legacy: running {self.folder}/train.py on {train.id}")
            self._run("train.py", {"model_dir": lm.path, "output_dir": model_dir,
                                   "training_distribution_dir": src, "test_distribution_dirs": [str(src)],
                                   **self.train_kwargs}, directory / "train.log", keep_log=True)
        return LegacyFit(trained=True, source=train.id)

    def scorer(self, lm: LoadedModel, fitted: LegacyFit, ctx: FitContext) -> Scorer:
        model_dir = Path(lm.path)
        if fitted.trained:
            if ctx.state_dir is None:
                raise RuntimeError("legacy: scoring a trained folder needs FitContext.state_dir (its model/)")
            model_dir = Path(ctx.state_dir) / "model"

        def score(data: EvalSet) -> Scores:
            if data.labels is None:
                raise RuntimeError("legacy: eval.py evaluates labelled folders; the EvalSet came without labels")
            examples = [Example(q.prompt, q.responses, label, q.metadata)
                        for q, label in zip(data.queries, data.labels)]
            with tempfile.TemporaryDirectory(prefix="genies-legacy-") as tmp:
                folder = _original_folder(Path(tmp), data.distribution, [], examples, data.metadata)
                output = Path(tmp) / "eval.json"
                ctx.report(f"legacy: running {self.folder}/eval.py on {data.distribution}/{data.split}")
                self._run("eval.py", {"model_dir": model_dir, "distribution_dirs": [str(folder)],
                                      "output_paths": [str(output)], **self.eval_kwargs}, Path(tmp) / "eval.log",
                          keep_log=False)
                where = f"legacy: {self.folder}/eval.py on {data.distribution}/{data.split}"
                if not output.is_file():
                    raise JobError(f"{where} exited normally but wrote no {output.name} at the --output_paths "
                                   "it was given")
                return _scores(examples, json.loads(output.read_text()), where)

        return score


def _original_folder(parent: Path, distribution: str, train: Sequence[Example], test: Sequence[Example],
                     metadata: Mapping[str, Any]) -> Path:
    """A folder in the original layout (train.json, test.json, metadata.json), named after the
    distribution id as the original scripts expect."""
    folder = parent / (re.sub(r"[^A-Za-z0-9_.-]+", "_", distribution) or "distribution")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.json").write_text(json.dumps([ex.to_record() for ex in train]))
    (folder / "test.json").write_text(json.dumps([ex.to_record() for ex in test]))
    (folder / "metadata.json").write_text(json.dumps(dict(metadata)))
    return folder


def _scores(examples: list[Example], doc: dict[str, Any], where: str) -> Scores:
    """eval.py's per-pair probabilities as Scores: [preferred, dispreferred] = p and its mirror
    1 - p, nothing elsewhere; the script's numeric outputs travel in `info`."""
    pairs = eval_pairs(examples)
    probs = doc.get("eval_probabilities")
    if probs is None:
        raise JobError(f"{where}: the output has no eval_probabilities (one probability of the preferred "
                       f"response per pair; it has {', '.join(sorted(doc)) or 'nothing'})")
    if not isinstance(probs, list) or len(probs) != len(pairs):
        count = len(probs) if isinstance(probs, list) else type(probs).__name__
        raise JobError(f"{where}: eval_probabilities holds {count} values for {len(pairs)} pairs "
                       "(a script that drops long examples must still report every pair)")
    bad = [p for p in probs if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1]
    if bad:
        raise JobError(f"{where}: eval_probabilities must be numbers in [0, 1], got {bad[0]!r}")
    beats = [np.full((len(ex.responses), len(ex.responses)), math.nan) for ex in examples]
    for pair, p in zip(pairs, probs):
        beats[pair.example_index][pair.preferred_index, pair.dispreferred_index] = p
        beats[pair.example_index][pair.dispreferred_index, pair.preferred_index] = 1 - p
    metrics = {k: v for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return Scores(beats, None, {"legacy_metrics": metrics})
