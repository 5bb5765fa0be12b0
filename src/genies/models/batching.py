"""Pieces shared by the three packers of token sequences (the scoring engine, hidden-state
extraction and reward-model packing): common-prefix lengths and out-of-memory back-off.

They live apart from any one packer so that each imports only these, and an intervention's
code fingerprint (which follows imports) does not change when an unrelated packer does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from genies.models.base import LoadedModel

log = logging.getLogger(__name__)

Batch = TypeVar("Batch", bound=Sequence)


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens common to the start of every sequence, leaving each at least its last token of
    its own (so every sequence's last token lies in its own segment of a packed row)."""
    limit = min(len(s) for s in sequences) - 1
    return max(0, min([limit, *(common_prefix_length(sequences[0], s) for s in sequences[1:])]))


def run_with_backoff(lm: LoadedModel, batches: Sequence[Batch], run: Callable[[Batch], None]) -> None:
    """Run each batch; on out-of-memory split the failing batch in halves and retry (down to
    one item), leaving the other batches at their size."""
    queue = list(reversed(batches))
    while queue:
        batch = queue.pop()
        try:
            run(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
            half = len(batch) // 2
            log.info("out of memory on a batch of %d; retrying as %d + %d", len(batch), half, len(batch) - half)
            queue.extend([batch[half:], batch[:half]])
