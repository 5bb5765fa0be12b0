"""Method versions instead of code hashes: the lock keeps `version` honest, and cache keys move
only when results can (`genies.interventions.versions`, `genies.pipeline.jobs.fit_key`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from genies.interventions import versions
from genies.interventions.registry import get_intervention
from genies.interventions.versions import (
    EXTRACTION, EXTRACTION_MODULES, code_digest, method_roots, mismatches, normalised_source, result_modules,
)

SHIPPED = {"zero_shot", "few_shot", "random", "lora", "prompt_tuning", "full_fine_tune",
           "mms", "lat", "cra", "ccs", "logistic", "legacy"}
UPDATE = "python -m genies.interventions.versions --update"


# -- the lock ----------------------------------------------------------------------------------

def test_the_lock_matches_the_code() -> None:
    """Fails when a method's code changed and the lock was not refreshed; the message says, per
    method, whether to bump `version` (its results change) and how to refresh the lock."""
    now = versions.current()
    assert SHIPPED | {EXTRACTION} <= set(now)
    problems = mismatches(now, versions.read_lock())
    assert not problems, "the method version lock is stale:\n" + "\n".join(problems)


def test_the_lock_does_not_depend_on_what_was_loaded_before() -> None:
    """`legacy` arrives through genies' own entry point: the lock must list it whether or not
    something asked for it first (else the test above passes or fails by test order)."""
    from genies.interventions import registry

    legacy = registry._REGISTRY.pop("legacy", None)
    try:
        assert "legacy" in versions.current()
    finally:
        if legacy is not None:
            registry._REGISTRY.setdefault("legacy", legacy)


def test_mismatch_messages_say_how_to_fix() -> None:
    entry = {"version": 2, "code": "aaaa", "modules": ["genies.interventions.mms"]}
    changed = {**entry, "code": "bbbb"}
    bumped = {**changed, "version": 3}
    assert mismatches({"mms": entry}, {"mms": entry}) == []
    (message,) = mismatches({"mms": changed}, {"mms": entry})
    assert message.startswith("mms: its code changed but its version is still 2")
    assert "bump `version`" in message and f"`{UPDATE}`" in message
    (message,) = mismatches({"mms": bumped}, {"mms": entry})
    assert message == f"mms: version 3 in the code, 2 in the lock; refresh the lock with `{UPDATE}`"
    (message,) = mismatches({"mms": entry}, {})
    assert message == f"mms: not in the lock; record it with `{UPDATE}`"
    (message,) = mismatches({}, {"mms": entry})
    assert message == f"mms: in the lock but not shipped any more; drop it with `{UPDATE}`"


# -- normalised code ---------------------------------------------------------------------------

ORIGINAL = '''"""Module docstring."""
SCALE = 2.0


def score(x):
    """Doubles x."""
    return x * SCALE
'''

REFORMATTED = '''"""Another module docstring, longer,
over two lines."""
# a comment
SCALE = (
    2.0  # why two
)


def score(x):
    # no docstring any more, a comment instead
    return x*SCALE
'''


def test_normalised_source_ignores_comments_docstrings_and_layout(tmp_path) -> None:
    (tmp_path / "a.py").write_text(ORIGINAL)
    (tmp_path / "b.py").write_text(REFORMATTED)
    (tmp_path / "c.py").write_text(ORIGINAL.replace("SCALE = 2.0", "SCALE = 3.0"))
    (tmp_path / "d.py").write_text(ORIGINAL.replace("x * SCALE", "x + SCALE"))
    assert normalised_source(tmp_path / "a.py") == normalised_source(tmp_path / "b.py")
    assert normalised_source(tmp_path / "a.py") != normalised_source(tmp_path / "c.py")
    assert normalised_source(tmp_path / "a.py") != normalised_source(tmp_path / "d.py")


# -- cache keys --------------------------------------------------------------------------------

LIBRARIES = {"torch": "2.5.0", "transformers": "4.46.0", "peft": "0.13.0"}


def _key(method, libraries=LIBRARIES) -> str:
    from genies.pipeline.jobs import fit_key

    return fit_key(method=method, model_fingerprint="model", precision={"dtype": "float32", "quantize": "none"}, source_hash="source", seed=0, libraries=libraries)


@pytest.fixture
def method_copy(tmp_path, monkeypatch):
    """zero_shot's module copied to a file of its own (registered as `zero_shot_copy`), and a
    function that rewrites the file and imports it again: what editing a method's module does."""
    from genies.interventions import registry

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # every import compiles the current text
    source = Path(importlib.import_module("genies.interventions.zero_shot").__file__).read_text()
    source = source.replace('@register("zero_shot"', '@register("zero_shot_copy"')
    assert "zero_shot_copy" in source

    def load(text: str):
        (tmp_path / "zero_shot_copy_module.py").write_text(text)
        sys.modules.pop("zero_shot_copy_module", None)
        importlib.invalidate_caches()
        return importlib.import_module("zero_shot_copy_module").ZeroShot

    yield source, load
    sys.modules.pop("zero_shot_copy_module", None)
    registry._REGISTRY.pop("zero_shot_copy", None)


def test_comments_and_docstrings_keep_the_fit_key_and_the_lock(method_copy) -> None:
    source, load = method_copy
    cls = load(source)
    key, digest = _key(cls()), code_digest(result_modules(("zero_shot_copy_module",)))
    edited = source.replace('"""zero_shot: the base model judges', '"""zero_shot (edited docstring): judges', 1)
    edited = edited.replace("\n\ndef lm_response_scores", "\n\n# a new comment\ndef lm_response_scores", 1)
    edited = edited.replace("        def score(data: EvalSet)", "        # inside the class too\n        def score(data: EvalSet)", 1)
    assert edited.count("edited docstring") == edited.count("# a new comment") == edited.count("# inside the") == 1
    cls = load(edited)
    assert _key(cls()) == key
    assert code_digest(result_modules(("zero_shot_copy_module",))) == digest
    # a change in what it computes keeps the key (the version names results) but not the digest,
    # so the lock test asks for a version bump
    computes = edited.replace("dtype=np.float64", "dtype=np.float32")
    assert computes != edited
    cls = load(computes)
    assert _key(cls()) == key
    assert code_digest(result_modules(("zero_shot_copy_module",))) != digest
    cls.version += 1
    assert _key(cls()) != key


def test_library_versions_and_result_hparams_change_the_key_execution_settings_do_not(monkeypatch) -> None:
    import genies.pipeline.jobs as jobs

    zero_shot = get_intervention("zero_shot")
    key = _key(zero_shot())
    assert _key(zero_shot(), {**LIBRARIES, "transformers": "4.47.0"}) != key
    assert _key(zero_shot(), {**LIBRARIES, "peft": None}) != key
    monkeypatch.setattr(jobs, "package_versions", lambda: LIBRARIES)
    assert _key(zero_shot(), None) == key  # the installed versions are the default
    monkeypatch.setattr(jobs, "package_versions", lambda: {**LIBRARIES, "torch": "2.6.0"})
    assert _key(zero_shot(), None) != key
    assert _key(zero_shot(batch_tokens=64)) == key  # an execution setting
    assert _key(zero_shot(score="mean")) != key and _key(zero_shot(max_length=128)) != key


# -- which code a method's results depend on ---------------------------------------------------

def _files(name: str) -> set[str]:
    return {Path(importlib.util.find_spec(m).origin).relative_to(Path(versions.__file__).parents[1]).as_posix()
            for m in result_modules(method_roots(get_intervention(name)))}


def test_result_modules_follow_imports_inside_functions_and_shared_code() -> None:
    # zero_shot imports the scoring engine inside a function; few_shot reuses zero_shot's scorer
    assert {"interventions/zero_shot.py", "models/scoring.py", "models/tree_attention.py",
            "models/base.py", "interventions/scores.py"} <= _files("zero_shot")
    assert {"interventions/few_shot.py", "interventions/zero_shot.py", "models/scoring.py"} <= _files("few_shot")
    assert {"interventions/mms.py", "interventions/_representation.py", "interventions/_probes.py",
            "models/hidden.py", "models/activations.py", "models/base.py"} <= _files("mms")
    assert {"interventions/lora.py", "interventions/_reward_model.py"} <= _files("lora")
    assert {"interventions/_legacy.py"} <= _files("legacy")


def test_result_modules_leave_out_unrelated_code() -> None:
    plumbing = {f"interventions/{m}.py" for m in ("base", "context", "fitted", "hparams", "registry", "versions")}
    assert not ({"models/catalog.py", "models/embedded.py", "models/scoring.py", "interventions/_legacy.py",
                 "interventions/_reward_packing.py", "interventions/zero_shot.py"} | plumbing) & _files("mms")
    assert not {"interventions/_probes.py", "models/hidden.py", "interventions/_representation.py"} & _files("lora")
    assert not {"interventions/lora.py", "interventions/zero_shot.py", "models/scoring.py"} & _files("random")
    assert not plumbing & _files("zero_shot")


def test_extraction_covers_hidden_states_only() -> None:
    extraction = set(result_modules(EXTRACTION_MODULES))
    assert {"genies.models.hidden", "genies.models.templates", "genies.models.base"} <= extraction
    assert not {"genies.models.scoring", "genies.models.catalog"} & extraction
