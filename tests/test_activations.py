"""Activation store: hits do not recompute, keys track what changes the numbers, writers are safe."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from genies.data.schema import Distribution, Example
from genies.models.activations import ActivationStore
from genies.interventions._representation import as_sites
from genies.models.hidden import extract_hidden, resolve_attention
from genies.models.templates import get_template
from genies.models.testing import tiny_model

TRAIN = [
    Example("What is 2+2?", (" 4", " 5", " four"), 0),
    Example("Name a colour.", (" blue", " seven"), 0),
]
TEST = [Example("Say hi.", (" hi", " bye"), 1)]


def _dist(train=TRAIN) -> Distribution:
    return Distribution.from_examples("toy", train, TEST)


class ForwardCounter:
    """Counts forward calls of the model's base (the only thing extraction runs)."""

    def __init__(self, lm):
        self.n = 0
        self.handle = lm.model.base_model.register_forward_hook(self._count)

    def _count(self, *args):
        self.n += 1


@pytest.fixture()
def counter(tiny_llama):
    resolve_attention(tiny_llama)  # the once-per-model tree check runs forwards of its own
    c = ForwardCounter(tiny_llama)
    yield c
    c.handle.remove()


def test_values_match_direct_extraction_and_indices(tmp_path, tiny_llama):
    store = ActivationStore(tmp_path, batch_tokens=16)
    acts = store.get(tiny_llama, _dist().eval_set("train"), template="cra_yes", site="heads")
    fill = get_template("cra_yes")
    texts = [fill(ex.prompt, r) for ex in TRAIN for r in ex.responses]
    direct = extract_hidden(tiny_llama, [t.prefix for t in texts], [t.completion for t in texts])
    np.testing.assert_allclose(acts.values, direct["heads"], atol=1e-6)
    np.testing.assert_allclose(store.get(tiny_llama, _dist().eval_set("train"), "cra_yes", "residual").values,
                               direct["residual"], atol=1e-5)
    assert isinstance(acts.values, np.memmap) and acts.values.dtype == np.float32
    assert acts.example_index.tolist() == [0, 0, 0, 1, 1]
    assert acts.response_index.tolist() == [0, 1, 2, 0, 1]


def test_hit_does_not_recompute_and_an_entry_holds_one_site(tmp_path, tiny_llama, counter):
    """Each method reads one site, so an entry computes and writes only that one; asking for the
    other site is another entry (never the first one's file), and a hit runs nothing."""
    store = ActivationStore(tmp_path)  # 5 short texts: one tree, one forward
    heads = store.get(tiny_llama, _dist().eval_set("train"), site="heads")
    assert counter.n == 1
    ActivationStore(tmp_path).get(tiny_llama, _dist().eval_set("train"), site="heads")
    assert counter.n == 1
    residual = store.get(tiny_llama, _dist().eval_set("train"), site="residual")
    assert counter.n == 2 and residual.key != heads.key
    assert sorted(p.name for p in (tmp_path / heads.key).glob("*.npy")) == [
        "example_index.npy", "heads.npy", "response_index.npy"]
    assert sorted(p.name for p in (tmp_path / residual.key).glob("*.npy")) == [
        "example_index.npy", "residual.npy", "response_index.npy"]
    assert heads.meta["site"] == "heads" and list(heads.meta["shapes"]) == ["heads"]
    store.get(tiny_llama, _dist().eval_set("train"), site="residual")
    store.get(tiny_llama, _dist().eval_set("test"), site="heads")
    assert counter.n == 3


def test_sites_are_views_of_the_memory_map(tmp_path, tiny_llama):
    """`as_sites` reshapes without copying: the store's file stays on disk and a method that
    indexes some rows reads only those pages."""
    acts = ActivationStore(tmp_path).get(tiny_llama, _dist().eval_set("train"), site="heads")
    flat = as_sites(acts.values, "heads")
    n, layers, heads, dim = acts.values.shape
    assert flat.shape == (n, layers * heads, dim)
    assert np.shares_memory(flat, acts.values) and not flat.flags.writeable
    np.testing.assert_array_equal(flat[[1, 3]], np.asarray(acts.values)[[1, 3]].reshape(2, layers * heads, dim))


def test_get_hashes_the_split_once(tmp_path, tiny_llama, monkeypatch: pytest.MonkeyPatch):
    """The split's texts hash (a pass over every example) is computed once per `get`, hit or miss."""
    from genies.data.schema import EvalSet

    calls = []
    real = EvalSet.texts_hash
    monkeypatch.setattr(EvalSet, "texts_hash", lambda self: calls.append(self.split) or real(self))
    store = ActivationStore(tmp_path)
    store.get(tiny_llama, _dist().eval_set("train"))
    store.get(tiny_llama, _dist().eval_set("train"))
    assert calls == ["train", "train"]


def test_key_ignores_labels_and_follows_library_versions(tmp_path, tiny_llama, monkeypatch: pytest.MonkeyPatch):
    """Labels do not change hidden states, so relabelled data shares the entry; a new torch,
    transformers or peft may change them, so it does not."""
    from genies.models import activations

    store = ActivationStore(tmp_path)
    base = store.key(tiny_llama, _dist().eval_set("train"))
    relabelled = [Example(ex.prompt, ex.responses, 1 - ex.preferred) for ex in TRAIN]
    assert store.key(tiny_llama, _dist(relabelled).eval_set("train")) == base
    assert store.key(tiny_llama, _dist().eval_set("train", with_labels=True)) == base
    monkeypatch.setattr(activations, "package_versions", lambda: {"torch": "0", "transformers": "99", "peft": "0"})
    assert store.key(tiny_llama, _dist().eval_set("train")) != base


def test_key_changes_with_template_data_model_site_and_position(tmp_path, tiny_llama):
    store = ActivationStore(tmp_path)
    base = store.key(tiny_llama, _dist().eval_set("train"))
    edited = [TRAIN[0], Example("Name a colour.", (" blue", " eight"), 0)]
    other = tiny_model(tmp_path / "other", "llama", seed=7)
    variants = {
        store.key(tiny_llama, _dist().eval_set("train"), template="lat_stim_2"),
        store.key(tiny_llama, _dist(edited).eval_set("train")),
        store.key(tiny_llama, _dist().eval_set("test")),
        store.key(other, _dist().eval_set("train")),
        store.key(tiny_llama, _dist().eval_set("train"), position="mean"),
        store.key(tiny_llama, _dist().eval_set("train"), site="residual"),
        store.key(tiny_llama, Distribution.from_examples("toy2", TRAIN, TEST).eval_set("train")),
    }
    assert base not in variants and len(variants) == 7
    assert store.key(tiny_llama, _dist(list(TRAIN)).eval_set("train")) == base  # same content, same key


def test_bad_arguments_are_named(tmp_path, tiny_llama):
    store = ActivationStore(tmp_path)
    with pytest.raises(KeyError, match="unknown text template 'nope'"):
        store.get(tiny_llama, _dist().eval_set("train"), template="nope")
    with pytest.raises(ValueError, match="unknown site 'mlp'"):
        store.get(tiny_llama, _dist().eval_set("train"), site="mlp")
    with pytest.raises(ValueError, match="toy: split 'train' has no responses"):
        store.get(tiny_llama, Distribution.from_examples("toy", [], TEST).eval_set("train"))
    assert store.entries() == []


def test_concurrent_writers_end_with_one_valid_entry(tmp_path, tiny_llama, counter):
    results, errors = [], []

    def worker():
        try:
            results.append(ActivationStore(tmp_path).get(tiny_llama, _dist().eval_set("train"), site="residual").values)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert counter.n == 1  # the lock made the others wait and then read
    assert len(ActivationStore(tmp_path).entries()) == 1
    assert not list(tmp_path.glob(".*.tmp"))
    for values in results[1:]:
        np.testing.assert_array_equal(values, results[0])


def test_ls_du_clear(tmp_path, tiny_llama):
    store = ActivationStore(tmp_path)
    store.get(tiny_llama, _dist().eval_set("train"))
    store.get(tiny_llama, _dist().eval_set("test"))
    entries = store.entries()
    assert len(entries) == 2 and {e.meta["split"] for e in entries} == {"train", "test"}
    assert store.total_size() >= sum(e.size_bytes for e in entries) > 0
    # Age the train entry by 10 days; clearing entries older than 7 days removes only it.
    meta_file = next(e.path for e in entries if e.meta["split"] == "train") / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["created"] = time.time() - 10 * 86400
    meta_file.write_text(json.dumps(meta))
    removed = store.clear(older_than_s=7 * 86400)
    assert [e.meta["split"] for e in removed] == ["train"]
    assert [e.meta["split"] for e in store.entries()] == ["test"]
    (tmp_path / ".abandoned.x1y2.tmp").mkdir()
    store.clear()
    assert store.entries() == [] and not list(tmp_path.glob(".*.tmp"))


def test_cli_ls_du_clear(tmp_path, tiny_llama, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from genies.commands.cache import register

    monkeypatch.setenv("GENIES_HOME", str(tmp_path))
    ActivationStore().get(tiny_llama, _dist().eval_set("train"))
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    listed = runner.invoke(app, ["ls"])
    assert listed.exit_code == 0 and "toy" in listed.output and "train" in listed.output
    (tmp_path / "jobs" / "ab").mkdir(parents=True)
    (tmp_path / "jobs" / "ab" / "predictions.json").write_bytes(b"x" * 3000)
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "model.safetensors").write_bytes(b"x" * 5000)
    du = runner.invoke(app, ["du"])
    assert du.exit_code == 0 and "1 entr" in du.output
    # every cache genies keeps: activations, the job store and converted models, and their total
    assert "jobs: 2.9 KiB in 1 files" in du.output and "converted models: 4.9 KiB in 1 files" in du.output
    assert "total:" in du.output
    assert runner.invoke(app, ["clear", "--older-than", "7d", "--yes"]).exit_code == 0
    assert len(ActivationStore().entries()) == 1
    bad = runner.invoke(app, ["clear", "--older-than", "7 fortnights", "--yes"])
    assert bad.exit_code != 0 and "--older-than" in bad.output
    assert runner.invoke(app, ["clear"], input="n\n").exit_code != 0
    assert len(ActivationStore().entries()) == 1
    assert runner.invoke(app, ["clear", "--yes"]).exit_code == 0
    assert ActivationStore().entries() == []


def test_cache_and_model_listing_modules_import_neither_torch_nor_transformers():
    """`genies cache ls/du/clear` and `genies models list` start in under a second only if the
    modules they use leave torch and transformers unimported (several seconds each)."""
    import subprocess
    import sys

    code = ("import sys, genies.models.activations, genies.models.catalog, genies.commands.cache, "
            "genies.commands.models; print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
