"""One student per loss (`--loss xent --loss aux_conf`): both train on the same weak labels, share
the ceiling, and the xent student is the very job a single-loss run makes (one cache for both)."""

from __future__ import annotations

from pathlib import Path

from planted import planted

from genies.data.schema import Distribution
from genies.data.shift import Shift
from genies.pipeline.executor import LocalExecutor
from genies.weak_to_strong import W2SConfig, load_examples, load_results, w2s

LORA = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0, "learning_rate": 3e-3, "steps": 2, "batch_size": 4}}


def _run(tmp_path: Path, lm, name: str, losses: tuple[str, ...]):
    data = {"src": Distribution.from_examples("src", planted(16, 1), planted(6, 2)),
            "tgt": Distribution.from_examples("tgt", planted(4, 3), planted(6, 4))}
    config = W2SConfig(out=tmp_path / name, weak_method="tfidf", method="lora", losses=losses, max_train=16,
                       max_eval=6, shifts=(Shift("src", "tgt", "tgt", "test", "test"),), hparams=LORA,
                       cache_dir=tmp_path / "jobs")
    executor = LocalExecutor(plain=True)
    return w2s(config, weak_lm=lm, strong_lm=lm, distributions=data, executor=executor), executor


def test_two_losses_share_weak_labels_and_ceiling_and_the_xent_student_is_cached(tmp_path, tiny_llama, capsys) -> None:
    both, _ = _run(tmp_path, tiny_llama, "both", ("xent", "aux_conf"))
    (src,) = both.sources
    assert [s.loss for s in src.students] == ["xent", "aux_conf"] and both.run.losses == ("xent", "aux_conf")
    (tgt,) = both.targets
    assert [s.loss for s in tgt.students] == ["xent", "aux_conf"] and tgt.ceiling is not None
    assert set(both.run.hyperparameters) == {"weak", "ceiling", "student xent", "student aux_conf", "baseline",
                                             "target-tuned lora"}  # DE's references
    assert tgt.students[0].de is not None and tgt.ceiling_de is not None
    assert both.run.hyperparameters["student aux_conf"]["loss"] == "aux_conf"
    assert load_results(tmp_path / "both") == both
    (examples,) = load_examples(tmp_path / "both")
    assert examples.half_b == 8 and all([c.loss for c in e.students] == ["xent", "aux_conf"]
                                        for e in examples.wrong_weak_labels)
    capsys.readouterr()
    single, _ = _run(tmp_path, tiny_llama, "xent", ("xent",))
    log = capsys.readouterr().out
    assert " done " not in log  # every job of the xent-only run was a job of the two-loss run
    assert single.sources[0].students == (src.students[0],)
    assert single.sources[0].weak == src.weak and single.sources[0].ceiling == src.ceiling


def test_the_command_takes_loss_twice_and_refuses_aux_conf_for_a_probe(tmp_path) -> None:
    from typer.testing import CliRunner

    from genies.cli import _build

    args = ["w2s", "--weak-method", "tfidf", "--method", "tfidf", "--loss", "xent", "--loss", "aux_conf", "--shifts",
            "synthetic", "--out", str(tmp_path / "run")]
    refused = CliRunner().invoke(_build(), args)
    assert refused.exit_code == 2 and "--loss aux_conf needs a reward-model student" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
