"""Loading from the GENIES layout, JSONL and Hugging Face datasets gives the same examples."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from genies.data.loading import (
    UnknownDistributionError,
    list_distributions,
    load_distribution,
    to_dataset_dict,
)
from genies.data.schema import DataError, Example

TRAIN = [
    {"instruction": "add", "prompt": "1+1=", "responses": {"3": 0.0, "2": 1.0, "4": 0.0}},
    {"prompt": "capital of France?", "responses": {"Paris": 1, "Rome": 0}, "subject": "geo"},
]
TEST = [{"prompt": "2+2=", "responses": {"4": 1.0, "5": 0.0}}]


def _genies(root: Path, name: str = "toy", train: list = TRAIN, test: list = TEST) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    (folder / "metadata.json").write_text(json.dumps({"id": name, "external_datasets": []}))
    return folder


def test_genies_layout_with_float_labels_and_metadata(tmp_path: Path) -> None:
    dist = load_distribution(_genies(tmp_path))
    first, second = dist.train
    assert first == Example("1+1=", ("3", "2", "4"), 1)
    assert first.metadata == {"instruction": "add"} and second.metadata == {"subject": "geo"}
    assert second.preferred_response == "Paris"
    assert dist.id == "toy" and dist.metadata["external_datasets"] == [] and dist.path == tmp_path / "toy"
    assert [(p.preferred, p.dispreferred) for p in dist.eval_pairs("train")] == [
        ("2", "3"), ("2", "4"), ("Paris", "Rome")]


def test_splits_load_lazily(tmp_path: Path) -> None:
    folder = _genies(tmp_path)
    (folder / "test.json").write_text("[]")  # broken, but only the test split is
    dist = load_distribution(folder)
    assert len(dist.train) == 2
    with pytest.raises(DataError, match="an empty split"):
        dist.test


def test_jsonl_reads_the_same_examples(tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST))
    reference = load_distribution(_genies(tmp_path / "ref"))
    dist = load_distribution(folder)
    assert dist.train == reference.train and dist.test == reference.test
    assert [ex.metadata for ex in dist.train] == [ex.metadata for ex in reference.train]


def test_dataset_dict_round_trip_in_memory_and_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = load_distribution(_genies(tmp_path))
    exported = to_dataset_dict(original)
    assert set(exported) == {"train", "test"} and exported["train"][0]["labels"] == [0, 1, 0]
    in_memory = load_distribution(exported)
    exported.save_to_disk(str(tmp_path / "saved"))
    opened = []
    real_load_from_disk = datasets.load_from_disk
    monkeypatch.setattr(datasets, "load_from_disk", lambda path: opened.append(path) or real_load_from_disk(path))
    on_disk = load_distribution(tmp_path / "saved")
    assert opened == []  # splits are read on first access
    for dist in (in_memory, on_disk):
        assert dist.train == original.train and dist.test == original.test
        assert [ex.metadata for ex in dist.train] == [ex.metadata for ex in original.train]
    assert opened == [str(tmp_path / "saved")]  # opened once for both splits


def test_chosen_rejected_dataset_and_its_errors() -> None:
    good = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"prompt": ["p"], "chosen": ["yes"], "rejected": ["no"], "src": ["x"]}),
        "test": datasets.Dataset.from_dict({"prompt": ["q"], "chosen": ["a"], "rejected": ["a"], "src": ["y"]}),
    })
    dist = load_distribution(good)
    assert dist.train == [Example("p", ("yes", "no"), 0)] and dist.train[0].metadata == {"src": "x"}
    with pytest.raises(DataError, match=r"dataset\[test\], example 0: no dispreferred response"):
        dist.test


def test_names_resolve_under_the_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _genies(tmp_path, "alpaca_mmlu")
    _genies(tmp_path, "arc_easy")
    (tmp_path / "not_data").mkdir()
    assert list_distributions(tmp_path) == ["alpaca_mmlu", "arc_easy"]
    assert len(load_distribution("arc_easy", tmp_path).test) == 1
    monkeypatch.setenv("GENIES_DATA_DIR", str(tmp_path))
    assert load_distribution("alpaca_mmlu").id == "alpaca_mmlu"
    with pytest.raises(UnknownDistributionError, match="did you mean alpaca_mmlu") as caught:
        load_distribution("alpaca_mmul")
    assert caught.value.suggestions[0] == "alpaca_mmlu"


def test_missing_path_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load_distribution(tmp_path / "nowhere")


@pytest.mark.data
def test_real_distribution_loads(genies_data_dir: Path) -> None:
    dist = load_distribution("alpaca_mmlu", genies_data_dir)
    assert (len(dist.train), len(dist.test)) == (600, 250)
    assert all(len(ex.responses) == 4 for ex in dist.test) and len(dist.eval_pairs()) == 750
    assert len(list_distributions(genies_data_dir)) == 66


def test_text_a_tokenizer_cannot_encode_is_refused_with_file_example_and_field(tmp_path: Path) -> None:
    folder = _genies(tmp_path, train=[TRAIN[0], {"prompt": "q", "responses": {"fine": 1, "bad \ud800": 0}}])
    with pytest.raises(DataError, match=r"train\.json, example 1: response 1: not valid Unicode text: lone surrogate "
                                        r"at character 4"):
        load_distribution(folder).train
    rows = datasets.Dataset.from_dict({"prompt": ["p"], "responses": [["a", None]], "labels": [[1, 0]]})
    dist = load_distribution(datasets.DatasetDict({"train": rows, "test": rows}))
    with pytest.raises(DataError, match=r"dataset\[train\], example 0: response 1: not text but a null"):
        dist.train
