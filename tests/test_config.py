"""The run configuration (genies.pipeline.config): what `RunConfig` normalises and refuses when
built, the example budget it resolves, the options `genies run` is generated from, and the
hyperparameter-file, fraction and merge helpers. Every refusal is checked by its whole one-line
message: it is what the user reads."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import pytest

from genies.data.shift import Shift
from genies.errors import ConfigError, FileError, UnknownNameError
from genies.pipeline.config import BUDGETS, Budget, RunConfig, merge_hparams, parse_fractions, read_hparams, setting


def _refused(error: type[Exception], message: str, **fields: object) -> None:
    with pytest.raises(error, match="^" + re.escape(message) + "$"):
        RunConfig(**fields)


def test_fields_are_normalised_when_built(tmp_path: Path) -> None:
    config = RunConfig(out=str(tmp_path / "run"), interventions=["mms", "lora"], shifts=[], mix_target="0.5,0.1")
    assert config.out == tmp_path / "run" and isinstance(config.out, Path)
    assert config.interventions == ("mms", "lora")  # a list becomes a tuple (hashable, frozen)
    assert config.shifts == () and isinstance(config.shifts, tuple)
    assert config.mix_target == (0.1, 0.5)
    assert RunConfig(out=tmp_path, interventions="lora").interventions == ("lora",)  # one name, not its letters
    assert RunConfig(out=tmp_path, shifts="extreme").shifts == "extreme"  # a name stays a name
    shift = Shift("a", "b", "b", "cat", "fam")
    assert RunConfig(out=tmp_path, shifts=[shift]).shifts == (shift,)


def test_mutable_defaults_are_not_shared_between_configs(tmp_path: Path) -> None:
    one, two = RunConfig(out=tmp_path), RunConfig(out=tmp_path)
    assert one.hparams == {} and one.hparams is not two.hparams


def test_setting_carries_its_option_and_copies_a_mutable_default() -> None:
    """`setting` is what each field is declared with: its metadata becomes the `genies run`
    option, and a list or dict default is copied per instance (a dataclass refuses a shared one)."""
    plain = setting(3, "Help.", "--three", "-3")
    assert plain.default == 3 and plain.default_factory is dataclasses.MISSING
    assert dict(plain.metadata) == {"help": "Help.", "flags": ("--three", "-3"), "cli": True, "cli_type": None}
    hidden = setting(None, "Library only.", cli=False, cli_type=str)
    assert dict(hidden.metadata) == {"help": "Library only.", "flags": (), "cli": False, "cli_type": str}
    for default in ([1, 2], {"k": 1}):
        made = setting(default, "Mutable.")
        assert made.default is dataclasses.MISSING and dict(made.metadata)["help"] == "Mutable."
        copy = made.default_factory()
        assert copy == default and copy is not default and type(copy) is type(default)


@pytest.mark.parametrize(("fields", "error", "message"), [
    ({}, ConfigError, "a run needs an output folder (--out)"),
    ({"out": "r", "interventions": ()}, ConfigError, "name at least one intervention"),
    ({"out": "r", "budget": "cpuu"}, UnknownNameError,
     "unknown budget 'cpuu'; did you mean 'cpu'? (choices: cpu, paper)"),
    ({"out": "r", "target_tuned": "bets"}, UnknownNameError,
     "unknown target-tuned mode 'bets'; did you mean 'best'? (choices: best, default, none)"),
    ({"out": "r", "executor": "locale"}, UnknownNameError,
     "unknown executor 'locale'; did you mean 'local'? (choices: local, ray)"),
    ({"out": "r", "ray_address": "auto"}, ConfigError, "--ray-address needs --executor ray"),
    ({"out": "r", "max_train": 0}, ConfigError, "--max-train must be at least 1, got 0"),
    ({"out": "r", "max_eval": 0}, ConfigError, "--max-eval must be at least 1, got 0"),
    ({"out": "r", "max_eval": -3}, ConfigError, "--max-eval must be at least 1, got -3"),
    ({"out": "r", "device": "tpu"}, UnknownNameError, None),  # the placement is checked when built
])
def test_refusals_are_one_exact_line(fields: dict, error: type[Exception], message: str | None) -> None:
    with pytest.raises(error) as caught:
        RunConfig(**fields)
    if message is not None:
        assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_smallest_caps_and_a_known_budget_are_accepted(tmp_path: Path) -> None:
    config = RunConfig(out=tmp_path, max_train=1, max_eval=1, budget="cpu")
    assert (config.max_train, config.max_eval, config.budget) == (1, 1, "cpu")


def test_ray_executor_without_ray_names_the_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    _refused(ConfigError, "--executor ray needs Ray, which is not installed: pip install 'genies[ray]'",
             out=tmp_path, executor="ray")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "ray" else real(name, *a))
    config = RunConfig(out=tmp_path, executor="ray", ray_address="auto")  # with ray: both accepted
    assert (config.executor, config.ray_address) == ("ray", "auto")


def test_hparams_file_is_read_and_set_values_win(tmp_path: Path) -> None:
    path = tmp_path / "best-hparams.json"
    path.write_text(json.dumps({"mms": {"k": 4, "layer": 2}, "lora": {"r": 8}}), encoding="utf-8")
    config = RunConfig(out=tmp_path, hparams_file=str(path), hparams={"mms": {"k": 8}, "ccs": {"epochs": 3}})
    assert config.hparams_file == path and isinstance(config.hparams_file, Path)
    assert config.hparams == {"mms": {"k": 8, "layer": 2}, "lora": {"r": 8}, "ccs": {"epochs": 3}}
    assert RunConfig(out=tmp_path, hparams={"mms": {"k": 8}}).hparams == {"mms": {"k": 8}}  # no file: as given


@pytest.mark.parametrize(("fields", "budget"), [
    ({}, Budget(32, 16, 64)),  # preset cpu: the cpu budget
    ({"preset": "paper"}, Budget(None, None, 600)),
    ({"preset": "fast"}, Budget(None, None, 600)),  # a preset without a namesake budget: every example
    ({"preset": "paper", "budget": "cpu"}, Budget(32, 16, 64)),
    ({"budget": "paper", "max_train": 5}, Budget(5, None, 600)),
    ({"max_train": 5, "max_eval": 3}, Budget(5, 3, 64)),
    ({"max_eval": 100}, Budget(32, 100, 64)),  # --max-eval above the budget's cap still wins
])
def test_example_budget(tmp_path: Path, fields: dict, budget: Budget) -> None:
    assert RunConfig(out=tmp_path, **fields).example_budget == budget
    assert BUDGETS["cpu"] == Budget(32, 16, 64) and BUDGETS["paper"] == Budget(None, None, 600)


def test_options_are_the_cli_fields_in_declaration_order_with_their_metadata() -> None:
    options = RunConfig.options()
    names = [f.name for f in options]
    assert names == ["out", "model", "interventions", "shifts", "preset", "budget", "max_train", "max_eval",
                     "first_n", "target_tuned", "seed", "hparams_file", "mix_target", "trust_remote_code", "device",
                     "dtype", "quantize", "gpus", "gpu_memory", "executor", "ray_address", "cache_dir", "data_root",
                     "synthetic_if_no_data"]
    by_name = {f.name: f.metadata for f in options}
    assert by_name["interventions"]["flags"] == ("--intervention", "-i")
    assert by_name["interventions"]["help"].startswith("Intervention name or spec")
    assert by_name["shifts"]["cli_type"] is str and by_name["mix_target"]["cli_type"] == list[str]
    assert by_name["out"]["cli_type"] is None and by_name["out"]["cli"] is True
    hidden = {f.name: f.metadata for f in RunConfig.__dataclass_fields__.values() if f.name not in by_name}
    assert set(hidden) == {"hparams", "baseline", "target_tuned_interventions"}
    assert all(meta["cli"] is False and meta["flags"] == () for meta in hidden.values())


@pytest.mark.parametrize(("values", "fractions"), [
    ("0.05,0.01", (0.01, 0.05)),
    (["0.05,0.35", "0.01", "0.05"], (0.01, 0.05, 0.35)),
    ((0.1, 0.0, 1.0, 0.1), (0.1, 1.0)),  # numbers: 0 dropped, 1 kept, duplicates once
    (0.25, (0.25,)),
    (1, (1.0,)),
    ("0", ()),
    ((), ()),
])
def test_parse_fractions(values: object, fractions: tuple) -> None:
    assert parse_fractions(values) == fractions


@pytest.mark.parametrize(("values", "message"), [
    ("0.1,abc", "--mix-target: 'abc' is not a fraction (expected e.g. 0.01,0.05)"),
    ("1.5", "--mix-target: 1.5 is not a fraction in [0, 1]"),
    ((-0.25,), "--mix-target: -0.25 is not a fraction in [0, 1]"),
    ("1.0000001", "--mix-target: 1 is not a fraction in [0, 1]"),  # :g rounds the echo, not the check
])
def test_parse_fractions_refusals(values: object, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        parse_fractions(values)


def _file_error(path: Path, problem: str) -> None:
    with pytest.raises(FileError) as caught:
        read_hparams(path)
    assert (caught.value.file, caught.value.problem) == (str(path), problem)
    assert str(caught.value) == f"{path}: {problem}"


def test_read_hparams(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    path.write_text('{"lora": {"learning_rate": 1e-4, "note": "café"}, "7": {}}', encoding="utf-8")
    assert read_hparams(path) == {"lora": {"learning_rate": 1e-4, "note": "café"}, "7": {}}
    assert read_hparams(str(path)) == read_hparams(path)


def test_read_hparams_refusals_name_the_file_and_the_problem(tmp_path: Path) -> None:
    _file_error(tmp_path / "missing.json", "hyperparameter file not found")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    _file_error(bad, "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))")
    shape = 'expected {"METHOD": {"PARAM": VALUE, ...}, ...}, e.g. {"lora": {"learning_rate": 1e-4}}'
    for doc in ([{"lora": {}}], {"lora": 3}, {"lora": {}, "mms": [1]}, "lora"):
        bad.write_text(json.dumps(doc), encoding="utf-8")
        _file_error(bad, shape)


def test_merge_hparams_is_parameter_by_parameter_and_copies() -> None:
    base = {"mms": {"k": 4, "layer": 2}, "lora": {"r": 8}}
    top = {"mms": {"k": 8}, "ccs": {"epochs": 3}}
    merged = merge_hparams(base, top)
    assert merged == {"mms": {"k": 8, "layer": 2}, "lora": {"r": 8}, "ccs": {"epochs": 3}}
    merged["lora"]["r"] = 1
    merged["ccs"]["epochs"] = 1
    assert base == {"mms": {"k": 4, "layer": 2}, "lora": {"r": 8}} and top["ccs"] == {"epochs": 3}
    assert merge_hparams({}, {}) == {}
