"""An intervention's code fingerprint covers the code it runs, and only that."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from genies.interventions.base import available


def _files(name: str) -> set[str]:
    return {Path(f).name for f in _paths(name)}


def _paths(name: str) -> list[str]:
    from genies.interventions.base import _genies_sources

    cls = available()[name]
    return list(_genies_sources(tuple(k.__module__ for k in cls.__mro__ if k.__module__.startswith("genies."))))


def test_imports_inside_functions_and_other_methods_files_count() -> None:
    # zero_shot imports the scoring engine inside a function; few_shot reuses zero_shot's scorer
    assert {"zero_shot.py", "scoring.py", "tree_attention.py"} <= _files("zero_shot")
    assert {"few_shot.py", "zero_shot.py", "scoring.py"} <= _files("few_shot")
    assert {"mms.py", "_representation.py", "_probes.py", "hidden.py"} <= _files("mms")


def test_unrelated_code_does_not_count() -> None:
    assert not {"_legacy.py", "_reward_packing.py", "zero_shot.py", "scoring.py"} & _files("mms")
    assert not {"_probes.py", "hidden.py", "scoring.py"} & _files("lora")
    assert not {"lora.py", "zero_shot.py", "_probes.py", "scoring.py"} & _files("random")


def test_a_users_own_file_counts(tmp_path: Path) -> None:
    source = tmp_path / "my_method.py"
    source.write_text(
        "from dataclasses import dataclass\n"
        "from genies.interventions.base import Intervention\n"
        "@dataclass\n"
        "class Mine(Intervention):\n"
        "    def fit(self, lm, source, ctx): ...\n"
        "    def predict(self, lm, state, dist, split, ctx): ...\n")
    spec = importlib.util.spec_from_file_location("my_method", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules["my_method"] = module
    try:
        spec.loader.exec_module(module)
        fingerprint = module.Mine.code_fingerprint()
    finally:
        del sys.modules["my_method"]
    assert source.read_bytes() in fingerprint
    assert Path(sys.modules["genies.interventions.base"].__file__).read_bytes() in fingerprint
