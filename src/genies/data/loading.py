"""Read distributions from the GENIES layout, JSONL files and Hugging Face `datasets`.

Three sources, one result: a `Distribution` whose splits are read on first access, so that
listing or planning over 66 distributions does not parse 100 MB of JSON. Every record goes
through the same checks as `genies data validate` (`genies.data.validation`), and the first
problem raises a `DataError` naming the file, the example index and the problem: nothing is
dropped or repaired silently.

Accepted inputs of `load_distribution`:
- a folder with `train.json` + `test.json` (+ optional `metadata.json`): the GENIES layout;
- a folder with `train.jsonl` + `test.jsonl`: one GENIES record per line;
- a folder written by `DatasetDict.save_to_disk` with `train` and `test` splits, or an
  in-memory `datasets.DatasetDict`; rows are either GENIES records, our export format
  (`prompt`, `responses` list, `labels` list, `metadata` JSON string; see `to_dataset_dict`) or
  the common `prompt`/`chosen`/`rejected` preference format;
- a bare name, looked up under `data_root` (default: `genies.data.home.find_data_root()`).
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genies.data.home import find_data_root
from genies.data.schema import SPLITS, DataError, Distribution, Example
from genies.data.validation import (
    UNPARSED,
    Finding,
    check_metadata,
    check_records,
    check_split_file,
    is_distribution_folder,
    raise_first_error,
    split_files,
)
from genies.errors import GeniesError

if TYPE_CHECKING:
    from datasets import DatasetDict

HF_MARKER = "dataset_dict.json"


class UnknownDistributionError(GeniesError, LookupError):
    """A distribution name that is not in the data root; the message suggests the closest names.

    Not an `UnknownNameError`: that lists every choice, and a data root holds some 70 names, which
    would bury the suggestion on the one error line.
    """

    def __init__(self, name: str, data_root: Path, suggestions: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown distribution {name!r} in {data_root}{hint}")


def closest_names(name: str, candidates: list[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)


def is_hf_folder(path: Path) -> bool:
    return (path / HF_MARKER).is_file()


def list_distributions(data_root: Path) -> list[str]:
    """Names of the sub-folders of `data_root` that hold a distribution, sorted (hidden ones skipped:
    an install in progress writes to a dot-folder before renaming it into place)."""
    return sorted(
        p.name for p in Path(data_root).iterdir()
        if not p.name.startswith(".") and (is_distribution_folder(p) or is_hf_folder(p))
    )


def load_distribution(name_or_path: str | Path | DatasetDict, data_root: Path | None = None) -> Distribution:
    """A lazily loaded distribution from a folder, a name under the data root, or a DatasetDict."""
    if not isinstance(name_or_path, str | Path):
        return from_dataset_dict(name_or_path)
    path = Path(name_or_path).expanduser()
    bare_name = isinstance(name_or_path, str) and "/" not in name_or_path
    if bare_name and (data_root is not None or not path.exists()):
        root = Path(data_root) if data_root is not None else find_data_root()
        path = root / name_or_path
        if not path.exists():
            raise UnknownDistributionError(name_or_path, root, closest_names(name_or_path, list_distributions(root)))
    if not path.exists():
        raise DataError(path, "no such file or folder")
    if is_hf_folder(path):
        return _from_hf_folder(path)
    if path.is_dir():
        return _from_folder(path)
    raise DataError(path, "not a distribution: expected a folder with train/test .json or .jsonl files, "
                          "or a saved Hugging Face DatasetDict")


def _from_folder(folder: Path) -> Distribution:
    metadata, findings = check_metadata(folder)
    files, missing = split_files(folder)
    raise_first_error([*findings, *missing])

    def load(split: str) -> list[Example]:
        examples, problems = check_split_file(files[split])
        raise_first_error(problems)
        return examples

    # The folder name is the id shift lists use; a stale `id` in a copied metadata.json is audited, not trusted.
    return Distribution(folder.name, load, metadata, folder)


def _from_hf_folder(folder: Path) -> Distribution:
    import datasets

    @functools.cache
    def dataset_dict() -> DatasetDict:  # opened on the first split read, once for both
        return datasets.load_from_disk(str(folder))

    def load(split: str) -> list[Example]:
        return _hf_split(dataset_dict(), split, str(folder))

    return Distribution(folder.name, load, {"id": folder.name, "format": "huggingface"}, folder)


def from_dataset_dict(dataset_dict: DatasetDict, id: str = "dataset") -> Distribution:
    """A distribution over an in-memory `datasets.DatasetDict` with train and test splits."""
    return Distribution(id, lambda split: _hf_split(dataset_dict, split, id), {"id": id, "format": "huggingface"})


def _hf_split(dataset_dict: Mapping[str, Any], split: str, origin: str) -> list[Example]:
    examples, findings = check_hf_split(dataset_dict, split, origin)
    raise_first_error(findings)
    return examples


def check_hf_split(dataset_dict: Mapping[str, Any], split: str, origin: str) -> tuple[list[Example], list[Finding]]:
    """Examples and every problem of one split of a DatasetDict (`origin[split]` names it in messages)."""
    file = f"{origin}[{split}]"
    if split not in dataset_dict:
        return [], [Finding(file, f"missing {split} split: the DatasetDict has {', '.join(dataset_dict) or 'no splits'}")]
    findings: list[Finding] = []
    records = []
    for index, row in enumerate(dataset_dict[split]):
        record = _hf_row_to_record(row)
        if isinstance(record, str):
            findings.append(Finding(file, record, index))
            records.append(UNPARSED)
        else:
            records.append(record)
    examples, more = check_records(records, file)
    return examples, findings + more


def _hf_row_to_record(row: Mapping[str, Any]) -> dict[str, Any] | str:
    """A GENIES record from one row, or a problem phrase when the row cannot be read as one."""
    record = {k: v for k, v in row.items() if k not in ("labels", "metadata", "chosen", "rejected")}
    if isinstance(row.get("metadata"), str):
        try:
            extra = json.loads(row["metadata"])
        except json.JSONDecodeError:
            extra = None
        if not isinstance(extra, dict):
            return "not JSON: the `metadata` column is not a JSON object"
        record = {**extra, **record}
    responses = row.get("responses")
    if responses is None and "chosen" in row and "rejected" in row:
        if row["chosen"] == row["rejected"]:
            return "no dispreferred response: `chosen` equals `rejected`"
        record["responses"] = {row["chosen"]: 1, row["rejected"]: 0}
    elif isinstance(responses, list):
        labels = row.get("labels")
        if not isinstance(labels, list) or len(labels) != len(responses):
            return "missing responses: a `responses` list needs a `labels` list of the same length"
        if len(set(responses)) != len(responses):
            return "a response text is repeated; repeated responses are ambiguous"
        record["responses"] = dict(zip(responses, labels, strict=True))
    return record


def to_dataset_dict(dist: Distribution) -> DatasetDict:
    """Export to `datasets.DatasetDict`: prompt, responses (list), labels (0/1 list), metadata (JSON).

    Response maps have a different set of keys in every row and the extra fields differ between
    records, neither of which Arrow columns can hold, hence lists and a JSON string; the
    loader reads this format back losslessly.
    """
    import datasets

    def columns(examples: list[Example]) -> dict[str, list[Any]]:
        return {
            "prompt": [ex.prompt for ex in examples],
            "responses": [list(ex.responses) for ex in examples],
            "labels": [[int(i == ex.preferred) for i in range(len(ex.responses))] for ex in examples],
            "metadata": [json.dumps(dict(ex.metadata), ensure_ascii=False) for ex in examples],
        }

    features = datasets.Features({
        "prompt": datasets.Value("string"),
        "responses": datasets.Sequence(datasets.Value("string")),
        "labels": datasets.Sequence(datasets.Value("int8")),
        "metadata": datasets.Value("string"),
    })
    return datasets.DatasetDict({
        split: datasets.Dataset.from_dict(columns(dist.split(split)), features=features) for split in SPLITS
    })
