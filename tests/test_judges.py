"""External judges (rm:, dpo:, judge:) on tiny checkpoints whose answers are known: planted
rewards, planted log-probabilities and planted answer logits; invariance of the fast paths; the
one-line refusals; fitting loads nothing and keys follow the checkpoint."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from judge_models import (  # tests/judge_models.py
    ascii_examples,
    causal_lm,
    constant_answer_lm,
    longer_is_better_rm,
    reward_model,
    uniform_lm,
)

from genies import metrics
from genies.data.schema import Distribution, Example, Query, eval_pairs
from genies.data.shift import Shift
from genies.errors import ConfigError, GeniesError
from genies.interventions import FitContext, available, get_intervention, load_intervention
from genies.interventions import _external, _llm_judge
from genies.data.schema import NO_TRAINING_DATA
from genies.interventions._external import PrefixTree, resolve
from genies.interventions._rm_judge import choose_forward, load_reward_model, score_queries, unpacked_rewards
from genies.interventions.scores import pair_with_labels
from genies.models.placement import Placement

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = Placement(device="cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("judges")
    return {
        "longer": longer_is_better_rm(root / "longer-rm"),
        "rm-llama": reward_model(root / "rm-llama", "llama"),
        "rm-gpt2": reward_model(root / "rm-gpt2", "gpt2"),
        "llama": causal_lm(root / "llama"),
        "gpt2": causal_lm(root / "gpt2", "gpt2"),
        "uniform": uniform_lm(root / "uniform"),
    }


@pytest.fixture(autouse=True)
def _fresh_models() -> None:
    """Each test loads its models itself (the per-process cache would otherwise hide a load)."""
    _external.clear_loaded()


def _judge(spec: str, examples: list[Example], **overrides: object):
    """The method, its scores on `examples` and the labelled predictions."""
    method = load_intervention(spec, None, **overrides)
    ctx = FitContext()
    data = Distribution.from_examples("toy", [], examples)
    scores = method.scorer(None, method.fit(None, NO_TRAINING_DATA, ctx), ctx)(data.eval_set("test"))
    return method, scores, pair_with_labels(scores, data.test, "toy/test")


def _length_baselines(examples: list[Example]) -> metrics.LengthBaselines:
    return metrics.length_baselines([(p.preferred, p.dispreferred) for p in eval_pairs(examples)])


# -- rm: ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("responses", [2, 4])
def test_a_reward_model_planted_to_prefer_length_gets_the_prefer_longer_accuracy(models, responses) -> None:
    examples = ascii_examples(24, seed=responses, responses=responses)
    method, scores, pred = _judge(f"rm:{models['longer']}", examples)
    assert metrics.accuracy(pred.p_preferred) == _length_baselines(examples).longer
    assert scores.info == {"forward": "tree", "template": "chat"}
    for q, s in zip(examples, scores.response_scores):  # the reward rises with the length, as planted
        assert list(np.argsort(s)) == list(np.argsort([len(r) for r in q.responses]))
    assert method.label == "rm:longer-rm"


def test_a_reward_is_what_the_models_own_forward_pass_gives(models, tmp_path) -> None:
    """One sequence, no padding: `model(...).logits` is the model's definition of its reward,
    including a pad token equal to EOS (its pooling then skips the EOS; so does rm:)."""
    folder = shutil.copytree(models["rm-llama"], tmp_path / "pad-is-eos")
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = config["eos_token_id"]
    (folder / "config.json").write_text(json.dumps(config))
    for path in (models["rm-llama"], folder):
        for template in ("chat", "raw"):
            rm = load_reward_model(resolve(str(path), trust_remote_code=False, allow_pickle=False), CPU,
                                   template=template, trust_remote_code=False, allow_pickle=False)
            q = Query("Say hi. ", ("hi there", "no"))
            got, _ = score_queries(rm, [q], max_length=None, budget=4096)
            for response, reward in zip(q.responses, got[0]):
                text = (rm.tokenizer.apply_chat_template([{"role": "user", "content": q.prompt},
                                                          {"role": "assistant", "content": response}], tokenize=False)
                        if template == "chat" else q.prompt + response + "<|eos|>")
                ids = torch.tensor([rm.tokenizer(text, add_special_tokens=False)["input_ids"]])
                with torch.no_grad():
                    own = rm.model(input_ids=ids).logits[0, 0].item()
                assert reward == pytest.approx(own, abs=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # rotary and learned absolute positions
def test_rewards_do_not_depend_on_path_batch_size_or_padding_side(models, arch) -> None:
    rm = load_reward_model(resolve(str(models[f"rm-{arch}"]), trust_remote_code=False, allow_pickle=False), CPU,
                           template="auto", trust_remote_code=False, allow_pickle=False)
    queries = [Query(e.prompt, e.responses) for e in ascii_examples(8, seed=3, responses=3)]
    queries.append(Query("twice: ", ("same", "same", "same!")))  # one response the prefix of another
    reference = np.concatenate(score_queries(rm, queries, max_length=None, budget=10_000, forward="unpacked")[0])
    assert np.ptp(reference) > 0.1  # rewards that differ, or the comparison says nothing
    for forward in ("tree", "packed", "unpacked"):
        for budget in (1, 40, 10_000):  # one query (or one sequence) per pass ... everything in one
            got = np.concatenate(score_queries(rm, queries, max_length=None, budget=budget, forward=forward)[0])
            np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5, err_msg=f"{forward}, {budget}")
    seqs = [rm.encode(q.prompt, r) for q in queries for r in q.responses]
    left = unpacked_rewards(rm, seqs, 10_000, padding_side="left").numpy()
    np.testing.assert_allclose(left, reference, rtol=0, atol=1e-5)
    assert choose_forward(rm, 4096) == "tree"  # the fast path is the one tested above


def test_openrlhf_reward_normalisation_is_applied(models, tmp_path) -> None:
    folder = shutil.copytree(models["rm-llama"], tmp_path / "normalised")
    examples = ascii_examples(4, seed=5)
    _, raw, _ = _judge(f"rm:{folder}", examples)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "normalize_reward": True, "mean": 0.5, "std": 2.0}))
    _external.clear_loaded()
    _, normalised, _ = _judge(f"rm:{folder}", examples)
    for a, b in zip(raw.response_scores, normalised.response_scores):
        np.testing.assert_allclose(b, (a - 0.5) / 2.0, rtol=0, atol=1e-12)


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_a_model_of_the_wrong_kind_is_refused_in_one_line(models, tmp_path) -> None:
    with pytest.raises(ConfigError) as err:
        load_intervention(f"rm:{models['llama']}").scorer(None, None, FitContext())
    assert "is a causal language model (LlamaForCausalLM)" in _one_line(err)
    assert "one output (num_labels=1)" in str(err.value) and f"judge:{models['llama']}" in str(err.value)

    two = reward_model(tmp_path / "two-labels", num_labels=2)
    with pytest.raises(ConfigError) as err:
        load_intervention(f"rm:{two}").scorer(None, None, FitContext())
    assert "is a classifier with 2 labels; rm: expects" in _one_line(err)

    headless = shutil.copytree(models["rm-llama"], tmp_path / "headless")
    from safetensors.torch import load_file, save_file

    weights = load_file(headless / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("score.")}, headless / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(ConfigError) as err:
        load_intervention(f"rm:{headless}").scorer(None, None, FitContext())
    assert "saves no classification head" in _one_line(err)

    for spec in (f"dpo:{models['rm-llama']}", f"judge:{models['rm-llama']}"):
        with pytest.raises(ConfigError) as err:
            load_intervention(spec).scorer(None, None, FitContext())
        assert "expects a causal language model" in _one_line(err)

    with pytest.raises(ConfigError) as err:
        load_intervention("rm")
    assert _one_line(err) == "rm: no model given; name one as rm:MODEL"


def test_the_loading_rules_hold_for_judges(models, tmp_path) -> None:
    """No code from a checkpoint without trust_remote_code, no pickle without allow_pickle."""
    remote = shutil.copytree(models["rm-llama"], tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "model_type": "my_rm",
                                                    "auto_map": {"AutoModel": "modeling.MyRM"}}))
    with pytest.raises(GeniesError) as err:
        load_intervention(f"rm:{remote}").code_version()
    assert "pass --trust-remote-code" in _one_line(err)

    pickled = shutil.copytree(models["rm-llama"], tmp_path / "pickled")
    from safetensors.torch import load_file

    torch.save(load_file(pickled / "model.safetensors"), pickled / "pytorch_model.bin")
    (pickled / "model.safetensors").unlink()
    with pytest.raises(GeniesError) as err:
        load_intervention(f"rm:{pickled}").code_version()
    assert "--allow-pickle" in _one_line(err)
    assert load_intervention(f"rm:{pickled}", allow_pickle=True).code_version()


# -- dpo: -----------------------------------------------------------------------------------------

def test_a_policy_that_is_its_own_reference_gives_one_half_everywhere(models) -> None:
    _, scores, pred = _judge(f"dpo:{models['llama']},{models['llama']}", ascii_examples(6, seed=7, responses=3))
    assert np.all(pred.p_preferred == 0.5)
    assert all(np.all(s == 0.0) for s in scores.response_scores)


def test_dpo_rewards_are_beta_times_the_log_ratio(models) -> None:
    """A uniform policy gives log pi = -(tokens) log V: reference-free, it prefers the shorter
    response (bytes = characters here); with a reference, r = beta (log pi - log pi_ref) with
    log pi_ref from the naive reference scorer."""
    from genies.models.loading import load_folder
    from genies.models.scoring import score_examples_naive

    examples = ascii_examples(10, seed=8, responses=3)
    _, scores, pred = _judge(f"dpo:{models['uniform']}", examples, beta=0.5)
    vocab = 259  # 256 bytes + BOS, EOS, PAD
    for ex, s in zip(examples, scores.response_scores):
        np.testing.assert_allclose(s, [-0.5 * (len(r) + 1) * math.log(vocab) for r in ex.responses], rtol=1e-5)
    assert metrics.accuracy(pred.p_preferred) == _length_baselines(examples).shorter

    _, scores, _ = _judge(f"dpo:{models['uniform']},{models['llama']}", examples, beta=0.5)
    ref = load_folder(models["llama"], device="cpu", dtype=torch.float32)
    chat = [Example(ref.tokenizer.apply_chat_template([{"role": "user", "content": e.prompt}], tokenize=False,
                                                      add_generation_prompt=True), e.responses, 0) for e in examples]
    for ex, s, naive in zip(examples, scores.response_scores, score_examples_naive(ref, chat)):
        expected = [0.5 * (-(len(r) + 1) * math.log(vocab) - lp) for r, lp in zip(ex.responses, naive.sum)]
        np.testing.assert_allclose(s, expected, rtol=0, atol=1e-4)


# -- judge: ---------------------------------------------------------------------------------------

def test_a_judge_that_always_answers_a_shows_its_position_bias_and_no_preference(tmp_path) -> None:
    folder = constant_answer_lm(tmp_path / "says-a", logit_a=1.5)
    _, scores, pred = _judge(f"judge:{folder}", ascii_examples(5, seed=9, responses=3))
    np.testing.assert_allclose(pred.p_preferred, 0.5, atol=1e-6)  # averaging both orders cancels it
    assert scores.info["position_bias"] == pytest.approx(1 / (1 + math.exp(-1.5)) - 0.5, abs=1e-4)
    assert scores.info["order_agreement"] == 0.0  # each order picks the response shown first
    assert scores.info["presentations"] == 5 * 6 and scores.info["forward"] == "tree"


def test_planted_answer_logits_give_the_planted_preference_and_a_measured_bias(models, monkeypatch) -> None:
    """Answer logits planted from the texts shown: l_A - l_B = (len(first) - len(second)) / 4 + 0.8.
    P(i beats j) is then the mean of the two orders' probabilities, and the bias is measured."""
    judge_text = _llm_judge.QUESTION

    def planted(judge, per_query, budget, advance=lambda n: None, forward="auto"):
        out = []
        for seqs in per_query:
            rows = []
            for ids in seqs:
                text = judge.lm.tokenizer.decode(ids)
                first = text.split("### Response A:\n")[1].split("\n\n### Response B:\n")[0]
                second = text.split("### Response B:\n")[1].split("\n\n" + judge_text.rsplit("\n\n", 1)[1])[0]
                rows.append([(len(first) - len(second)) / 4 + 0.8, 0.0])
            out.append(np.array(rows))
        return out, "planted"

    monkeypatch.setattr(_llm_judge, "answer_logits", planted)
    examples = ascii_examples(6, seed=10, responses=3)
    _, scores, pred = _judge(f"judge:{models['llama']}", examples)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    firsts = []
    for ex, matrix in zip(examples, scores.beats):
        lengths = [len(r) for r in ex.responses]
        for i in range(3):
            for j in range(3):
                if i != j:
                    d = (lengths[i] - lengths[j]) / 4
                    assert matrix[i, j] == pytest.approx((sig(d + 0.8) + 1 - sig(-d + 0.8)) / 2, abs=1e-12)
                    firsts.append(sig(d + 0.8))
    assert scores.info["position_bias"] == pytest.approx(np.mean(firsts) - 0.5, abs=1e-12)
    assert metrics.accuracy(pred.p_preferred) == _length_baselines(examples).longer


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_judge_logits_do_not_depend_on_path_or_batch_size(models, arch) -> None:
    lm = _external.load_causal_lm(resolve(str(models[arch]), trust_remote_code=False, allow_pickle=False), CPU,
                                  method="judge", trust_remote_code=False, allow_pickle=False)
    judge = _llm_judge.JudgeModel.of(lm, "auto")
    examples = ascii_examples(4, seed=11, responses=3)
    per_query = [[judge.encode(e.prompt, e.responses[a], e.responses[b]) for a, b in _llm_judge.presentations(3)]
                 for e in examples]
    reference = np.concatenate(_llm_judge.answer_logits(judge, per_query, 10_000, forward="plain")[0])
    for forward in ("tree", "packed", "plain"):
        for budget in (1, 300, 10_000):
            got = np.concatenate(_llm_judge.answer_logits(judge, per_query, budget, forward=forward)[0])
            np.testing.assert_allclose(got, reference, rtol=0, atol=1e-5, err_msg=f"{forward}, {budget}")
    assert _llm_judge.choose_forward(judge) == "tree"


def test_a_judge_needs_one_token_per_answer(models) -> None:
    with pytest.raises(ConfigError) as err:
        _judge(f"judge:{models['llama']}", ascii_examples(1, seed=0), template="raw")
    assert "spells the answer ' A' with 2 tokens" in _one_line(err)


# -- the contract ---------------------------------------------------------------------------------

def test_judges_are_unlisted_entry_point_plugins_named_by_spec(models) -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="genies.interventions")}
    for name in ("rm", "dpo", "judge"):
        cls = get_intervention(name)
        assert names[name].endswith(cls.__qualname__) and cls.family == "external"
        assert not cls.listed and not cls.needs_training_data and not cls.uses_run_model
        assert name not in available()
    dpo = load_intervention(f"dpo:{models['uniform']},{models['llama']}", beta=0.2)
    assert (dpo.policy, dpo.reference, dpo.label) == (str(models["uniform"]), str(models["llama"]), "dpo:uniform,llama")
    assert load_intervention(f"dpo:{models['uniform']}").reference == ""
    assert load_intervention("judge:default").label == "judge:default"


def test_fitting_loads_nothing_and_keys_follow_the_checkpoint(models, tmp_path, monkeypatch) -> None:
    folder = shutil.copytree(models["rm-llama"], tmp_path / "rm")
    method = load_intervention(f"rm:{folder}")
    version = method.code_version()

    def refuse(*args, **kwargs):
        raise AssertionError("fit loaded a model")

    monkeypatch.setattr("genies.models.loading.load_placed", refuse)
    fitted = method.fit(None, NO_TRAINING_DATA, FitContext())
    assert fitted.models == (str(folder),) and fitted.fingerprints[0] in version
    monkeypatch.undo()

    moved = folder.rename(tmp_path / "moved")
    assert load_intervention(f"rm:{moved}").code_version() == version  # where it lies is not what it is
    assert load_intervention(f"rm:{moved}", dtype="bfloat16").code_version() != version
    reward_model(moved, seed=1)  # retrained in place
    assert load_intervention(f"rm:{moved}").code_version() != version
    assert load_intervention(f"rm:{moved}", batch_tokens=7).key_hparams() == method.key_hparams()


def test_a_judge_is_fitted_once_for_every_shift(models) -> None:
    from genies.pipeline.plan import build_plan, configure_methods

    specs = [f"judge:{models['llama']}", "zero_shot"]
    shifts = [Shift("a", "b", "b", "skill", "extreme"), Shift("c", "d", "d", "skill", "extreme")]
    plan = build_plan(interventions=specs[:1], shifts=shifts, methods=configure_methods(specs, None), seed=0,
                      model_fingerprint="f", precision={}, data_hash=lambda n, s: n, target_tuned=())
    judged = [f for f in plan.fits.values() if f.method_name == "judge"]
    assert len(judged) == 1 and judged[0].source is None
    assert {p.distribution for p in plan.predicts_of(judged[0])} == {"a", "b", "c", "d"}


def test_prefix_tree_batches_keep_every_query_whole_and_within_budget() -> None:
    per_query = [[[1, 2, 3], [1, 2, 4]], [[1, 5], [1, 5, 6]], [[7, 8, 9, 10, 11]]]
    batches = _external.tree_batches(per_query, budget=6)
    assert sorted(i for batch, _ in batches for i in batch) == [0, 1, 2]
    for batch, tree in batches:
        assert len(tree.tokens) <= 6 or len(batch) == 1
        assert len(tree.ends) == sum(len(per_query[i]) for i in batch)
    tree = PrefixTree()
    for seq in per_query[0] + per_query[1]:
        tree.add(seq)
    assert tree.tokens == [1, 2, 3, 4, 5, 6] and tree.ends == [2, 3, 4, 5] and tree.depth == [0, 1, 2, 2, 1, 2]
