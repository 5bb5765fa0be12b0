"""The intervention interface: registry, plugins, presets, states and the CLI listing."""

from __future__ import annotations

import json
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genies.data.schema import Distribution, Example
from genies.interventions import base
from genies.interventions.base import (
    FitContext, Predictions, State, available, get_intervention, load_intervention,
)

BUILT_IN = {"zero_shot", "few_shot", "random", "lora", "prompt_tuning", "full_fine_tune"}


def test_builtins_are_registered_with_family_and_description() -> None:
    methods = available()
    assert BUILT_IN <= set(methods)
    assert "legacy" not in methods  # an adapter: resolvable, not listed
    for name, cls in methods.items():
        assert cls.name == name and cls.family in base.FAMILIES and cls.description


def test_every_shipped_hyperparameter_has_help_text() -> None:
    """Every method the registry lists from genies itself, so a new method or a new field
    declared without `hparam(..., help)` fails here. Stand-ins that other test modules register
    (they live in tests/, not genies) are not documentation and are left out."""
    shipped = {name: cls for name, cls in available().items() if cls.__module__.startswith("genies.")}
    assert BUILT_IN <= set(shipped)
    for name, cls in shipped.items():
        for row in cls.describe():
            assert row.help, f"{name}.{row.name} has no help text"


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError) as err:
        get_intervention("lorra")
    assert "lorra" in str(err.value) and "lora" in str(err.value) and "zero_shot" in str(err.value)


def test_a_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):
        base.register("lora", family="fine-tuning", description="x")(type("Other", (), {}))
    with pytest.raises(ValueError, match="unknown family"):
        base.register("new", family="magic", description="x")


def test_entry_point_plugin_registers(tmp_path, monkeypatch) -> None:
    (tmp_path / "genies_plugin_demo.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import numpy as np
        from genies.interventions.base import Intervention, Predictions, State, register

        @register("plugin_demo", family="baseline", description="A plugin.")
        @dataclass
        class Demo(Intervention):
            def fit(self, lm, source, ctx):
                return State(self.name, self.hparams())
            def predict(self, lm, state, dist, split, ctx):
                ex = dist.split(split)
                return Predictions.from_scores(ex, [np.zeros(len(e.responses)) for e in ex])
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="plugin_demo", value="genies_plugin_demo", group=base.ENTRY_POINT_GROUP)
    broken = EntryPoint(name="broken", value="genies_no_such_module_xyz", group=base.ENTRY_POINT_GROUP)
    monkeypatch.setattr(base, "entry_points", lambda group: [ep, broken] if group == base.ENTRY_POINT_GROUP else [])
    try:
        assert get_intervention("plugin_demo").description == "A plugin."
        assert "plugin_demo" in available()  # the broken plugin is reported, not fatal
    finally:
        base._REGISTRY.pop("plugin_demo", None)


def test_presets_with_overrides() -> None:
    lora = get_intervention("lora")
    paper = lora.from_preset("paper")
    assert (paper.r, paper.alpha, paper.dropout, paper.learning_rate, paper.steps, paper.batch_size,
            paper.max_grad_norm) == (64, 16, 0.1, 2e-4, 150, 16, 0.3)
    cpu = lora.from_preset("cpu", r=4)
    assert cpu.r == 4 and cpu.steps == lora.presets["cpu"]["steps"] and cpu.batch_size == lora.presets["cpu"]["batch_size"]
    assert get_intervention("prompt_tuning").from_preset("paper").learning_rate == 5.2e-3
    with pytest.raises(ValueError, match="no preset 'fast'.*cpu, paper"):
        lora.from_preset("fast")
    with pytest.raises(TypeError, match="no hyperparameter 'rank'"):
        lora.from_preset("cpu", rank=4)
    rows = {row.name: row for row in lora.describe()}
    assert rows["r"].default == 64 and rows["r"].presets == {"paper": 64, "cpu": 8}


def test_state_round_trip_keeps_tensors_and_scores(tiny_llama, tmp_path) -> None:
    tensors = {"w": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "h": torch.ones(2, dtype=torch.bfloat16)}
    state = State("random", {}, {"note": [1, 2]}, tensors)
    state.save(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["state.json", "tensors.safetensors"]
    loaded = State.load(tmp_path / "s")
    assert loaded.info == {"note": [1, 2]} and loaded.directory == tmp_path / "s"
    assert all(torch.equal(loaded.tensors[k], v) and loaded.tensors[k].dtype == v.dtype for k, v in tensors.items())

    examples = [Example("p", ("a", "bb", "ccc"), 2), Example("q", ("x", "y"), 0)]
    dist = Distribution.from_examples("d", examples, examples)
    method = get_intervention("zero_shot")()
    fitted = method.fit(tiny_llama, dist, FitContext())
    fitted.save(tmp_path / "z")
    a = fitted.predict(tiny_llama, dist)
    b = State.load(tmp_path / "z").predict_proba(tiny_llama, dist)
    np.testing.assert_array_equal(a.p_preferred, b.p_preferred)
    with pytest.raises(FileNotFoundError, match="no state.json"):
        State.load(tmp_path / "nothing")


def test_extra_files_travel_with_the_state(tmp_path) -> None:
    work = FitContext().artifact_dir()
    (work / "adapter").mkdir()
    (work / "adapter" / "weights.bin").write_bytes(b"123")
    state = State("random", {}, directory=work)
    state.save(tmp_path / "final")
    assert (tmp_path / "final" / "adapter" / "weights.bin").read_bytes() == b"123"
    assert FitContext(state_dir=tmp_path / "given").artifact_dir() == tmp_path / "given"


def test_predictions_from_scores_is_bradley_terry() -> None:
    examples = [Example("p", ("a", "b", "c"), 1), Example("q", ("x", "y"), 0)]
    pred = Predictions.from_scores(examples, [np.array([0.0, 2.0, 1000.0]), np.array([-1.0, 1.0])])
    assert pred.example_index.tolist() == [0, 0, 1] and pred.dispreferred_index.tolist() == [0, 2, 1]
    np.testing.assert_allclose(pred.p_preferred, [1 / (1 + np.exp(-2)), 0.0, 1 / (1 + np.exp(2))], atol=1e-12)
    with pytest.raises(ValueError, match="example 1"):
        Predictions.from_scores(examples, [np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Predictions(np.zeros(1), np.zeros(1), np.zeros(1), np.array([1.5]))
    assert np.isnan(Predictions(np.zeros(1), np.zeros(1), np.zeros(1), np.array([np.nan])).p_preferred).all()


def test_cli_list_and_show() -> None:
    import typer

    from genies.commands import interventions as cmd

    app = typer.Typer()
    cmd.register(app)
    runner = CliRunner()
    listing = runner.invoke(app, ["list"])
    assert listing.exit_code == 0
    for name in BUILT_IN:
        assert name in listing.output
    assert "fine-tuning" in listing.output and "Bradley-Terry" in listing.output
    shown = runner.invoke(app, ["show", "lora"])
    assert shown.exit_code == 0 and "preset paper" in shown.output and "preset cpu" in shown.output
    assert "learning_rate" in shown.output and "0.0002" in shown.output
    missing = runner.invoke(app, ["show", "lorra"])
    assert missing.exit_code == 2 and "zero_shot" in missing.output


def test_load_intervention_by_name_and_folder(tmp_path) -> None:
    assert load_intervention("lora", "cpu", r=2).r == 2
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "eval.py").write_text("")
    legacy = load_intervention(tmp_path / "orig")
    assert legacy.name == "legacy" and legacy.hparams()["folder"] == str((tmp_path / "orig").resolve())
    assert json.dumps(legacy.hparams())  # hyperparameters are JSON, so they fit in state.json


def test_progress_goes_to_the_callback_when_there_is_one() -> None:
    messages: list[str] = []
    with FitContext(progress=messages.append).progress_bar("lora: training", 3) as advance:
        advance(1)
        advance(2)
    assert messages == ["lora: training 0/3", "lora: training 1/3", "lora: training 3/3"]
    with FitContext().progress_bar("quiet", 2) as advance:  # no terminal in tests: no output, no error
        advance(2)


@pytest.mark.parametrize("name, bad", [("zero_shot", {"score": "max"}), ("few_shot", {"score": "max"}),
                                       ("lat", {"direction": "svd"}), ("lat", {"stimulus": 3}),
                                       ("ccs", {"variant": "oracle"})])
def test_declared_choices_are_enforced_when_configured(name: str, bad: dict) -> None:
    (field, value), = bad.items()
    with pytest.raises(ValueError, match=rf"{name}: {field} must be one of .*got {value!r}"):
        get_intervention(name)(**bad)
