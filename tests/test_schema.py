import json
from pathlib import Path

from genies.data.loading import load_distribution
from genies.data.schema import Distribution, Example, eval_pairs, train_pairs


def _examples() -> list[Example]:
    return [
        Example("p0", ("a", "b", "c"), 1),
        Example("p1", ("x", "y"), 0),
    ]


def test_eval_pairs_cover_every_dispreferred_response() -> None:
    pairs = eval_pairs(_examples())
    assert [(p.example_index, p.preferred_index, p.dispreferred_index) for p in pairs] == [
        (0, 1, 0), (0, 1, 2), (1, 0, 1)]
    assert pairs[0].preferred == "b" and pairs[0].dispreferred == "a"


def test_train_pairs_are_one_per_prompt_and_seeded() -> None:
    examples = [Example(f"p{i}", ("a", "b", "c", "d"), i % 4) for i in range(50)]
    first, again, other = train_pairs(examples, 1), train_pairs(examples, 1), train_pairs(examples, 2)
    assert len(first) == 50 and first == again and first != other
    assert all(p.preferred_index != p.dispreferred_index for p in first)


def test_record_round_trip_and_limited_view(tmp_path: Path) -> None:
    ex = Example("p", ("a", "b"), 1, {"subject": "x"})
    assert ex.to_record() == {"subject": "x", "prompt": "p", "responses": {"a": 0, "b": 1}}
    # Parsed back by the loader every data file goes through: same prompt, responses in the same
    # (unsorted) order, the same preferred one (first, middle, last) and the metadata, whatever the text.
    examples = [ex, Example("q \"quoted\"\n", ("e", "ünï", "c", "d é"), 2, {"n": 3, "tags": ["t"]}),
                Example("r", ("h", "f", "g"), 0), Example("s", ("j", "i"), 0, {"subject": "y"})]
    folder = tmp_path / "d"
    folder.mkdir()
    for split in ("train", "test"):
        (folder / f"{split}.json").write_text(json.dumps([e.to_record() for e in examples]), encoding="utf-8")
    back = load_distribution(folder)
    for split in ("train", "test"):
        got = back.split(split)
        assert got == examples
        assert [dict(e.metadata) for e in got] == [dict(e.metadata) for e in examples]
        assert [e.preferred_response for e in got] == ["b", "c", "h", "j"]
    dist = Distribution.from_examples("d", _examples(), _examples(), {"id": "d"}, Path("data/d"))
    view = dist.limited(max_train=1)
    assert len(view.train) == 1 and len(view.test) == 2
    assert dist.path == Path("data/d")
    assert (view.id, view.metadata, view.path) == ("d", {"id": "d"}, None)  # a cut view is not the folder
    assert dist.content_hash("train") == dist.content_hash("test")


def test_caps_keep_a_seeded_random_subset_the_same_for_every_job():
    """Budgets draw a seeded subset in the split's order: the same for every job and rerun with
    that seed, different for other seeds, splits and distributions, and not the first N."""
    rows = [Example(f"p{i}", ("a", "b"), i % 2) for i in range(40)]
    dist = Distribution.from_examples("d", rows, rows)
    kept = dist.kept_indices("test", 8, seed=0)
    assert kept == sorted(kept) and len(set(kept)) == 8 and kept != list(range(8))
    assert Distribution.from_examples("d", rows, rows).kept_indices("test", 8, seed=0) == kept
    assert dist.limited(max_test=8, seed=0).test == [rows[i] for i in kept]
    assert dist.kept_indices("test", 8, seed=1) != kept
    assert dist.kept_indices("train", 8, seed=0) != kept
    assert Distribution.from_examples("e", rows, rows).kept_indices("test", 8, seed=0) != kept
    assert dist.limited(max_test=8).test == rows[:8]  # seed None: --first-n
    assert dist.kept_indices("test", 40, seed=0) == list(range(40)) == dist.kept_indices("test", None, seed=0)
    # the subset is roughly uniform over the split: over many seeds every index is drawn
    drawn = {i for seed in range(30) for i in dist.kept_indices("test", 8, seed)}
    assert drawn == set(range(40))
