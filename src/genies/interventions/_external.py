"""What the external judges (`rm:`, `dpo:`, `judge:`) share: naming, resolving and loading a
model genies did not train, once per process, and the base class that makes such a model an
intervention that learns nothing.

An external judge is an intervention of the `external` family with `needs_training_data =
False`: the pipeline gives it one fit job with no data, and that fit only records which
checkpoints it judges with. It never needs the run's own model (`uses_run_model = False`, which
the executor reads to skip loading it; see docs/judges.md), and its `code_version` carries each
checkpoint's fingerprint and the precision it runs at, so a retrained or re-saved checkpoint
reruns its jobs while a moved folder does not (the folder is an execution setting, as
`legacy:`'s is).

Models load through the same rules as the run's model (`genies.models.loading`): no code from a
checkpoint without `trust_remote_code`, safetensors only unless `allow_pickle`, one line naming
what was tried when a name resolves to nothing. A model of the wrong kind for its judge (a
causal LM given to `rm:`, a classifier given to `dpo:`) is one line saying what was expected.

Loaded models are cached per process (the last `MAX_LOADED`: a DPO pair is two), so `genies
judge` over 66 distributions or a run's many prediction jobs load each checkpoint once; a judge
that names the run's own model (`judge:default` in a run of `default`) reuses the run's copy
when the pipeline hands it one at the same precision.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from genies.data.schema import Distribution
from genies.errors import ConfigError
from genies.interventions.base import Intervention
from genies.interventions.context import FitContext
from genies.interventions.hparams import hparam
from genies.models.placement import DTYPES, QUANTIZATIONS, Placement

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from genies.models.base import LoadedModel
    from genies.models.tree_attention import TreeAttentionPlan

CPU_BATCH_TOKENS = 4096
GPU_BATCH_TOKENS = 32768
MAX_LOADED = 2  # models kept loaded per process: a DPO policy and its reference
TEMPLATES = ("auto", "chat", "raw")
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
CLASSIFIER_SUFFIX = "ForSequenceClassification"

T = TypeVar("T")


@dataclass(frozen=True)
class ExternalModel:
    """A checkpoint a judge uses: the name as given (`default`, a folder, a cached hub id), the
    folder it resolves to, its fingerprint (`genies.models.fingerprint`) and its config.json."""

    spec: str
    folder: Path
    fingerprint: str
    config: Mapping[str, Any] = field(compare=False, hash=False, repr=False)

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(self.config.get("architectures") or ())

    @property
    def is_classifier(self) -> bool:
        return any(a.endswith(CLASSIFIER_SUFFIX) for a in self.architectures)

    @property
    def is_causal(self) -> bool:
        return any(a.endswith(CAUSAL_SUFFIXES) for a in self.architectures)

    def describe(self) -> str:
        """What the checkpoint is, for messages: its architecture or model type."""
        return ", ".join(self.architectures) or f"model type {self.config.get('model_type')!r}"


def absolute_spec(name: str) -> str:
    """A local path made absolute (so a Ray worker or another directory finds the same folder);
    `default` and hub ids as they are."""
    path = Path(name).expanduser()
    return str(path.resolve()) if name != "default" and path.exists() else name


def short_name(name: str) -> str:
    """How a model appears in a judge's label: a folder's name, else the name itself."""
    path = Path(name)
    return path.name if path.is_absolute() else name


def _files_signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and modification time of every file of the folder: a checkpoint saved again in
    place changes it, so a cached fingerprint is never served for other weights."""
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file())


_FINGERPRINTS: dict[tuple[Any, ...], tuple[Path, str]] = {}


def resolve(name: str, *, trust_remote_code: bool, allow_pickle: bool) -> ExternalModel:
    """The checkpoint `name` names, fingerprinted without loading any weight. The loading rules
    apply here already: a checkpoint needing its own code without `trust_remote_code`, or holding
    only pickled weights without `allow_pickle`, is one line (`ModelNotFoundError`)."""
    from genies.models.loading import model_fingerprint, resolve_model_folder

    folder = resolve_model_folder(name, trust_remote_code=trust_remote_code)
    key = (str(folder), _files_signature(folder), trust_remote_code, allow_pickle)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = model_fingerprint(name, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    folder, fingerprint = _FINGERPRINTS[key]
    return ExternalModel(name, folder, fingerprint, json.loads((folder / "config.json").read_text()))


_LOADED: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def cached_load(key: tuple[Any, ...], build: Callable[[], T]) -> T:
    """`build()` once per key in this process, keeping the last MAX_LOADED results."""
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    while len(_LOADED) >= MAX_LOADED:
        _LOADED.popitem(last=False)
    value = build()
    _LOADED[key] = value
    return value


def clear_loaded() -> None:
    """Forget every cached model (tests; a long session that judged large models)."""
    _LOADED.clear()


def check_causal(model: ExternalModel, method: str) -> None:
    """Refuse, in one line, a sequence-classification checkpoint where a causal LM is needed."""
    if model.is_classifier:
        raise ConfigError(f"{method}: {model.spec} is a sequence-classification model ({model.describe()}); "
                          f"{method}: expects a causal language model (judge a reward model with rm:{model.spec})")


def load_causal_lm(model: ExternalModel, placement: Placement, *, method: str, trust_remote_code: bool,
                   allow_pickle: bool, run_lm: LoadedModel | None = None) -> LoadedModel:
    """`model` as a causal LM for `method` (dpo, judge). A sequence-classification checkpoint is
    refused in one line; the run's own model is reused when it is the same checkpoint at the same
    precision (`run_lm`, what the pipeline hands a method)."""
    check_causal(model, method)
    if (run_lm is not None and run_lm.fingerprint == model.fingerprint
            and run_lm.precision_key() == placement.precision_key()):
        return run_lm
    from genies.models.loading import load_folder

    def build() -> LoadedModel:
        placement.check()
        return load_folder(model.folder, name=model.spec, trust_remote_code=trust_remote_code,
                           allow_pickle=allow_pickle, placement=placement)

    return cached_load(("causal", model.folder, model.fingerprint, placement, trust_remote_code), build)


def template_kind(template: str, tokenizer: PreTrainedTokenizerBase, method: str, spec: str) -> str:
    """"chat" or "raw": `auto` is chat when the tokenizer has a chat template; asking for chat
    without one is one line."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "chat" and not has_chat:
        raise ConfigError(f"{method}.template=chat: the tokenizer of {spec} has no chat template; "
                          f"use --set {method}.template=raw (plain text)")
    if template == "auto":
        return "chat" if has_chat else "raw"
    return template


def chat_text(tokenizer: PreTrainedTokenizerBase, user: str, assistant: str | None = None) -> str:
    """The chat template's text of one user turn, followed by the assistant's turn when given, or
    by the generation prompt (the text after which the assistant speaks) when not."""
    messages = [{"role": "user", "content": user}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": assistant})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=assistant is None)


def scatter_per_query(out: list[np.ndarray], batch: Sequence[int], values: torch.Tensor,
                      per_query: Sequence[Sequence[object]]) -> None:
    """Split a batch's stacked values (one row per sequence, the batch's queries in order) into
    `out[i]`, one array of len(per_query[i]) rows per query i of the batch, as float64."""
    cuts = np.cumsum([len(per_query[i]) for i in batch])[:-1]
    for i, chunk in zip(batch, np.split(values.detach().cpu().numpy().astype(np.float64), cuts)):
        out[i] = chunk


def token_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped longest first so each group's tokens stay within `budget` (at least one
    item per group): similar lengths share a batch, so little of it is padding."""
    batches: list[list[int]] = []
    total = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if not batches or total + lengths[i] > budget:
            batches.append([])
            total = 0
        batches[-1].append(i)
        total += lengths[i]
    return batches


@dataclass
class PrefixTree:
    """Token sequences merged into one prefix tree: every distinct prefix is one node, so a chat
    template's header, a prompt shared by its responses (and by the judge's presentations) and a
    preamble shared by several prompts are computed once. Node order is creation order, each
    walk's new nodes form one chain (`runs`), a node's position id is its depth: with the
    segment-wise attention of `genies.models.tree_attention` every sequence is computed exactly
    as if it were alone, unpadded. `ends[k]` is the node of sequence k's last token."""

    tokens: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    runs: list[tuple[int, int]] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    children: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    def cost(self, sequences: Sequence[Sequence[int]]) -> int:
        """How many nodes adding `sequences` would create (nothing is added)."""
        planned: dict[tuple[int, int], int] = {}  # nodes the earlier sequences would create, by made-up ids
        for seq in sequences:
            node = -1
            for tok in seq:
                child = self.children.get((node, tok), planned.get((node, tok)))
                if child is None:
                    child = planned[(node, tok)] = -2 - len(planned)
                node = child
        return len(planned)

    def add(self, seq: Sequence[int]) -> None:
        node, first_new = -1, len(self.tokens)
        for tok in seq:
            child = self.children.get((node, tok))
            if child is None:
                child = self.children[(node, tok)] = len(self.tokens)
                self.tokens.append(tok)
                self.parent.append(node)
                self.depth.append(self.depth[node] + 1 if node >= 0 else 0)
            node = child
        if len(self.tokens) > first_new:
            self.runs.append((first_new, len(self.tokens)))
        self.ends.append(node)

    def inputs(self, device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor, TreeAttentionPlan, torch.Tensor]:
        """Token ids and position ids [1, nodes], the attention plan, and the end nodes."""
        from genies.models.tree_attention import plan_segments

        return (torch.tensor([self.tokens], device=device), torch.tensor([self.depth], device=device),
                plan_segments(self.parent, self.runs, dtype=dtype, device=device),
                torch.tensor(self.ends, device=device))


def tree_batches(per_query: Sequence[Sequence[Sequence[int]]], budget: int) -> list[tuple[list[int], PrefixTree]]:
    """Queries grouped into prefix trees of at most `budget` nodes (a query larger than that
    alone), in the order of their first sequence's tokens so that shared preambles meet."""
    order = sorted((i for i in range(len(per_query)) if per_query[i]), key=lambda i: list(per_query[i][0]))
    batches: list[tuple[list[int], PrefixTree]] = []
    for i in order:
        if not batches or len(batches[-1][1].tokens) + batches[-1][1].cost(per_query[i]) > budget:
            batches.append(([], PrefixTree()))
        batches[-1][0].append(i)
        for seq in per_query[i]:
            batches[-1][1].add(seq)
    return batches


def tree_hidden(model: nn.Module, decoder: nn.Module, tree: PrefixTree, device: torch.device,
                dtype: torch.dtype) -> torch.Tensor:
    """The decoder's last hidden state at each sequence's last token [sequences, hidden], from one
    forward pass over the tree with segment-wise attention."""
    from genies.models.tree_attention import tree_attention

    ids, positions, plan, ends = tree.inputs(device, dtype)
    with tree_attention(model):
        hidden = decoder(input_ids=ids, position_ids=positions, tree_plan=plan, use_cache=False).last_hidden_state
    return hidden[0, ends.to(hidden.device)]


@dataclass(frozen=True)
class ExternalFit:
    """What fitting an external judge records (it learns nothing): the checkpoints it judges
    with, by name and fingerprint, so a state says which weights its predictions came from."""

    models: tuple[str, ...]
    fingerprints: tuple[str, ...]


@dataclass
class ExternalJudge(Intervention[ExternalFit]):
    """Base of the judges that score with a model genies did not train. Subclasses name their
    checkpoints (`model_specs`) and build the scorer; fitting, cache keys and placement are here."""

    device: str = hparam("auto", "where the judge's model runs: auto (the GPU when there is one), cpu, cuda, "
                                 "cuda:N", execution=True)
    dtype: str = hparam("auto", "the judge's dtype: auto (bfloat16 on a GPU, float32 on CPU), float32, bfloat16, "
                                "float16", choices=tuple(DTYPES))
    quantize: str = hparam("none", "load the judge's model quantized: none, 8bit or 4bit (bitsandbytes)",
                           choices=QUANTIZATIONS)
    trust_remote_code: bool = hparam(False, "run code shipped with the checkpoint (only for checkpoints you trust)",
                                     execution=True)
    allow_pickle: bool = hparam(False, "also read pickled (.bin) weights, which can run code when loaded",
                                execution=True)
    batch_tokens: int | None = hparam(None, f"tokens per forward pass (None = {CPU_BATCH_TOKENS} on CPU, "
                                            f"{GPU_BATCH_TOKENS} on a GPU)", execution=True)

    needs_training_data = False
    listed = False  # each means something only with a model: rm:MODEL, dpo:POLICY[,REF], judge:MODEL
    uses_run_model: ClassVar[bool] = False  # the executor need not load the run's model for it

    def __post_init__(self) -> None:
        super().__post_init__()
        Placement(device=self.device, dtype=self.dtype, quantize=self.quantize)  # a bad device: one line now
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ConfigError(f"{self.name}.batch_tokens must be >= 1 or None, got {self.batch_tokens}")
        for spec in self.model_specs():
            if not spec:
                raise ConfigError(f"{self.name}: no model given; name one as {self.usage}")

    # -- what differs between judges -------------------------------------------------------------
    usage: ClassVar[str] = ""  # the spec's form, for messages: rm:MODEL

    def model_specs(self) -> tuple[str, ...]:
        """The checkpoints this judge loads, as given (a local folder made absolute)."""
        raise NotImplementedError

    def check_model(self, model: ExternalModel) -> None:
        """Refuse, in one line, a checkpoint of the wrong kind (from its config, no weight read).
        Default: a causal LM (dpo:, judge:)."""
        check_causal(model, self.name)

    # -- shared ----------------------------------------------------------------------------------
    def resolved(self) -> tuple[ExternalModel, ...]:
        return tuple(resolve(spec, trust_remote_code=self.trust_remote_code, allow_pickle=self.allow_pickle)
                     for spec in self.model_specs())

    def check_placement(self, placement: Placement) -> None:
        """Before a run starts: the run's placement is not the judge's (it has its own settings),
        but its checkpoints must exist, load under the loading rules and be of the right kind."""
        for model in self.resolved():
            self.check_model(model)

    def placement(self) -> Placement:
        return Placement(device=self.device, dtype=self.dtype, quantize=self.quantize)

    def budget(self) -> int:
        """Tokens per forward pass: `batch_tokens`, else the device's default."""
        if self.batch_tokens is not None:
            return self.batch_tokens
        return GPU_BATCH_TOKENS if self.placement().torch_device.type == "cuda" else CPU_BATCH_TOKENS

    def code_version(self) -> str:
        """The version, each checkpoint's fingerprint and the precision it runs at (`auto` is
        bfloat16 on a GPU, float32 on CPU: not the same numbers): a changed checkpoint reruns,
        a moved folder does not."""
        precision = self.placement().precision_key()
        return "+".join([str(self.version), *(m.fingerprint for m in self.resolved()),
                         precision["dtype"], precision["quantize"]])

    @property
    def label(self) -> str:
        return f"{self.name}:{','.join(short_name(s) for s in self.model_specs() if s)}"

    def fit(self, lm: LoadedModel | None, train: Distribution, ctx: FitContext) -> ExternalFit:
        """Nothing to learn and no model to load: record the checkpoints, by fingerprint."""
        models = self.resolved()
        return ExternalFit(tuple(m.spec for m in models), tuple(m.fingerprint for m in models))
