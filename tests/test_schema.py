from pathlib import Path

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


def test_record_round_trip_and_limited_view() -> None:
    ex = Example("p", ("a", "b"), 1, {"subject": "x"})
    assert ex.to_record() == {"subject": "x", "prompt": "p", "responses": {"a": 0, "b": 1}}
    dist = Distribution.from_examples("d", _examples(), _examples(), {"id": "d"}, Path("data/d"))
    view = dist.limited(max_train=1)
    assert len(view.train) == 1 and len(view.test) == 2
    assert dist.path == Path("data/d")
    assert (view.id, view.metadata, view.path) == ("d", {"id": "d"}, None)  # a cut view is not the folder
    assert dist.content_hash("train") == dist.content_hash("test")
