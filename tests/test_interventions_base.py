"""The intervention contract itself: registration and the registry, plugins, presets and
`--set` values, execution settings, spec strings, progress, the fitted type, and the CLI listing.

Most tests use the stand-ins below so that they check the contract, not one method's choices;
the tests over every shipped method are marked by their names (`builtins`, `shipped`).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from genies.data.schema import Distribution, EvalSet
from genies.errors import ConfigError, UnknownNameError
from genies.interventions import registry
from genies.interventions.base import FAMILIES, Intervention, Scorer, Unfitted
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.interventions.registry import available, get_intervention, load_intervention, register
from genies.interventions.scores import Scores

BUILT_IN = {"zero_shot", "few_shot", "random", "lora", "prompt_tuning", "full_fine_tune",
            "mms", "lat", "cra", "ccs", "logistic"}


@dataclass(frozen=True)
class Learned:
    """The stand-in's fitted state."""

    weight: float


@dataclass
class Knobs(Intervention[Learned]):
    """A stand-in with one hyperparameter of every kind the parser handles (never registered)."""

    name = "knobs"
    k: int = hparam(8, "an int")
    lr: float = hparam(1e-3, "a float")
    layer: int | None = hparam(None, "an optional int")
    mode: str = hparam("a", "a string with choices", choices=("a", "b"))
    tags: list[str] = hparam([], "a list")
    batch_size: int = hparam(16, "an execution setting", execution=True)

    presets = {"paper": {"k": 64}, "cpu": {"k": 4, "batch_size": 2}}

    def fit(self, lm: Any, train: Distribution, ctx: FitContext) -> Learned:
        return Learned(float(self.k))

    def scorer(self, lm: Any, fitted: Learned, ctx: FitContext) -> Scorer:
        return lambda data: Scores.bradley_terry([np.zeros(len(q.responses)) for q in data.queries])


@dataclass
class Plain(Intervention[Unfitted]):
    """A stand-in that declares no presets, as a plugin may."""

    name = "plain"
    k: int = hparam(3, "an int")

    def fit(self, lm: Any, train: Distribution, ctx: FitContext) -> Unfitted:
        return Unfitted()

    def scorer(self, lm: Any, fitted: Unfitted, ctx: FitContext) -> Scorer:
        return lambda data: Scores([])


@pytest.fixture
def scratch_names() -> Iterator[list[str]]:
    """Names a test registers; removed afterwards so no other test sees them."""
    names: list[str] = []
    yield names
    for name in names:
        registry._REGISTRY.pop(name, None)


# -- the registry ------------------------------------------------------------------------------

def test_builtins_are_registered_with_family_and_description() -> None:
    methods = available()
    assert BUILT_IN <= set(methods)
    assert "legacy" not in methods  # an adapter: resolvable, not listed
    assert get_intervention("legacy").name == "legacy"
    for name, cls in methods.items():
        assert cls.name == name and cls.family in FAMILIES and cls.description


def test_register_names_the_class_with_family_and_description(scratch_names) -> None:
    scratch_names.append("knobs_registered")

    @register("knobs_registered", family="representation", description="A registered stand-in.")
    @dataclass
    class Registered(Knobs):
        pass

    assert (Registered.name, Registered.family, Registered.description) == (
        "knobs_registered", "representation", "A registered stand-in.")
    assert get_intervention("knobs_registered") is Registered
    assert available()["knobs_registered"] is Registered


def test_every_shipped_hyperparameter_has_help_text() -> None:
    """Every method the registry lists from genies itself, so a new method or a new field
    declared without `hparam(..., help)` fails here. Stand-ins that test modules register
    (they live in tests/, not genies) are not documentation and are left out."""
    shipped = {name: cls for name, cls in available().items() if cls.__module__.startswith("genies.")}
    shipped["legacy"] = get_intervention("legacy")
    assert BUILT_IN <= set(shipped)
    for name, cls in shipped.items():
        for row in cls.describe():
            assert row.help, f"{name}.{row.name} has no help text"


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError) as err:
        get_intervention("mmss")
    message = str(err.value)
    assert "unknown intervention 'mmss'; did you mean 'mms'" in message
    assert "zero_shot" in message and "legacy:FOLDER" in message  # the choices, and the folder form
    assert isinstance(err.value, LookupError)  # callers that caught KeyError-like errors still do


def test_a_name_cannot_be_registered_twice(scratch_names) -> None:
    with pytest.raises(ValueError, match="'zero_shot' is already registered by genies.interventions.zero_shot"):
        register("zero_shot", family="baseline", description="x")(type("Other", (), {}))
    # a class of the same name from another module is another class, not a reload
    zero_shot = get_intervention("zero_shot")
    impostor = type(zero_shot.__name__, (), {"__module__": "somewhere_else", "__qualname__": zero_shot.__qualname__})
    with pytest.raises(ValueError, match="already registered"):
        register("zero_shot", family="baseline", description="x")(impostor)
    assert get_intervention("zero_shot") is zero_shot
    with pytest.raises(ValueError, match="unknown family"):
        register("new", family="magic", description="x")


def test_entry_point_plugin_registers(tmp_path, monkeypatch, scratch_names) -> None:
    scratch_names.append("plugin_demo")
    (tmp_path / "genies_plugin_demo.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        import numpy as np
        from genies.interventions import Intervention, Scores, Unfitted, register

        @register("plugin_demo", family="baseline", description="A plugin.")
        @dataclass
        class Demo(Intervention[Unfitted]):
            def fit(self, lm, train, ctx) -> Unfitted:
                return Unfitted()
            def scorer(self, lm, fitted, ctx):
                return lambda data: Scores.bradley_terry([np.zeros(len(q.responses)) for q in data.queries])
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="plugin_demo", value="genies_plugin_demo", group=registry.ENTRY_POINT_GROUP)
    broken = EntryPoint(name="broken", value="genies_no_such_module_xyz", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [ep, broken] if group == registry.ENTRY_POINT_GROUP else [])
    demo = get_intervention("plugin_demo")
    assert demo.description == "A plugin." and demo.fitted_type() is Unfitted
    assert "plugin_demo" in available()  # the broken plugin is reported, not fatal


# -- configuration: presets, --set values, execution settings ----------------------------------

def test_presets_with_overrides() -> None:
    assert Knobs.configure("paper").k == 64
    cpu = Knobs.configure("cpu", k=2)
    assert (cpu.k, cpu.batch_size, cpu.lr) == (2, 2, 1e-3)  # override, preset value, default
    assert Knobs.configure(None) == Knobs()
    rows = {row.name: row for row in Knobs.describe()}
    assert rows["k"].default == 8 and rows["k"].presets == {"paper": 64, "cpu": 4}
    assert rows["mode"].choices == ("a", "b") and rows["layer"].type == "int | None"
    assert rows["tags"].type == "list[str]" and rows["batch_size"].execution and not rows["k"].execution
    with pytest.raises(UnknownNameError, match="unknown knobs hyperparameter 'kk'; did you mean 'k'"):
        Knobs.configure("cpu", kk=2)
    lora = get_intervention("lora")  # a shipped method's paper preset
    assert lora.configure("paper").r == 64 and lora.configure("cpu", r=4).r == 4


def test_an_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown knobs preset 'fast' \(choices: cpu, paper\)"):
        Knobs.configure("fast")


def test_a_method_without_presets_runs_its_defaults() -> None:
    assert Plain.configure("paper") == Plain() == Plain.configure("anything", k="3")
    assert Plain.configure("cpu", k=5).k == 5


def test_set_values_are_parsed_to_the_field_type() -> None:
    parsed = Knobs.configure(None, k="8", lr="1e-4", layer="none", tags='["x", "y"]', mode="b")
    assert (parsed.k, parsed.lr, parsed.layer, parsed.tags, parsed.mode) == (8, 1e-4, None, ["x", "y"], "b")
    assert type(parsed.k) is int and type(parsed.lr) is float
    assert Knobs.configure(None, layer="3").layer == 3 and Knobs.configure(None, lr=1).lr == 1.0
    with pytest.raises(ConfigError, match=r"^knobs\.k: expected int, got 'abc'$"):
        Knobs.configure(None, k="abc")
    with pytest.raises(ConfigError, match=r"knobs\.k: expected int, got 2\.5"):
        Knobs.configure(None, k=2.5)
    with pytest.raises(ConfigError, match=r"knobs\.layer: expected int \| None"):
        Knobs.configure(None, layer="top")


def test_choices_are_enforced_however_the_method_is_built() -> None:
    with pytest.raises(ConfigError, match=r"knobs\.mode must be one of 'a', 'b', got 'c'"):
        Knobs.configure(None, mode="c")
    with pytest.raises(ConfigError, match=r"knobs\.mode must be one of"):
        Knobs(mode="c")  # the constructor checks too (__post_init__)
    with pytest.raises(ConfigError, match=r"zero_shot\.score must be one of 'sum', 'mean', got 'max'"):
        get_intervention("zero_shot")(score="max")


def test_execution_settings_stay_out_of_the_key_hparams() -> None:
    small, large = Knobs(batch_size=2), Knobs(batch_size=64)
    assert small.hparams()["batch_size"] == 2 and large.hparams()["batch_size"] == 64
    assert "batch_size" not in small.key_hparams()
    assert small.key_hparams() == large.key_hparams() == {"k": 8, "lr": 1e-3, "layer": None, "mode": "a", "tags": []}
    assert Knobs(**small.hparams()) == small  # hparams() rebuilds the method in any process


# -- resolution, progress, the fitted type -----------------------------------------------------

def test_load_intervention_by_name_and_spec(scratch_names) -> None:
    method = load_intervention("zero_shot", "cpu", score="mean")
    assert method.name == "zero_shot" and method.score == "mean"
    scratch_names.append("spec_demo")

    @register("spec_demo", family="external", description="Configured from a spec argument.")
    @dataclass
    class SpecDemo(Knobs):
        @classmethod
        def spec_overrides(cls, argument: str) -> dict[str, Any]:
            return {"k": argument}  # a string, parsed like any --set value

    from_spec = load_intervention("spec_demo:7", "cpu", lr=0.5)
    assert isinstance(from_spec, SpecDemo) and (from_spec.k, from_spec.batch_size, from_spec.lr) == (7, 2, 0.5)
    assert load_intervention("spec_demo:7", "cpu", k=9).k == 9  # an explicit override wins
    with pytest.raises(UnknownNameError, match="'zero_shot' takes no ':' argument"):
        load_intervention("zero_shot:x")


def test_legacy_spec_names_a_folder(tmp_path) -> None:
    (tmp_path / "orig").mkdir()
    (tmp_path / "orig" / "eval.py").write_text("")
    legacy = load_intervention(f"legacy:{tmp_path / 'orig'}")
    assert legacy.name == "legacy" and legacy.hparams()["folder"] == str((tmp_path / "orig").resolve())


def test_progress_goes_to_the_callback_when_there_is_one(capsys, monkeypatch) -> None:
    messages: list[str] = []
    with FitContext(progress=messages.append).progress_bar("lora: training", 3) as advance:
        advance(1)
        advance(2)
    assert messages == ["lora: training 0/3", "lora: training 1/3", "lora: training 3/3"]
    assert capsys.readouterr() == ("", "")  # the callback gets everything, the terminal nothing
    with FitContext().progress_bar("quiet", 2) as advance:  # no terminal in tests: no output, no error
        advance(2)
    assert capsys.readouterr() == ("", "")
    # on a terminal the same step draws a bar on stderr (never stdout) that reaches 2/2
    import rich.console

    real = rich.console.Console
    monkeypatch.setattr(rich.console, "Console", lambda **kw: real(**kw, force_terminal=True, width=100))
    with FitContext().progress_bar("drawn", 2) as advance:
        advance(1)
        advance(1)
    out, err = capsys.readouterr()
    assert out == "" and "drawn" in err and "2/2" in err


def test_artifact_dir_is_the_state_folder(tmp_path) -> None:
    assert FitContext(state_dir=tmp_path / "given").artifact_dir() == tmp_path / "given"
    assert (tmp_path / "given").is_dir()
    with pytest.raises(RuntimeError, match="state_dir"):
        FitContext().artifact_dir()


@dataclass
class ReturnsADict(Plain):
    def fit(self, lm: Any, train: Distribution, ctx: FitContext) -> dict:
        return {}


@dataclass
class Unannotated(Plain):
    def fit(self, lm, train, ctx):  # noqa: ANN001, ANN201 - the point of the test
        return Unfitted()


def test_fitted_type_reads_fits_return_annotation() -> None:
    from genies.interventions.few_shot import Shots

    assert Knobs.fitted_type() is Learned and Plain.fitted_type() is Unfitted
    assert get_intervention("few_shot").fitted_type() is Shots
    with pytest.raises(TypeError, match="ReturnsADict.fit must be annotated to return a dataclass"):
        ReturnsADict.fitted_type()
    with pytest.raises(TypeError, match="Unannotated.fit must be annotated"):
        Unannotated.fitted_type()


def test_every_shipped_method_declares_its_fitted_dataclass() -> None:
    for name, cls in {**available(), "legacy": get_intervention("legacy")}.items():
        if cls.__module__.startswith("genies."):
            cls.fitted_type()  # raises for a method whose fit is not annotated with a dataclass


def test_a_fitted_stand_in_scores_an_evalset() -> None:
    from genies.data.schema import Query

    fitted = Knobs(k=2).fit(None, Distribution.from_examples("d", [], []), FitContext())
    data = EvalSet("d", "test", (Query("p", ("a", "b")),))
    assert fitted == Learned(2.0)
    assert Knobs().scorer(None, fitted, FitContext())(data).beats[0][0, 1] == 0.5


# -- the command line --------------------------------------------------------------------------

def _app():
    import typer

    from genies.commands import interventions as cmd

    app = typer.Typer()
    cmd.register(app)
    return app


def _row(output: str, name: str) -> list[str]:
    """The cells of the first table line of hyperparameter `name` ("name": the header), cut where
    the header's columns start (columns are two spaces apart; a cell may be empty)."""
    header = next(line for line in output.splitlines() if re.match(r"name\s+type\s", line))
    starts = [0] + [m.end() for m in re.finditer(r"  +", header)]
    line = next(line for line in output.splitlines() if line.startswith(f"{name} "))
    return [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]


def test_cli_list() -> None:
    listing = CliRunner().invoke(_app(), ["list"])
    assert listing.exit_code == 0, listing.output
    for name in BUILT_IN:
        assert name in listing.output
    assert "fine-tuning" in listing.output and "legacy" in listing.output


def test_cli_show_prints_types_defaults_choices_presets_and_what_affects_results() -> None:
    shown = CliRunner().invoke(_app(), ["show", "zero_shot"])
    assert shown.exit_code == 0, shown.output
    header = _row(shown.output, "name")
    assert header[:4] == ["name", "type", "default", "choices"]
    assert "paper" in header and "cpu" in header and "affects results" in header
    column = header.index("affects results")
    score, batch = _row(shown.output, "score"), _row(shown.output, "batch_tokens")
    assert score[1:4] == ["str", "'sum'", "'sum', 'mean'"] and score[column] == "yes"
    assert batch[1:3] == ["int | None", "None"] and batch[column] == "no"
    assert "execution setting" in shown.output

    lora = CliRunner().invoke(_app(), ["show", "lora"])
    assert lora.exit_code == 0, lora.output
    header, r = _row(lora.output, "name"), _row(lora.output, "r")
    assert (r[header.index("paper")], r[header.index("cpu")]) == ("64", "8")
    assert _row(lora.output, "micro_batch_size")[header.index("affects results")] == "no"


def test_cli_show_of_an_unknown_name_raises_the_one_line_error() -> None:
    missing = CliRunner().invoke(_app(), ["show", "mmss"])
    assert isinstance(missing.exception, UnknownNameError)  # genies.cli prints it as one line
    assert "did you mean 'mms'" in str(missing.exception)


def test_builtin_names_are_the_registered_builtins_and_checked_without_torch():
    """`genies run -i mmss` is refused before torch and transformers load (seconds on a laptop):
    the names it checks against are exactly the built-in methods' registered names."""
    import subprocess
    import sys

    from genies.interventions import registry

    registry.available()
    builtins = {name for name, cls in registry._REGISTRY.items()
                if cls.__module__.removeprefix("genies.interventions.") in registry.builtin_modules()}
    assert set(registry.BUILTIN_NAMES) == builtins
    from importlib.metadata import entry_points

    own = [ep for ep in entry_points(group=registry.ENTRY_POINT_GROUP) if ep.value.startswith("genies.")]
    assert set(registry.SPEC_ONLY) == {ep.name for ep in own if not ep.load().listed}  # the refusal lists tfidf
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom genies.cli import _build\n"
            "result = CliRunner().invoke(_build(), ['run', '-i', 'mmss', '--out', 'x'])\n"
            "assert result.exit_code == 2 and \"did you mean 'mms'\" in result.output, result.output\n"
            "assert 'tfidf' in result.output and 'judge' not in result.output.split('(or a spec')[0], result.output\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)
