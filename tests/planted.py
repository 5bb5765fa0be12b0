"""Generated preference data with a planted, learnable feature, shared by the method tests."""

from __future__ import annotations

import random

from genies.data.schema import Example


def planted(n: int, seed: int) -> list[Example]:
    """Random letters; the preferred response ends in ' yes', the other in ' no' (random order)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))) + " yes"
        bad = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))) + " no"
        pref = rng.randrange(2)
        out.append(Example(f"Q{i}: ", (bad, good) if pref else (good, bad), pref))
    return out
