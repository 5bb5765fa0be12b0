"""A fitted state saved and loaded: the same typed dataclass comes back, bit for bit, with no
pickle anywhere (`genies.interventions.fitted`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from genies.interventions.base import Unfitted
from genies.interventions.fitted import FITTED_JSON, TENSORS, FittedStateError, load_fitted, save_fitted


@dataclass(frozen=True)
class Calibration:
    """A nested dataclass, with an array of its own."""

    offsets: np.ndarray
    scale: float


@dataclass(frozen=True)
class Everything:
    """One field of every kind a method's state may hold."""

    directions: np.ndarray
    counts: np.ndarray
    head: torch.Tensor
    adapter: dict[str, torch.Tensor]
    calibration: Calibration
    shots: tuple[tuple[str, str], ...]
    layers: tuple[int, ...]
    maybe_array: np.ndarray | None
    maybe_calibration: Calibration | None
    label: str
    seed: int
    threshold: float
    history: list[float]
    options: dict[str, int]


def _everything() -> Everything:
    rng = np.random.default_rng(0)
    return Everything(
        directions=rng.standard_normal((3, 5)),  # float64: must not come back as float32
        counts=np.arange(4, dtype=np.int32),
        head=torch.randn(2, 3, dtype=torch.bfloat16),
        adapter={"layers.0.lora_A": torch.randn(4, 2), "layers.0.lora_B": torch.zeros(2, 4, dtype=torch.float16)},
        calibration=Calibration(np.array([0.1, -0.2]), 2.5),
        shots=(("prompt one", "answer one"), ("prompt two", "answer two")),
        layers=(3, 7),
        maybe_array=None,
        maybe_calibration=Calibration(np.array([1e-300, 3.0]), 0.1),
        label="mms",
        seed=7,
        threshold=0.1 + 0.2,  # a float JSON must keep exactly
        history=[1.5, float("inf")],
        options={"a": 1},
    )


def _assert_same(a: Everything, b: Everything) -> None:
    for x, y in ((a.directions, b.directions), (a.counts, b.counts), (a.calibration.offsets, b.calibration.offsets),
                 (a.maybe_calibration.offsets, b.maybe_calibration.offsets)):
        assert isinstance(y, np.ndarray) and y.dtype == x.dtype
        np.testing.assert_array_equal(x, y)
    assert isinstance(b.head, torch.Tensor) and b.head.dtype == torch.bfloat16 and torch.equal(a.head, b.head)
    assert sorted(b.adapter) == sorted(a.adapter)
    for key, tensor in a.adapter.items():
        assert b.adapter[key].dtype == tensor.dtype and torch.equal(b.adapter[key], tensor)
    rest = ("shots", "layers", "maybe_array", "label", "seed", "threshold", "history", "options")
    assert {f: getattr(b, f) for f in rest} == {f: getattr(a, f) for f in rest}
    assert type(b.shots) is tuple and type(b.shots[0]) is tuple and type(b.layers) is tuple
    assert type(b.history) is list and b.calibration.scale == 2.5 and b.maybe_calibration.scale == 0.1


def test_round_trip_keeps_every_field_and_dtype(tmp_path) -> None:
    fitted = _everything()
    save_fitted(fitted, tmp_path / "state", intervention="demo")
    loaded = load_fitted(Everything, tmp_path / "state")
    assert type(loaded) is Everything and type(loaded.calibration) is Calibration
    _assert_same(fitted, loaded)


def test_no_pickle_anywhere(tmp_path, monkeypatch) -> None:
    """The folder holds exactly the JSON document (naming the method, the type and the schema)
    and the tensors file, and neither saving nor loading goes near pickle: a stored state from
    elsewhere cannot run code."""
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for owner, name in ((pickle, "dump"), (pickle, "dumps"), (pickle, "load"), (pickle, "loads"),
                        (pickle, "Pickler"), (pickle, "Unpickler"), (torch, "save"), (torch, "load"),
                        (np, "save"), (np, "load")):
        monkeypatch.setattr(owner, name, refuse)
    fitted = _everything()
    save_fitted(fitted, tmp_path / "state", intervention="demo")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == sorted([FITTED_JSON, TENSORS])
    doc = json.loads((tmp_path / "state" / FITTED_JSON).read_text())
    assert (doc["intervention"], doc["type"], doc["schema"]) == ("demo", "Everything", 1)
    _assert_same(fitted, load_fitted(Everything, tmp_path / "state"))


def test_a_state_without_fields_round_trips(tmp_path) -> None:
    save_fitted(Unfitted(), tmp_path / "u", intervention="zero_shot")
    assert load_fitted(Unfitted, tmp_path / "u") == Unfitted()


def test_tensors_that_share_memory_are_saved(tmp_path) -> None:
    """Tied weights (one tensor under two names) and views of one array: safetensors refuses
    shared storage, so the saver gives each its own copy."""

    @dataclass(frozen=True)
    class Tied:
        weights: dict[str, torch.Tensor]
        row: torch.Tensor

    shared = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    save_fitted(Tied({"embed": shared, "lm_head": shared}, shared[1]), tmp_path / "t", intervention="demo")
    loaded = load_fitted(Tied, tmp_path / "t")
    assert torch.equal(loaded.weights["embed"], shared) and torch.equal(loaded.weights["lm_head"], shared)
    assert torch.equal(loaded.row, shared[1])


def test_a_different_schema_is_refused(tmp_path) -> None:
    save_fitted(_everything(), tmp_path / "state", intervention="demo")
    doc_file = tmp_path / "state" / FITTED_JSON
    doc = json.loads(doc_file.read_text())
    doc["schema"] = 99
    doc_file.write_text(json.dumps(doc))
    with pytest.raises(FittedStateError, match="schema 99.*rerun the fit"):
        load_fitted(Everything, tmp_path / "state")


def test_a_missing_field_is_refused(tmp_path) -> None:
    save_fitted(_everything(), tmp_path / "state", intervention="demo")
    doc_file = tmp_path / "state" / FITTED_JSON
    doc = json.loads(doc_file.read_text())
    del doc["fields"]["threshold"]
    doc_file.write_text(json.dumps(doc))
    with pytest.raises(FittedStateError, match="no field 'threshold'"):
        load_fitted(Everything, tmp_path / "state")


def test_a_folder_without_a_state_is_refused(tmp_path) -> None:
    with pytest.raises(FittedStateError, match=f"no {FITTED_JSON}"):
        load_fitted(Everything, tmp_path)


def test_a_field_that_is_neither_json_nor_an_array_is_named(tmp_path) -> None:
    @dataclass(frozen=True)
    class Opaque:
        fine: int
        model: object

    with pytest.raises(TypeError, match="fitted field 'model'"):
        save_fitted(Opaque(1, object()), tmp_path / "o", intervention="demo")

    @dataclass(frozen=True)
    class Outer:
        inner: Opaque

    with pytest.raises(TypeError, match="fitted field 'inner.model'"):
        save_fitted(Outer(Opaque(1, {1, 2})), tmp_path / "o", intervention="demo")
    with pytest.raises(TypeError, match="must return a dataclass instance, got dict"):
        save_fitted({"w": 1}, tmp_path / "o", intervention="demo")
