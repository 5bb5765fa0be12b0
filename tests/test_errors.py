"""One error hierarchy, caught once by the CLI: a `GeniesError` is one `error:` line and exit 2,
Ctrl-C is `interrupted` and 130, and any other exception keeps its traceback because it is a bug."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from genies.cli import GeniesGroup
from genies.data.archive import UnsafeArchiveError
from genies.data.home import DataNotFoundError
from genies.data.loading import UnknownDistributionError
from genies.data.schema import DataError
from genies.data.shifts import ShiftSelectionError
from genies.data.store import ManifestMismatchError, StoreError
from genies.errors import ConfigError, GeniesError, UnknownNameError, unknown_name_message
from genies.models.embedded import ModelNotFoundError
from genies.models.hidden import UnsupportedArchitectureError
from genies.models.templates import UnknownTemplateError


def _genies(*args: str, script: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    """`genies ARGS` in a fresh process, the way a user runs it; `script` may add commands first."""
    code = f"import sys\nsys.argv = ['genies', *{list(args)!r}]\nfrom genies import cli\n{script}\ncli.main()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_a_genies_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _genies("shifts", "check", "nonexistent-file.json", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["error: nonexistent-file.json: cannot read file: No such file or directory"]
    assert "Traceback" not in result.stderr + result.stdout


def test_ctrl_c_is_interrupted_and_exit_130_and_a_bug_keeps_its_traceback(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        @cli.app.command("stop")
        def stop() -> None:
            raise KeyboardInterrupt

        @cli.app.command("boom")
        def boom() -> None:
            raise RuntimeError("a bug, not the user's fault")
    """)
    stopped = _genies("stop", script=script, cwd=tmp_path)
    assert stopped.returncode == 130 and stopped.stderr.splitlines() == ["interrupted"]
    crashed = _genies("boom", script=script, cwd=tmp_path)
    assert crashed.returncode == 1
    assert "Traceback" in crashed.stderr and "a bug, not the user's fault" in crashed.stderr


def _app(error: BaseException) -> typer.Typer:
    app = typer.Typer(cls=GeniesGroup)

    @app.command("fail")
    def fail() -> None:
        raise error

    app.command("noop")(lambda: None)  # two commands: typer builds the group, not a lone command
    return app


def test_the_message_is_printed_as_is() -> None:
    result = CliRunner().invoke(_app(ConfigError("bad value [red]x[/red] in [0, 1]")), ["fail"])
    assert result.exit_code == 2 and result.output == "error: bad value [red]x[/red] in [0, 1]\n"


def test_other_exceptions_are_not_caught() -> None:
    result = CliRunner().invoke(_app(ValueError("a bug")), ["fail"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError) and "error:" not in result.output


@pytest.mark.parametrize(("cls", "old_base", "args"), [
    (DataError, ValueError, ("f.json", "bad")),
    (DataNotFoundError, RuntimeError, ("no data",)),
    (ShiftSelectionError, ValueError, ("no such list",)),
    (UnknownDistributionError, LookupError, ("alpaca_mmul", Path("/data"), ["alpaca_mmlu"])),
    (StoreError, RuntimeError, ("offline",)),
    (ManifestMismatchError, RuntimeError, ("archive.tar", ["a: size"])),
    (UnsafeArchiveError, ValueError, ("archive.tar", "../x", "escapes the target")),
    (ModelNotFoundError, RuntimeError, ("no model",)),
    (UnsupportedArchitectureError, ValueError, ("no layers",)),
    (UnknownTemplateError, KeyError, ("unknown text template 'x'",)),
])
def test_every_error_is_a_genies_error_and_still_its_old_base(
    cls: type[Exception], old_base: type[Exception], args: tuple[object, ...]
) -> None:
    error = cls(*args)
    assert isinstance(error, GeniesError) and isinstance(error, old_base)


def test_unknown_names_suggest_the_closest_choice() -> None:
    assert unknown_name_message("split", "tset", ["train", "test"]) == (
        "unknown split 'tset'; did you mean 'test'? (choices: test, train)")
    assert unknown_name_message("split", "zzz", ["train", "test"]) == "unknown split 'zzz' (choices: test, train)"
    error = UnknownNameError("model", "defualt", ["default", "tiny"])
    assert isinstance(error, ConfigError) and isinstance(error, ValueError) and isinstance(error, LookupError)
    assert str(error) == "unknown model 'defualt'; did you mean 'default'? (choices: default, tiny)"
