"""Common-prefix lengths shared by the three packers (known answers)."""

from __future__ import annotations

from genies.models.batching import common_prefix_length, shared_prefix_length


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([7], [1]) == 0


def test_shared_prefix_leaves_every_sequence_its_last_token() -> None:
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2]]) == 1  # [1, 2] keeps its 2
    assert shared_prefix_length([[5, 6], [5, 6]]) == 1  # identical: each keeps its last token
    assert shared_prefix_length([[4], [4, 5]]) == 0
    assert shared_prefix_length([[1, 2, 3]]) == 2
