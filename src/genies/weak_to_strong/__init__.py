"""Weak-to-strong generalization on GENIES (Burns et al. 2023), through the run's planner, job
store and executors: a weak supervisor trained on one half of a source's train split labels the
other half, a strong student trains on those labels, a strong ceiling on the same half's ground
truth, and PGR says how much of the gap between weak and ceiling the student recovers
(docs/w2s.md)."""

from genies.weak_to_strong.config import W2SConfig
from genies.weak_to_strong.files import load_examples, load_results
from genies.weak_to_strong.metrics import (
    Accuracy,
    De,
    DeReference,
    LabelledExample,
    Pgr,
    SourceExamples,
    SourceResult,
    StudentResult,
    TargetResult,
    TargetStudent,
    W2SResults,
    W2SRun,
)
from genies.weak_to_strong.run import w2s

__all__ = ["Accuracy", "De", "DeReference", "LabelledExample", "Pgr", "SourceExamples", "SourceResult",
           "StudentResult", "TargetResult", "TargetStudent", "W2SConfig", "W2SResults", "W2SRun", "load_examples",
           "load_results", "w2s"]
