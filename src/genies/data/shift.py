"""The `Shift` value: a source distribution, a target, and the reference for target-tuned capability."""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = (
    "difficulty", "encoding", "pretraining_similarity", "quality",
    "context", "skill", "spurious_cues", "unwanted_personas",
)
FAMILIES = ("extreme", "probing")


@dataclass(frozen=True)
class Shift:
    """One source→target shift. `target_reference` defaults to the target
    (docs/methods.md#target-reference)."""

    source: str
    target: str
    target_reference: str
    category: str
    family: str

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"
