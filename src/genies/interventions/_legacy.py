"""The `legacy` adapter: run an intervention folder written for the original GENIES unchanged.

Such a folder holds `eval.py` and usually `train.py`; the original driver ran them as scripts
(through python-fire) with these arguments, which genies passes the same way:

    train.py --model_dir M --output_dir O --training_distribution_dir S --test_distribution_dirs "['S']"
             [--key value for every train_kwargs item]
    eval.py  --model_dir O --distribution_dirs "['D']" --output_paths "['P']"
             [--key value for every eval_kwargs item]

M is the base model's safetensors folder (`LoadedModel.path`), O the folder train.py writes its
model to (inside the state directory; eval.py gets M instead when there is no train.py), S and
D distribution folders in the original layout (train.json, test.json, metadata.json, folder name
= distribution id), P the JSON file eval.py must write. Lists are Python list literals, as the
original driver wrote them. eval.py evaluates D's test.json; genies writes D itself when the
split asked for is not a test.json on disk (then test.json holds that split and train.json is
empty, so no other labels are exposed). The SPEC records the driver's names but not this
contract; it is defined here and in docs/interventions.md.

The output JSON must contain `eval_accuracy`; if it also has `eval_probabilities` (one
probability of the preferred response per pair, in the original pair order, which equals
`Distribution.eval_pairs`) those become the predictions, otherwise the per-pair probabilities
are NaN and the script's own metrics travel in `Predictions.info`. The script reads the labels
of what it evaluates, so the guarantee that no method reads target labels cannot hold here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genies.data.schema import Distribution, Example
from genies.interventions.base import (
    FitContext,
    Intervention,
    Predictions,
    State,
    get_intervention,
    hparam,
    register,
)
from genies.models.base import LoadedModel

TAIL_CHARS = 3000


@register("legacy", family="external",
          description="Runs a folder written for the original GENIES (train.py / eval.py) as subprocesses.")
@dataclass
class Legacy(Intervention):
    folder: str = hparam("", "the intervention folder (holds eval.py, usually train.py)")
    python: str = hparam("", "interpreter for the scripts ('' = the one running genies)")
    launcher: list[str] = hparam([], "command in front of the interpreter, e.g. ['accelerate', 'launch'] "
                                     "(then `python` is not used)")
    pythonpath: list[str] = hparam([], "extra PYTHONPATH entries, e.g. the original repository's src/")
    cwd: str = hparam("", "working directory of the scripts ('' = the folder itself)")
    train_kwargs: dict[str, Any] = hparam({}, "extra --key value arguments for train.py")
    eval_kwargs: dict[str, Any] = hparam({}, "extra --key value arguments for eval.py")
    timeout_s: float | None = hparam(None, "seconds before a script is killed (None = no limit)")

    presets = {"paper": {}, "cpu": {}}

    def __post_init__(self) -> None:
        super().__post_init__()
        folder = Path(self.folder)
        if not (folder / "eval.py").is_file():
            raise FileNotFoundError(f"legacy: {folder} has no eval.py; an original-style intervention folder "
                                    "holds eval.py and usually train.py")

    # -- running ------------------------------------------------------------------------------
    def _command(self, script: str, args: dict[str, Any]) -> list[str]:
        head = list(self.launcher) if self.launcher else [self.python or sys.executable]
        cmd = [*head, str(Path(self.folder) / script)]
        for key, value in args.items():
            cmd += [f"--{key}", str(list(value)) if isinstance(value, (list, tuple)) else str(value)]
        return cmd

    def _run(self, script: str, args: dict[str, Any], log: Path, keep_log: bool = True) -> None:
        env = dict(os.environ)
        paths = [*self.pythonpath, self.folder, env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        cmd = self._command(script, args)
        with open(log, "w") as out:
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            try:
                proc = subprocess.run(cmd, cwd=self.cwd or self.folder, env=env, stdout=out,
                                      stderr=subprocess.STDOUT, timeout=self.timeout_s)
            except subprocess.TimeoutExpired as err:
                raise RuntimeError(f"legacy: {script} in {self.folder} ran past {self.timeout_s} s") from err
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-TAIL_CHARS:]
            where = f"; log: {log}" if keep_log else ""
            raise RuntimeError(f"legacy: {script} in {self.folder} exited with status {proc.returncode}{where}; "
                               f"its output ends:\n{tail}")

    # -- the interface ------------------------------------------------------------------------
    def fit(self, lm: LoadedModel, source: Distribution, ctx: FitContext) -> State:
        info: dict[str, Any] = {"source": source.id, "trained": False}
        directory = ctx.artifact_dir()
        if (Path(self.folder) / "train.py").is_file():
            model_dir = directory / "model"
            model_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="genies-legacy-") as tmp:
                src = _original_folder(source, "test", Path(tmp), with_train=True)
                ctx.report(f"legacy: running {self.folder}/train.py on {source.id}")
                self._run("train.py", {"model_dir": lm.path, "output_dir": model_dir,
                                       "training_distribution_dir": src, "test_distribution_dirs": [str(src)],
                                       **self.train_kwargs}, directory / "train.log")
            info["trained"] = True
        return State(self.name, self.hparams(), info=info, directory=directory)

    def predict(self, lm: LoadedModel, state: State, dist: Distribution, split: str,
                ctx: FitContext) -> Predictions:
        examples = dist.split(split)
        model_dir = Path(state.directory) / "model" if state.info.get("trained") else Path(lm.path)
        with tempfile.TemporaryDirectory(prefix="genies-legacy-") as tmp:
            data = _original_folder(dist, split, Path(tmp), with_train=False)
            output = Path(tmp) / "eval.json"
            ctx.report(f"legacy: running {self.folder}/eval.py on {dist.id}")
            self._run("eval.py", {"model_dir": model_dir, "distribution_dirs": [str(data)],
                                  "output_paths": [str(output)], **self.eval_kwargs}, Path(tmp) / "eval.log",
                      keep_log=False)
            if not output.is_file():
                raise RuntimeError(f"legacy: {self.folder}/eval.py exited normally but wrote no {output.name} "
                                   "at the --output_paths it was given")
            return _predictions(examples, json.loads(output.read_text()), f"{self.folder}/eval.py")


def _original_folder(dist: Distribution, split: str, tmp: Path, with_train: bool) -> Path:
    """A folder in the original layout whose test.json is `split`; the distribution's own folder
    when it already is one."""
    if dist.path is not None and split == "test" and (Path(dist.path) / "test.json").is_file() \
            and (Path(dist.path) / "train.json").is_file():
        return Path(dist.path)
    folder = tmp / (re.sub(r"[^A-Za-z0-9_.-]+", "_", dist.id) or "distribution")
    folder.mkdir(parents=True, exist_ok=True)
    records = lambda examples: [ex.to_record() for ex in examples]  # noqa: E731
    (folder / "train.json").write_text(json.dumps(records(dist.train) if with_train else []))
    (folder / "test.json").write_text(json.dumps(records(dist.split(split))))
    (folder / "metadata.json").write_text(json.dumps(dist.metadata))
    return folder


def _predictions(examples: list[Example], doc: dict[str, Any], where: str) -> Predictions:
    if "eval_accuracy" not in doc:
        raise ValueError(f"legacy: the output of {where} has no eval_accuracy (keys: {', '.join(sorted(doc))})")
    layout = Predictions.from_scores(examples, [np.zeros(len(ex.responses)) for ex in examples])
    n = len(layout.p_preferred)
    info: dict[str, Any] = {"legacy_metrics": {k: v for k, v in doc.items()
                                               if isinstance(v, (int, float)) and not isinstance(v, bool)}}
    probs = doc.get("eval_probabilities")
    if probs is not None and len(probs) == n:
        p = np.asarray(probs, dtype=np.float64)
    else:
        p = np.full(n, math.nan)
        info["warning"] = (f"{where} reported no per-pair probabilities" if probs is None else
                           f"{where} reported {len(probs)} probabilities for {n} pairs (it may drop long examples)")
    return Predictions(layout.example_index, layout.preferred_index, layout.dispreferred_index, p, None, info)


FOLDER_PREFIX = "legacy:"


def register_folder(folder: str | Path) -> str:
    """Register an original-GENIES folder as the method `legacy:<folder name>` and return that name.

    The pipeline, results and report then treat the folder like any method: its rows are labelled
    with the folder's name, and its scripts' contents enter the job hashes, so editing train.py
    or eval.py reruns exactly that method's jobs.
    """
    path = Path(folder).resolve()
    if not (path / "eval.py").is_file():
        raise FileNotFoundError(f"{path}: not an intervention folder written for the original GENIES (no eval.py)")
    name = FOLDER_PREFIX + path.name
    try:
        registered = get_intervention(name)
    except KeyError:
        registered = None
    if registered is not None:
        if registered.__dataclass_fields__["folder"].default != str(path):
            raise ValueError(f"two intervention folders are both named {path.name!r}; rename one "
                             f"({registered.__dataclass_fields__['folder'].default} and {path})")
        return name
    cls = dataclasses.make_dataclass(
        f"Legacy_{re.sub(r'[^A-Za-z0-9_]', '_', path.name)}",
        [("folder", str, dataclasses.field(default=str(path)))],
        bases=(Legacy,),
    )
    cls.code_fingerprint = classmethod(lambda c: Legacy.code_fingerprint() + _scripts_digest(path))
    register(name, family="external", description=f"original GENIES intervention folder {path}")(cls)
    return name


def _scripts_digest(path: Path) -> bytes:
    """Every Python file of the folder, in a stable order, as one byte string."""
    return b"".join(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes()
                    for p in sorted(path.rglob("*.py")))
