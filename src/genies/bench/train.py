"""Reward-model training benchmark: the training pass a fit takes (each prompt's forward and
backward shared by the two responses of its pair, the frozen lower layers computed once) against
two separate sequences per pair, the same steps on the same pairs, side by side in one process.

Both sides are `RewardModelIntervention.train` with the same hyperparameters and seed; only the
pass differs (`forward="auto"` against `"unpacked"`), so the trained tensors agree to float
rounding (`max_abs_diff`). LoRA's dropout is set to 0 for both: its masks are drawn per forward
pass, so with dropout the two sides would train on different noise. Distributions run one at a
time, the two sides alternating which goes first.

`fraction_of_limit` is the FLOPs a side computes over its seconds, against the matmul FLOP/s
sampled next to each timed run (`MatmulProbe`). FLOPs are counted per token from N_l, the weights
in matrices of decoder layer l (`matmul_parameters`; embeddings and the one-output head left out):

    forward            2 x sum_l N_l
    backward           2 x sum_{l >= f} N_l     gradients through the activations, down to the
                                                lowest layer f with a trained tensor (0 when the
                                                embeddings or virtual tokens train)
                     + 2 x T                    gradients of the trained matrices T (LoRA's A and B;
                                                every matrix for full_fine_tune)

i.e. 4N per token for LoRA on every layer, 6N for full fine-tuning, 2N + 2N_top for LoRA on the
top layers only. Tokens are what each side runs: two sequences per pair (unpacked), one row per
pair (packed), and with the frozen-layer cache the layers below f once per row for the whole fit
and only the layers from f up at every step. Attention-score FLOPs are not counted (as in
`genies bench scoring`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from genies.bench.machine import MatmulProbe, describe_machine, peak_rss_mib
from genies.bench.rm import decoder_layers, matmul_parameters
from genies.data.schema import Distribution
from genies.interventions._reward_model import RewardModelFit, RewardModelIntervention, encode, step_batches
from genies.interventions._reward_packing import LayerCache, PackedRow
from genies.interventions.context import FitContext
from genies.models.base import LoadedModel


@dataclass
class TrainBenchResult:
    model: str
    method: str  # the method and its hyperparameters
    distributions: list[str]
    pairs: int  # training pairs over all distributions
    steps: int  # optimizer steps per distribution
    forward: str  # the fit's own pass: "layer-cache", "packed" ("unpacked": no faster pass matched)
    matmul_parameters: int  # N: the decoder layers' weight matrices
    first_trained_layer: int  # f: the backward pass goes down to this layer
    trained_matmul_parameters: int  # T: trained weights in matrices
    new_seconds: float
    naive_seconds: float
    speedup_vs_naive: float
    new_tflops: float  # FLOPs the fit's pass computed (formula in the module docstring), 1e12
    naive_tflops: float
    new_pair_tokens_per_s: float  # tokens of both sequences of every pair visited, per second
    naive_pair_tokens_per_s: float
    matmul_gflops: float
    fraction_of_limit: float  # the fit's pass: its FLOPs per second over the matmul FLOP/s
    naive_fraction_of_limit: float
    max_abs_diff: float  # largest |new - naive| over every trained tensor after the last step
    max_loss_diff: float  # largest |new - naive| step loss
    peak_rss_mib: float
    machine: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Shape:
    """What the FLOP count needs to know of the reward model."""

    layers: list[int]  # N_l
    first: int  # f
    trained: int  # T
    virtual: int  # virtual tokens prepended to every sequence (prompt tuning)

    @classmethod
    def of(cls, method: RewardModelIntervention, lm: LoadedModel) -> _Shape:
        model, _ = method.build(lm, 0)
        trained = sum(p.numel() for p in decoder_layers(model).parameters() if p.requires_grad and p.dim() == 2)
        return cls(matmul_parameters(model), LayerCache.first_trainable_layer(model) or 0, trained,
                   int(getattr(method, "num_virtual_tokens", 0)))

    def step_flops(self, tokens: int, with_bottom: bool = True) -> float:
        """Forward (all layers, or only from f up) and backward FLOPs of one pass over `tokens`."""
        top = sum(self.layers[self.first:])
        forward = sum(self.layers) if with_bottom else top
        return tokens * (2.0 * forward + 2.0 * top + 2.0 * self.trained)


def training_flops(shape: _Shape, forward: str, chosen: Sequence[list[int]], rejected: Sequence[list[int]],
                   steps: Sequence[list[int]]) -> tuple[float, int]:
    """(FLOPs, pair tokens) of a fit through `forward` visiting the pairs of `steps`."""
    pair_tokens = sum(len(chosen[i]) + len(rejected[i]) + 2 * shape.virtual for step in steps for i in step)
    if forward == "unpacked":
        return shape.step_flops(pair_tokens), pair_tokens
    rows = [len(PackedRow.pack([c, r]).tokens) for c, r in zip(chosen, rejected)]
    visited = sum(rows[i] for step in steps for i in step)
    if forward == "packed":
        return shape.step_flops(visited), pair_tokens
    bottom = 2.0 * sum(shape.layers[:shape.first]) * sum(rows)  # the cache, once per row
    return bottom + shape.step_flops(visited, with_bottom=False), pair_tokens


def _max_diff(a: RewardModelFit, b: RewardModelFit) -> float:
    return max(float((a.tensors[k].float() - b.tensors[k].float()).abs().max()) for k in a.tensors)


def run_train_bench(lm: LoadedModel, method: RewardModelIntervention, datasets: Sequence[tuple[str, Distribution]],
                    *, seed: int = 0, on_step: Callable[[str, str], None] | None = None) -> TrainBenchResult:
    """Train `method` on each (name, distribution)'s train split both ways and compare; the
    distributions should already be cut to the pairs wanted (`Distribution.limited`)."""
    if hasattr(method, "dropout"):
        method = dataclasses.replace(method, dropout=0.0)
    shape = _Shape.of(method, lm)
    probe = MatmulProbe(device=lm.device, dtype=lm.dtype)
    seconds = {"new": 0.0, "naive": 0.0}
    flops = {"new": 0.0, "naive": 0.0}
    pair_tokens = 0
    max_diff = max_loss = 0.0
    forward = ""
    pairs = 0
    for k, (name, dist) in enumerate(datasets):
        train = dist.train_only()
        fits: dict[str, RewardModelFit] = {}
        for side in (("new", "naive") if k % 2 == 0 else ("naive", "new")):
            if on_step:
                on_step(name, side)
            probe.sample()
            start = time.perf_counter()
            fits[side] = method.train(lm, train, FitContext(seed=seed), forward="auto" if side == "new" else "unpacked")
            seconds[side] += time.perf_counter() - start
        forward = fits["new"].forward
        found = train.train_pairs(seed)
        pairs += len(found)
        chosen = [encode(lm, p.prompt, p.preferred, method.max_length) for p in found]
        rejected = [encode(lm, p.prompt, p.dispreferred, method.max_length) for p in found]
        steps = list(step_batches(len(found), method.batch_size, method.steps, seed))
        for side in ("new", "naive"):
            count, tokens = training_flops(shape, fits[side].forward, chosen, rejected, steps)
            flops[side] += count
        pair_tokens += tokens
        max_diff = max(max_diff, _max_diff(fits["new"], fits["naive"]))
        max_loss = max(max_loss, max(abs(a - b) for a, b in zip(fits["new"].train_loss, fits["naive"].train_loss)))
    probe.sample()
    rate = probe.flops_per_s
    return TrainBenchResult(
        model=lm.name, method=f"{method.name} {method.key_hparams()}", distributions=[name for name, _ in datasets],
        pairs=pairs, steps=method.steps, forward=forward, matmul_parameters=sum(shape.layers),
        first_trained_layer=shape.first, trained_matmul_parameters=shape.trained,
        new_seconds=seconds["new"], naive_seconds=seconds["naive"], speedup_vs_naive=seconds["naive"] / seconds["new"],
        new_tflops=flops["new"] / 1e12, naive_tflops=flops["naive"] / 1e12,
        new_pair_tokens_per_s=pair_tokens / seconds["new"], naive_pair_tokens_per_s=pair_tokens / seconds["naive"],
        matmul_gflops=rate / 1e9, fraction_of_limit=flops["new"] / seconds["new"] / rate,
        naive_fraction_of_limit=flops["naive"] / seconds["naive"] / rate, max_abs_diff=max_diff,
        max_loss_diff=max_loss, peak_rss_mib=peak_rss_mib(), machine=describe_machine())
