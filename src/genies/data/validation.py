"""Check preference files and report EVERY problem, not only the first.

A researcher fixing a broken dataset wants the whole list at once, so the checks here never stop
at the first bad record: they return structured `Finding`s (file, example index, problem,
severity). The loader (`genies.data.loading`) uses the same checks and raises a `DataError` for
the first error, so "what validate reports" and "what loading refuses" can never drift apart.

Record rules (docs/data.md#format): a record is an object with a string `prompt` and a `responses`
object mapping each response text to 1 (exactly one, the preferred) or 0 (at least one); every
text must be valid Unicode, i.e. encodable by a tokenizer (`text_problem`). 0/1 may
be written as ints or floats (the released data uses 0.0/1.0); booleans are refused because
`true` is not a label. Other fields are kept as `Example.metadata`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genies.data.schema import SPLITS, DataError, Distribution, Example, location

ERROR = "error"
UNPARSED = object()  # stands for a record that could not be read (already reported), so later indices stay true
WARNING = "warning"
SPLIT_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True)
class Finding:
    """One problem: where it is (file, example index or None for the whole file) and what it is."""

    file: str
    problem: str
    index: int | None = None
    severity: str = ERROR

    def to_error(self) -> DataError:
        return DataError(self.file, self.problem, self.index)

    @property
    def where(self) -> str:
        """`file`, or `file, example N`: the same wording as `DataError`."""
        return location(self.file, self.index)

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.problem}"


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]


def raise_first_error(findings: Iterable[Finding]) -> None:
    """Loading's contract: a malformed distribution raises a DataError for its first problem."""
    for finding in findings:
        if finding.severity == ERROR:
            raise finding.to_error()


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's default keeps the last of two equal keys; a repeated response text would vanish."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_reject_duplicate_keys)


def read_records(path: Path, items: str = "examples") -> tuple[list[Any] | None, list[Finding]]:
    """Decode a `.json` (one list) or `.jsonl` (one record a line) file into raw records.

    `items` names what the list holds in the not-a-list message (shift files reuse this reader).
    """
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        return None, [Finding(file, f"cannot read file: {err.strerror or err}")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, [Finding(file, f"bad text encoding: not UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r})")]
    text = text.removeprefix("\ufeff")
    if path.suffix == ".jsonl":
        return _read_jsonl(file, text)
    try:
        data = _loads(text)
    except _DuplicateKey as err:
        return None, [Finding(file, f"not JSON: a key is repeated ({err.key[:60]!r}); only one of its values would be kept")]
    except json.JSONDecodeError as err:
        return None, [Finding(file, f"not JSON: {err.msg} at line {err.lineno}, column {err.colno}")]
    if not isinstance(data, list):
        return None, [Finding(file, f"not a list: the file holds a JSON {_json_type(data)}, expected a list of {items}")]
    return data, []


def _read_jsonl(file: str, text: str) -> tuple[list[Any] | None, list[Finding]]:
    records: list[Any] = []
    findings: list[Finding] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_loads(line))
        except _DuplicateKey as err:
            findings.append(Finding(file, f"not JSON at line {lineno}: a key is repeated ({err.key[:60]!r})", len(records)))
            records.append(UNPARSED)
        except json.JSONDecodeError as err:
            findings.append(Finding(file, f"not JSON at line {lineno}: {err.msg}", len(records)))
            records.append(UNPARSED)
    return records, findings


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), "null"
    )


def _is_label(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value in (0, 1)


def text_problem(value: Any) -> str | None:
    """Why `value` is not text a tokenizer can encode, or None when it is.

    JSON can carry strings that are not Unicode text (the escape `\\ud800` decodes to a lone
    surrogate, which UTF-8 cannot encode) and a Hugging Face row can hold a number or a null
    where a response should be. Both pass every other check and would then fail in the tokenizer
    of every job that reads them, with an error naming neither the file nor the example; so
    validation, loading and the model engines (`genies.models.base.tokenize`) all ask this.
    """
    if not isinstance(value, str):
        return f"not text but a {_json_type(value)}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # UTF-8 encodes every code point but the surrogates
        return f"not valid Unicode text: lone surrogate at character {err.start}"
    return None


def record_problems(record: Any) -> list[str]:
    """Every problem of one record, in a fixed order, as short human-readable phrases."""
    if not isinstance(record, Mapping):
        return [f"not an object: the example is a JSON {_json_type(record)}"]
    problems = []
    prompt = record.get("prompt")
    if "prompt" not in record:
        problems.append("missing prompt")
    elif not isinstance(prompt, str):
        problems.append(f"missing prompt: `prompt` is a {_json_type(prompt)}, not a string")
    elif problem := text_problem(prompt):
        problems.append(f"prompt: {problem}")
    responses = record.get("responses")
    if "responses" not in record:
        return [*problems, "missing responses"]
    if not isinstance(responses, Mapping) or not responses:
        what = "empty" if isinstance(responses, Mapping) else f"a {_json_type(responses)}"
        return [*problems, f"missing responses: `responses` is {what}, expected an object of response text -> 0/1"]
    problems += [f"response {k}: {problem}" for k, text in enumerate(responses) if (problem := text_problem(text))]
    bad = [(text, value) for text, value in responses.items() if not _is_label(value)]
    for text, value in bad:
        problems.append(f"a value other than 0/1: response {str(text)[:40]!r} has {json.dumps(value)}")
    if bad:
        return problems
    preferred = sum(1 for v in responses.values() if v == 1)
    if preferred == 0:
        problems.append("no preferred response: no response has value 1")
    elif preferred > 1:
        problems.append(f"two preferred responses: {preferred} responses have value 1, exactly one must")
    if len(responses) - preferred == 0:
        problems.append("no dispreferred response: no response has value 0")
    return problems


def to_example(record: Mapping[str, Any]) -> Example:
    """A record already checked by `record_problems`; responses keep their file order."""
    responses = record["responses"]
    texts = tuple(responses)
    preferred = next(i for i, t in enumerate(texts) if responses[t] == 1)
    metadata = {k: v for k, v in record.items() if k not in ("prompt", "responses")}
    return Example(record["prompt"], texts, preferred, metadata)


def check_records(records: Sequence[Any], file: str) -> tuple[list[Example], list[Finding]]:
    """Examples for the good records and findings for every bad one (indices are 0-based)."""
    examples: list[Example] = []
    findings: list[Finding] = []
    for index, record in enumerate(records):
        if record is UNPARSED:
            continue  # a JSONL line that did not parse, already reported by read_records
        problems = record_problems(record)
        if problems:
            findings.extend(Finding(file, p, index) for p in problems)
        else:
            examples.append(to_example(record))
    if not records:
        findings.append(Finding(file, "an empty split: the file holds no examples"))
    return examples, findings


def check_split_file(path: Path) -> tuple[list[Example], list[Finding]]:
    records, findings = read_records(path)
    if records is None:
        return [], findings
    examples, more = check_records(records, str(path))
    return examples, findings + more


def split_file(folder: Path, split: str) -> Path | None:
    """`<split>.json`, else `<split>.jsonl`; None when neither exists."""
    for suffix in SPLIT_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def missing_split(folder: Path, split: str) -> Finding:
    return Finding(str(folder / f"{split}.json"), f"missing {split} split: no {split}.json or {split}.jsonl")


def split_files(folder: Path) -> tuple[dict[str, Path], list[Finding]]:
    """The file of each split present in `folder`, and a finding for each missing split."""
    files: dict[str, Path] = {}
    findings: list[Finding] = []
    for split in SPLITS:
        path = split_file(folder, split)
        if path is None:
            findings.append(missing_split(folder, split))
        else:
            files[split] = path
    return files, findings


def check_metadata(folder: Path) -> tuple[dict[str, Any], list[Finding]]:
    """The folder's metadata.json (optional: {} when absent or malformed) and its problems."""
    path = folder / "metadata.json"
    if not path.exists():
        return {}, []
    try:
        data = _loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        return {}, [Finding(str(path), "bad text encoding: not UTF-8")]
    except (json.JSONDecodeError, _DuplicateKey) as err:
        return {}, [Finding(str(path), f"not JSON: {err}")]
    if not isinstance(data, dict):
        return {}, [Finding(str(path), f"metadata is a JSON {_json_type(data)}, expected an object")]
    return data, []


def check_distribution_folder(folder: Path) -> tuple[Distribution | None, list[Finding]]:
    """Check both splits and the metadata of one GENIES/JSONL folder; collect everything.

    The distribution (over the splits just parsed, so an audit need not read them again) is
    None when any error was found.
    """
    metadata, findings = check_metadata(folder)
    files, missing = split_files(folder)
    findings.extend(missing)
    splits: dict[str, list[Example]] = {}
    for split, path in files.items():
        splits[split], more = check_split_file(path)
        findings.extend(more)
    if errors(findings):
        return None, findings
    return Distribution.from_examples(folder.name, splits["train"], splits["test"], metadata, folder), findings


def is_distribution_folder(path: Path) -> bool:
    return path.is_dir() and any(split_file(path, s) is not None for s in SPLITS)
