"""Warnings about data quirks: leakage, duplication, degenerate prompts, label direction, length.

The GENIES data ships with quirks that change what a number means (docs/data.md#audit-warnings): test
examples that are also training examples, prompts that never vary, a copied distribution, and
two distributions whose labels favour the answer a careful reader would call wrong. genies
reports these as warnings with counts and never "fixes" them, because fixing would change the
published numbers we want to reproduce. Every count here is computed from the data it is given,
so a new copy of the data (or a user's own distribution) gets an honest audit.

Identity of two examples: same prompt, and the same set of (response, label) pairs regardless of
response order; counts are of distinct items (e.g. ranking_logic_easy: 89 distinct test examples
also in train, spread over 105 of the 250 test rows, both are reported).

Label direction is the one thing not fully computable, since "rule-breaking" needs semantics:
- distributions whose records carry `action`/`action_negation` (reward_seeking,
  punishment_avoidance) state a formatting rule ("use all caps", "don't use commas", ...) in the
  prompt; `rule_direction` checks mechanically which response obeys that rule and warns when the
  preferred one mostly breaks it;
- for the rest, `KNOWN_LABEL_QUIRKS` is a short, documented list of named checks written from
  reading the data (survival_influence prefers the self-preserving answer although the prompt
  asks the model to put the user's values above its own survival).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from genies.data.loading import is_hf_folder
from genies.data.schema import Distribution, Example
from genies.data.validation import WARNING, Finding, split_file

# A preferred response that is the longest (or shortest) this often lets length alone solve a set.
LENGTH_CUE_THRESHOLD = 0.9
# A rule-checked distribution is flagged when its preferred response breaks the rule this often.
RULE_BREAKING_THRESHOLD = 0.5

KNOWN_LABEL_QUIRKS: Mapping[str, str] = {
    "survival_influence": (
        "labels favour the self-preserving answer (e.g. objecting to being shut down) although the "
        "prompt asks the model to put the user's values above its own, even at risk to itself; kept "
        "as shipped to reproduce GENIES numbers"
    ),
    # Used only when the records lack the action fields that `rule_direction` checks mechanically.
    "reward_seeking": (
        "labels favour the rule-breaking, reward-taking response (the inverse of "
        "punishment_avoidance); kept as shipped to reproduce GENIES numbers"
    ),
}


def _identity(ex: Example) -> tuple[str, frozenset[tuple[str, int]]]:
    return ex.prompt, frozenset((r, int(i == ex.preferred)) for i, r in enumerate(ex.responses))


@dataclass(frozen=True)
class Overlap:
    """Items of the test split that also occur in train: distinct items and the test rows they cover."""

    distinct: int
    rows: int
    total_rows: int


def identical_examples(train: Sequence[Example], test: Sequence[Example]) -> Overlap:
    seen = {_identity(ex) for ex in train}
    hits = [key for key in map(_identity, test) if key in seen]
    return Overlap(len(set(hits)), len(hits), len(test))


def shared_prompts(train: Sequence[Example], test: Sequence[Example]) -> Overlap:
    seen = {ex.prompt for ex in train}
    hits = [ex.prompt for ex in test if ex.prompt in seen]
    return Overlap(len(set(hits)), len(hits), len(test))


@dataclass(frozen=True)
class Repeats:
    """Prompts that occur more than once in a split, and the extra rows they add."""

    prompts: int
    extra_rows: int
    total_rows: int


def repeated_prompts(examples: Sequence[Example]) -> Repeats:
    counts = Counter(ex.prompt for ex in examples)
    return Repeats(sum(1 for c in counts.values() if c > 1), sum(c - 1 for c in counts.values()), len(examples))


@dataclass(frozen=True)
class LengthCue:
    """How often the preferred response is strictly the longest / strictly the shortest (in characters).

    Ties for longest or shortest count as neither, so both fractions are lower bounds of what a
    length-only judge could exploit.
    """

    n: int
    preferred_longest: float
    preferred_shortest: float


def length_cue(examples: Sequence[Example]) -> LengthCue:
    longest = shortest = 0
    for ex in examples:
        lengths = [len(r) for r in ex.responses]
        mine = lengths[ex.preferred]
        others = [n for i, n in enumerate(lengths) if i != ex.preferred]
        longest += mine > max(others)
        shortest += mine < min(others)
    n = len(examples)
    return LengthCue(n, longest / n if n else 0.0, shortest / n if n else 0.0)


# --- formatting rules stated in reward_seeking / punishment_avoidance prompts ----------------

_WORD = re.compile(r"[A-Za-z]+")


def _rule_score(rule: str, text: str) -> float | None:
    """How strongly `text` shows the positive form of a formatting rule; None for unknown rules."""
    words = _WORD.findall(text)
    letters = [c for c in text if c.isalpha()]
    if "all caps" in rule:
        return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
    if "first letter of each word" in rule:
        return sum(w[0].isupper() for w in words) / len(words) if words else 0.0
    if "last letter of each word" in rule:
        return sum(w[-1].isupper() for w in words if len(w) > 1) / max(1, sum(len(w) > 1 for w in words))
    if "periods" in rule:
        return float(text.count("."))
    if "commas" in rule:
        return float(text.count(","))
    return None


def _requested_rule(ex: Example) -> str | None:
    """The rule the prompt asks for: whichever of action / action_negation follows 'Complete the request and'."""
    options = [ex.metadata.get("action"), ex.metadata.get("action_negation")]
    match = re.search(r"Complete the request and (.+?)\. ", ex.prompt)
    if not match or not all(isinstance(o, str) for o in options):
        return None
    return match.group(1) if match.group(1) in options else None


@dataclass(frozen=True)
class RuleDirection:
    """Two-response items whose responses differ on the prompt's formatting rule (checkable), and
    how many of them prefer the response that follows the rule more closely (fewer commas for
    "don't use commas", more capitals for "use all caps", ...)."""

    checkable: int
    preferred_obeys: int


def rule_direction(examples: Iterable[Example]) -> RuleDirection:
    checkable = obeys = 0
    for ex in examples:
        rule = _requested_rule(ex)
        if rule is None or len(ex.responses) != 2:
            continue
        scores = [_rule_score(rule, r) for r in ex.responses]
        if scores[0] is None or scores[0] == scores[1]:
            continue
        positive = not rule.startswith("don't")
        obeying = max(range(2), key=lambda i: scores[i]) if positive else min(range(2), key=lambda i: scores[i])
        checkable += 1
        obeys += obeying == ex.preferred
    return RuleDirection(checkable, obeys)


# --- the audit -------------------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _split_where(folder: Path, split: str) -> str:
    """How validation names a split: its file in a GENIES/JSONL folder, `<folder>[<split>]` in a saved HF one."""
    if is_hf_folder(folder):
        return f"{folder}[{split}]"
    return str(split_file(folder, split) or folder / f"{split}.json")


def _warn(dist: Distribution, problem: str, split: str | None = None) -> Finding:
    if dist.path is None:
        return Finding(dist.id, problem, None, WARNING)
    where = _split_where(dist.path, split) if split else str(dist.path)
    return Finding(where, problem, None, WARNING)


def audit_distribution(dist: Distribution) -> list[Finding]:
    """Every quirk warning for one distribution (both splits must load)."""
    train, test = dist.train, dist.test
    found: list[Finding] = []
    declared = dist.metadata.get("id")
    if isinstance(declared, str) and declared != dist.id:
        found.append(_warn(dist, f"metadata: metadata.json says id {declared!r} but the distribution is {dist.id!r} "
                                 "(a copied folder?)"))
    same = identical_examples(train, test)
    if same.distinct:
        found.append(_warn(dist, f"leakage: {_n(same.distinct, 'distinct test example')} identical to train examples "
                                 f"({same.rows} of {same.total_rows} test rows)", "test"))
    all_prompts = {ex.prompt for ex in train} | {ex.prompt for ex in test}
    if len(all_prompts) == 1:
        only = next(iter(all_prompts))
        shown = only if len(only) <= 60 else only[:57] + "..."
        found.append(_warn(dist, f"degenerate prompts: all {len(train) + len(test)} prompts are the same string {shown!r}"))
    else:
        prompts = shared_prompts(train, test)
        if prompts.distinct:
            found.append(_warn(dist, f"leakage: {_n(prompts.distinct, 'distinct test prompt')} also in train "
                                     f"({prompts.rows} of {prompts.total_rows} test rows)", "test"))
        for split, examples in (("train", train), ("test", test)):
            rep = repeated_prompts(examples)
            if rep.prompts:
                found.append(_warn(dist, f"duplication: {_n(rep.prompts, 'prompt')} repeated "
                                         f"({rep.extra_rows} extra rows of {rep.total_rows})", split))
    cue = length_cue(test)
    for what, frac in (("longest", cue.preferred_longest), ("shortest", cue.preferred_shortest)):
        if frac >= LENGTH_CUE_THRESHOLD:
            found.append(_warn(dist, f"length cue: the preferred response is the {what} in {frac:.1%} of "
                                     f"{cue.n} test examples; length alone nearly solves it", "test"))
    direction = rule_direction([*train, *test])
    if direction.checkable and direction.preferred_obeys / direction.checkable < RULE_BREAKING_THRESHOLD:
        broken = direction.checkable - direction.preferred_obeys
        found.append(_warn(dist, f"label direction: the preferred response breaks the formatting rule the prompt "
                                 f"asks for in {broken} of {direction.checkable} checkable examples"))
    elif dist.id in KNOWN_LABEL_QUIRKS and not direction.checkable:
        found.append(_warn(dist, f"label direction (known quirk): {KNOWN_LABEL_QUIRKS[dist.id]}"))
    return found


def audit_identical_distributions(dists: Sequence[Distribution]) -> list[Finding]:
    """Distributions whose train and test splits have the same content (e.g. a copied folder)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for dist in dists:
        groups.setdefault((dist.content_hash("train"), dist.content_hash("test")), []).append(dist.id)
    return [
        Finding(", ".join(ids), f"duplication: distributions {' and '.join(ids)} have identical content", None, WARNING)
        for ids in groups.values() if len(ids) > 1
    ]
