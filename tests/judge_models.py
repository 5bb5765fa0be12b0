"""Tiny saved checkpoints for the external-judge tests: random reward models of several
architectures, and models whose behaviour is planted weight by weight so their answers are known."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from genies.data.schema import Example
from genies.models.testing import TINY_CONFIGS, byte_tokenizer, tiny_model

# A chat template for the byte tokenizer: the user turn opens with BOS, the assistant's closes with
# EOS, and the generation prompt ends in ":" (a one-byte token, so "A" and "B" are single tokens).
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'user' %}<|bos|>{{ m['content'] }}"
                 "{% else %}{{ m['content'] }}<|eos|>{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<|bos|>answer:{% endif %}")


def _tokenizer(chat: bool):
    tokenizer = byte_tokenizer()
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def reward_model(folder: Path, arch: str = "llama", *, num_labels: int = 1, layers: int = 2, seed: int = 0,
                 chat: bool = True) -> Path:
    """A random `arch` sequence-classification model with `num_labels` outputs, saved as safetensors."""
    tokenizer = _tokenizer(chat)
    spec = dict(TINY_CONFIGS[arch])
    config = AutoConfig.for_model(spec.pop("model_type"), vocab_size=len(tokenizer), num_hidden_layers=layers,
                                  max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                  num_labels=num_labels, tie_word_embeddings=False, **spec)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    if num_labels == 1:  # a head of the scale a trained one has, so rewards differ visibly
        torch.nn.init.normal_(model.score.weight, std=1.0)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def longer_is_better_rm(folder: Path) -> Path:
    """A 1-layer Llama reward model whose reward grows with the number of tokens it reads.

    Planted: every embedding is zero but EOS (e_0) and BOS (e_1); queries and keys are zero, so
    attention is uniform over the n tokens of the input; the value path carries only BOS's e_1 into
    dimension 1; the MLP adds nothing. The EOS position (where the reward is read) thus holds
    e_0 + (sqrt(32) / n) e_1, and the head reads -(dimension 1) after the final RMSNorm:
    -32 / sqrt(n^2 + 32), which rises with n. With the chat template (BOS + prompt + response +
    EOS) and a byte tokenizer, the longer response (in bytes, characters for ASCII) wins."""
    reward_model(folder, "llama", layers=1)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    tok = byte_tokenizer()
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model.model.embed_tokens.weight[tok.eos_token_id, 0] = 1.0
        model.model.embed_tokens.weight[tok.bos_token_id, 1] = 1.0
        layer = model.model.layers[0]
        layer.input_layernorm.weight.fill_(1.0)
        layer.post_attention_layernorm.weight.fill_(1.0)
        layer.self_attn.v_proj.weight[0, 1] = 1.0
        layer.self_attn.o_proj.weight[1, 0] = 1.0
        model.model.norm.weight.fill_(1.0)
        model.score.weight[0, 1] = -1.0
    model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def causal_lm(folder: Path, arch: str = "llama", *, seed: int = 0, chat: bool = True) -> Path:
    """A random 2-layer `arch` causal LM (genies.models.testing) saved with the chat template."""
    lm = tiny_model(Path(folder).with_name(Path(folder).name + "-base"), arch, seed=seed)
    lm.model.save_pretrained(folder, safe_serialization=True)
    _tokenizer(chat).save_pretrained(folder)
    return Path(folder)


def uniform_lm(folder: Path) -> Path:
    """A causal LM whose LM head is zero: every next token has probability 1/V, so log P(response
    + EOS | prompt) = -(tokens) log V, whatever the text."""
    lm = tiny_model(Path(folder).with_name(Path(folder).name + "-base"), "llama", seed=1)
    with torch.no_grad():
        lm.model.lm_head.weight.zero_()
    lm.model.save_pretrained(folder, safe_serialization=True)
    _tokenizer(True).save_pretrained(folder)
    return Path(folder)


def constant_answer_lm(folder: Path, logit_a: float) -> Path:
    """A causal LM whose next-token logits depend on the last token only (every layer's output
    projections are zero, so the residual stream is the last token's embedding), planted so that
    after the chat template's generation prompt (ending in ":") the answer "A" has logit
    `logit_a` and "B" has 0: P(A) = sigmoid(logit_a) for every question, a pure position bias."""
    lm = tiny_model(Path(folder).with_name(Path(folder).name + "-base"), "llama", seed=2)
    tok = byte_tokenizer()
    colon, a, b = (tok(t, add_special_tokens=False)["input_ids"][0] for t in (":", "A", "B"))
    model = lm.model
    hidden = model.config.hidden_size
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[colon] = 0.0
        model.model.embed_tokens.weight[colon, 0] = 1.0  # RMSNorm: e_0 * sqrt(hidden)
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight[a] = 0.0
        model.lm_head.weight[b] = 0.0
        model.lm_head.weight[a, 0] = logit_a / hidden ** 0.5
    model.save_pretrained(folder, safe_serialization=True)
    _tokenizer(True).save_pretrained(folder)
    return Path(folder)


def ascii_examples(n: int, seed: int, responses: int = 2) -> list[Example]:
    """Prompts with `responses` ASCII responses of distinct lengths; the preferred one is random."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lengths = rng.sample(range(3, 30), responses)
        texts = tuple("".join(rng.choice("abcdefgh ") for _ in range(k)) for k in lengths)
        out.append(Example(f"Question {i}: {'x' * rng.randint(0, 20)}?\n", texts, rng.randrange(responses)))
    return out


def write_distribution(folder: Path, test: list[Example], train: list[Example] = ()) -> Path:
    """A distribution folder in the original GENIES layout (train.json, test.json)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, examples in (("train", train), ("test", test)):
        (folder / f"{split}.json").write_text(json.dumps([ex.to_record() for ex in examples]))
    return folder
