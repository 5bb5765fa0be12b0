"""Reward-model scoring over prefix trees with the frozen lower layers computed once per process.

Why: lora adapts only the top decoder layers (`last_layers`), so the layers below are the base
model's own, and the hidden states entering the first adapted layer depend only on the base
model and the tokens. A run scores a target's test split with the reward model trained on the
source and again with the one trained on the target (the DE reference): both compute the same
26 of 30 layers over the same prefix trees. `FrozenTreeScorer` splits the tree pass at the first
trainable layer and keeps the states below it in a process-wide memo (least recently used first
out, at most `MEMO_BYTES`), so the second scorer runs only the top layers.

Why the numbers do not move: a scorer that qualifies always takes the split pass, memo hit or
miss, and the split pass is checked once per model against the plain tree pass on probe trees
(it computes the same operations: for LLaMA-style decoders the rewards are bitwise equal, see
tests/test_frozen_tree.py). The memo's key is the content that determines the states: the
model's fingerprint, a digest of the frozen tensors themselves (small ones whole, large ones by a
strided sample) and of the decoder's configuration (rope theta and scaling, norms, heads), so two
different models sharing a name never meet; the first trainable layer, the compute dtype and
device, and the tree's tokens and shape. Batch sizes are part of the tree, so another
`batch_tokens` misses rather than mixing layouts. A model in training mode is never split (its
dropout would put noise into the shared states).
"""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from genies.interventions._external import PrefixTree
from genies.interventions._reward_packing import (
    LayerCache,
    _eval_mode,
    _probes,
    _tolerance,
    autocast,
    base_model,
    decoder_of,
    layer_input,
    layers_from,
    prefix_tree,
    tree_rewards,
    virtual_tokens,
)
from genies.models.tree_attention import TreeAttentionPlan, tree_attention

TreeInputs = tuple[torch.Tensor, torch.Tensor, TreeAttentionPlan, torch.Tensor]  # `PrefixTree.inputs`

MEMO_BYTES = 1 << 30  # frozen-layer states kept per process; make run's raised its peak RSS by about 0.15 GB
WEIGHT_SAMPLE_STRIDE = 1009  # every 1009th element of a large frozen tensor goes into the weights digest
WHOLE_TENSOR_ELEMENTS = 1 << 16  # tensors up to this size (norms, rotary frequencies) go in whole
# Configuration entries that say how a model is called, not what it computes: left out of the digest
# so that a flag set on one reward model (use_cache during training, say) does not cost the memo hits.
CALL_FLAGS = frozenset({"use_cache", "output_attentions", "output_hidden_states", "return_dict", "torchscript",
                        "_attn_implementation", "_attn_implementation_autoset", "_name_or_path",
                        "transformers_version", "id2label", "label2id", "num_labels", "problem_type"})


class _Memo:
    """States by key, least recently used evicted first once the total passes `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()
        self.hits = 0

    def get(self, key: bytes) -> torch.Tensor | None:
        with self.lock:
            states = self.entries.get(key)
            if states is not None:
                self.entries.move_to_end(key)
                self.hits += 1
            return states

    def put(self, key: bytes, states: torch.Tensor) -> None:
        size = states.numel() * states.element_size()
        if size > self.limit:
            return
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = states
            self.bytes += size
            while self.bytes > self.limit:
                _, old = self.entries.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.bytes = 0
            self.hits = 0


MEMO = _Memo(MEMO_BYTES)

# model -> {(compute dtype, device): (first trainable layer, memo key of its frozen layers), or None where the
# split pass does not apply}. Weak keys so models can be freed: the values must not refer to the model.
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _frozen_weights_digest(model: nn.Module, first: int) -> bytes:
    """A digest of the embeddings, the rotary embedding (its buffers and scaling), every layer
    below `first` (small tensors whole, large ones by a strided sample) and the decoder's
    configuration: what the memoised states are a function of, besides the tokens."""
    decoder = decoder_of(model)
    digest = hashlib.blake2b(digest_size=16)
    config = {k: v for k, v in decoder.config.to_dict().items() if k not in CALL_FLAGS}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    rotary = getattr(decoder, "rotary_emb", None)
    digest.update(repr(getattr(rotary, "attention_scaling", None)).encode())
    modules = [decoder.get_input_embeddings(), *([rotary] if isinstance(rotary, nn.Module) else []),
               *decoder.layers[:first]]
    with torch.no_grad():
        for module in modules:
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                flat = tensor.detach().reshape(-1)
                sample = flat if flat.numel() <= WHOLE_TENSOR_ELEMENTS else flat[::WEIGHT_SAMPLE_STRIDE]
                digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                digest.update(sample.float().cpu().numpy().tobytes())
    return digest.digest()


def _tree_digest(tree: PrefixTree) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for values in (tree.tokens, tree.parent, [i for run in tree.runs for i in run]):
        digest.update(np.asarray(values, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.digest()


class FrozenTreeScorer:
    """The tree pass of one reward model, split at its first trainable layer (see the module
    docstring). Build it with `of`, which returns None where the split does not apply."""

    def __init__(self, model: nn.Module, head: str, first: int, model_key: bytes, device: torch.device,
                 compute_dtype: torch.dtype) -> None:
        self.model, self.head, self.first = model, head, first
        self.decoder = decoder_of(model)
        self.model_key, self.device, self.compute_dtype = model_key, device, compute_dtype

    @classmethod
    def of(cls, model: nn.Module, head: str, fingerprint: str, device: torch.device,
           compute_dtype: torch.dtype) -> FrozenTreeScorer | None:
        """The split scorer of `model` when it is in eval mode, its lower layers are frozen (no
        virtual tokens, a first trainable layer above the embeddings) and the split pass equals
        the plain tree pass on probe trees; None otherwise. Decided once per model, dtype and
        device."""
        if model.training:
            return None
        device = torch.device(device)
        decisions = _SPLITS.setdefault(model, {})
        if (compute_dtype, device) not in decisions:
            split = None
            first = LayerCache.first_trainable_layer(model) if virtual_tokens(model) == 0 else None
            if first is not None:
                key = b"|".join([fingerprint.encode(), _frozen_weights_digest(model, first), str(first).encode(),
                                 str(compute_dtype).encode(), str(device).encode()])
                split = (first, hashlib.blake2b(key, digest_size=16).digest())
                if not cls(model, head, *split, device, compute_dtype)._matches_plain():
                    split = None
            decisions[(compute_dtype, device)] = split
        split = decisions[(compute_dtype, device)]
        return None if split is None else cls(model, head, *split, device, compute_dtype)

    def _matches_plain(self) -> bool:
        probes = prefix_tree(_probes(self.model))
        with torch.no_grad(), _eval_mode(self.model):
            plain = tree_rewards(self.model, self.head, probes, self.device, self.compute_dtype)
            try:
                inputs = probes.inputs(self.device, self.compute_dtype)
                split = self._top(self._bottom(inputs), inputs)
            except (TypeError, ValueError, RuntimeError, IndexError, KeyError):
                return False
        return bool(torch.allclose(split, plain, rtol=0, atol=_tolerance(self.compute_dtype, plain)))

    def rewards(self, tree: PrefixTree) -> torch.Tensor:
        """`tree_rewards` of the tree, the frozen layers' states taken from the memo when this
        process computed them before."""
        inputs = tree.inputs(self.device, self.compute_dtype)
        key = self.model_key + _tree_digest(tree)
        states = MEMO.get(key)
        if states is None:
            states = self._bottom(inputs)
            MEMO.put(key, states)
        return self._top(states, inputs)

    def _bottom(self, inputs: TreeInputs) -> torch.Tensor:
        """The hidden states entering the first trainable layer [1, nodes, hidden]."""
        ids, positions, plan, _ = inputs
        with tree_attention(base_model(self.model)), autocast(self.device, self.compute_dtype):
            return layer_input(self.decoder, self.first, lambda: self.decoder(
                input_ids=ids, position_ids=positions, tree_plan=plan, use_cache=False))

    def _top(self, states: torch.Tensor, inputs: TreeInputs) -> torch.Tensor:
        """The rewards from the top layers, the final norm and the head, starting from `states`."""
        _, positions, plan, ends = inputs
        with layers_from(self.decoder, self.first), tree_attention(base_model(self.model)), \
                autocast(self.device, self.compute_dtype):
            hidden = self.decoder(inputs_embeds=states, position_ids=positions, tree_plan=plan,
                                  use_cache=False).last_hidden_state
            return getattr(base_model(self.model), self.head)(hidden[0, ends.to(hidden.device)])[..., 0].float()
