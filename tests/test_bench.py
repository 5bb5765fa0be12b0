"""`genies bench scoring` on a tiny model and a generated distribution: numbers and JSON keys."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genies.bench.scoring import run_scoring_bench
from genies.cli import _build
from genies.data.schema import Example

KEYS = ("engine_tokens_per_s", "naive_tokens_per_s", "speedup_vs_naive", "fraction_of_limit", "peak_rss_mib")


def _examples(n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    word = lambda: "".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 6)))  # noqa: E731
    return [Example(" ".join(word() for _ in range(12)), tuple(word() for _ in range(3)), 0) for _ in range(n)]


def test_run_scoring_bench_counts_tokens(tiny_llama, monkeypatch: pytest.MonkeyPatch) -> None:
    """Token counts from the byte tokenizer; times from a fake clock that each scoring call
    advances by a known amount (engine 0.5 s, naive 2 s per example), so the speedup and the
    rates have known answers: 2.5 s against 10 s over the two distributions."""
    from types import SimpleNamespace

    from genies.bench import scoring as bench

    clock = [0.0]

    def timed(fn, per_example):
        def run(lm, examples, **kwargs):
            out = fn(lm, examples, **kwargs)
            clock[0] += per_example * len(examples)
            return out
        return run

    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(bench, "score_examples", timed(bench.score_examples, 0.5))
    monkeypatch.setattr(bench, "score_examples_naive", timed(bench.score_examples_naive, 2.0))
    examples = _examples(5)
    result = run_scoring_bench(tiny_llama, [("a", examples[:3]), ("b", examples[3:])])
    prompts = sum(len(ex.prompt) for ex in examples)  # byte tokenizer: one token per character
    responses = sum(len(r) + 1 for ex in examples for r in ex.responses)
    assert result.response_tokens == responses
    assert result.unique_tokens == prompts + responses
    assert result.naive_tokens == 3 * prompts + responses
    assert result.max_abs_diff < 1e-4
    assert (result.engine_seconds, result.naive_seconds) == (2.5, 10.0)
    assert result.speedup_vs_naive == pytest.approx(4.0)
    assert result.engine_tokens_per_s == pytest.approx(responses / 2.5)
    assert result.naive_tokens_per_s == pytest.approx(responses / 10.0)
    assert result.engine_unique_tokens_per_s == pytest.approx((prompts + responses) / 2.5)
    assert all(getattr(result, k) > 0 for k in KEYS)


@pytest.mark.parametrize("attention", ["auto", "dense"])
def test_cli_json_last_line(tiny_llama, tmp_path: Path, attention: str) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    for split, seed in (("train", 1), ("test", 2)):
        records = [ex.to_record() for ex in _examples(4, seed)]
        (folder / f"{split}.json").write_text(json.dumps(records))
    result = CliRunner().invoke(_build(), ["bench", "scoring", "--model", str(tiny_llama.path), "--dist",
                                           str(folder), "-n", "3", "--attention", attention, "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(k in last for k in KEYS)
    assert last["examples"] == 3 and last["distributions"] == [str(folder)]
    assert last["attention"] == ("tree" if attention == "auto" else "dense")  # a tiny Llama on CPU takes the tree path


def test_cli_rejects_an_unknown_attention_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(_build(), ["bench", "scoring", "--dist", str(tmp_path), "--attention", "flash"])
    assert result.exit_code == 2
    assert "error: attention must be one of auto, tree, dense; got 'flash'" in result.output


EXTRACTION_KEYS = (*KEYS, "max_abs_diff", "unique_tokens", "naive_tokens")


@pytest.mark.parametrize("site", ["heads", "residual"])
def test_run_extraction_bench_counts_tokens_and_matches_naive(tiny_llama, site: str) -> None:
    """Token counts from the byte tokenizer, written out independently: naive reads BOS + prompt
    + response for every text, the engine each distinct token prefix of a prompt's texts once
    (responses that open alike share their opening); and the two extract the same values."""
    from genies.bench.extraction import run_extraction_bench

    examples = _examples(5)
    result = run_extraction_bench(tiny_llama, [("a", examples[:3]), ("b", examples[3:])], site=site,
                                  position="mean")
    tok = tiny_llama.tokenizer
    texts = [[[tok.bos_token_id, *tok(ex.prompt + r, add_special_tokens=False)["input_ids"]] for r in ex.responses]
             for ex in examples]
    assert all(len(t) == 1 + len(ex.prompt + r) for group, ex in zip(texts, examples)
               for t, r in zip(group, ex.responses))  # one token per character
    unique = sum(len({tuple(t[:k]) for t in group for k in range(1, len(t) + 1)}) for group in texts)
    assert result.naive_tokens == sum(len(t) for group in texts for t in group)
    assert result.unique_tokens == unique < result.naive_tokens
    assert (result.examples, result.texts, result.site, result.attention) == (5, 15, site, "tree")
    assert result.max_abs_diff < 1e-4 < result.max_abs_value
    assert result.speedup_vs_naive == pytest.approx(result.naive_seconds / result.engine_seconds)
    assert result.engine_tokens_per_s == pytest.approx(result.naive_tokens / result.engine_seconds)
    assert all(getattr(result, k) > 0 for k in KEYS)


def test_extraction_cli_json_last_line(tiny_llama, tmp_path: Path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    for split, seed in (("train", 1), ("test", 2)):
        (folder / f"{split}.json").write_text(json.dumps([ex.to_record() for ex in _examples(4, seed)]))
    result = CliRunner().invoke(_build(), ["bench", "extraction", "--model", str(tiny_llama.path), "--dist",
                                           str(folder), "-n", "3", "--template", "cra_yes", "--attention", "dense",
                                           "--json"])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(k in last for k in EXTRACTION_KEYS)
    assert last["examples"] == 3 and last["attention"] == "dense" and last["template"] == "cra_yes"
    assert last["max_abs_diff"] < 1e-4


def test_extraction_cli_rejects_bad_choices_before_loading(tmp_path: Path) -> None:
    for option, value, message in (("--site", "mlp", "--site must be one of residual, heads; got 'mlp'"),
                                   ("--template", "nope", "unknown text template 'nope'")):
        result = CliRunner().invoke(_build(), ["bench", "extraction", "--dist", str(tmp_path), option, value])
        assert result.exit_code == 2
        assert message in result.output
