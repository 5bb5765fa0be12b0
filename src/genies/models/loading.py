"""Resolve a model name to a `LoadedModel`: hub id, local folder, `.gguf` file or `default`,
each optionally as `NAME:layers=K` (the first K decoder layers only: a genuinely smaller model
of the same family, the weak model of docs/w2s.md).

Every model ends up as a safetensors folder (`LoadedModel.path`) so that interventions can
reload it with another head. GGUF files are dequantized once by transformers and cached as
safetensors under `genies_home()/models/<name>-<hash>`; later loads read that folder (well under
5 s). Security defaults: `trust_remote_code` only when passed, safetensors only unless
`allow_pickle`. Every failure to resolve is one line naming what was tried and what is supported.

A `Placement` says how a folder is loaded (`load_placed`): its dtype, an 8-bit or 4-bit NF4
bitsandbytes quantization, and where the weights go (`placement.weight_placement`: one device,
or sharded over GPUs by accelerate). Reward models reload the folder through the same function,
so they get the base model's quantization and placement.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from genies._io import file_sha256, publish_folder
from genies.models.base import LoadedModel
from genies.models.catalog import MANIFEST, models_cache_dir
from genies.models.embedded import DEFAULT_MODEL_LABEL, ModelNotFoundError, default_gguf_path
from genies.models.fingerprint import fingerprint_folder
from genies.models.placement import Placement, WeightPlacement, weight_placement

log = logging.getLogger(__name__)

SUPPORTED_NAMES = ("`default`, a local model folder, a .gguf file, or a Hugging Face id already in the local HF cache "
                   "(any of them as NAME:layers=K for its first K decoder layers)")
_LAYERS = re.compile(r"^(?P<base>.+):layers=(?P<layers>\d+)$")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """fp32 on CPU (bf16 matmuls are slow there and less exact), bf16 on GPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def load_model(
    name: str = "default",
    *,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load `name` for scoring; see the module docstring for the names understood."""
    folder = resolve_model_folder(name, trust_remote_code=trust_remote_code)
    return load_folder(folder, name=name, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                       device=device, dtype=dtype)


def resolve_model_folder(name: str, *, trust_remote_code: bool = False) -> Path:
    """The safetensors-or-checkpoint folder for `name`, converting a GGUF file (or truncating a
    model to `:layers=K`) on first use."""
    truncated = _LAYERS.match(name)
    if truncated:
        base = resolve_model_folder(truncated["base"], trust_remote_code=trust_remote_code)
        return truncate_layers(base, int(truncated["layers"]), name=name, trust_remote_code=trust_remote_code)
    if name == "default":
        return convert_gguf(default_gguf_path(), DEFAULT_MODEL_LABEL, trust_remote_code=trust_remote_code)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"model {name!r}: GGUF file {path} does not exist; supported: {SUPPORTED_NAMES}")
        return convert_gguf(path, path.stem, trust_remote_code=trust_remote_code)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model {name!r}: folder {path} has no config.json; supported: {SUPPORTED_NAMES}")
        return path
    if name.startswith((".", "/", "~")):  # a path, not a hub id: no cache lookup, no download hint
        raise ModelNotFoundError(f"model {name!r}: no folder or file {path}; supported: {SUPPORTED_NAMES}")
    return _hub_cache_folder(name)


def _hub_cache_folder(name: str) -> Path:
    """A hub id found in the local Hugging Face cache (genies never downloads models itself)."""
    from huggingface_hub import snapshot_download

    tried = f"no local folder or .gguf file named {name!r}, and the local Hugging Face cache"
    if name.count("/") > 1 or not name.strip():
        raise ModelNotFoundError(f"model {name!r}: {tried} cannot hold it (not a hub id); supported: {SUPPORTED_NAMES}")
    try:
        folder = Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError, HFValidationError, ... all mean "not available"
        raise ModelNotFoundError(
            f"model {name!r}: {tried} has no snapshot of it ({type(err).__name__}); "
            f"supported: {SUPPORTED_NAMES} (download it with `huggingface-cli download {name}` where online)"
        ) from None
    if not (folder / "config.json").is_file():
        raise ModelNotFoundError(f"model {name!r}: the cached snapshot {folder} has no config.json")
    return folder


def convert_gguf(gguf: Path, label: str, *, trust_remote_code: bool = False) -> Path:
    """Dequantize `gguf` once into a cached safetensors folder and return that folder.

    The folder is built in a temporary sibling and renamed into place, so a crash or a
    concurrent conversion never leaves a half-written model that later loads would trust.
    """
    digest = file_sha256(gguf)
    target = models_cache_dir() / f"{label}-{digest[:12]}"
    if (target / MANIFEST).is_file():
        return target
    print(f"genies: converting {gguf.name} to safetensors once (about half a minute on 2 cores; later loads "
          f"take about a second): {target}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    # A folder without its manifest is not a finished conversion: it is replaced, not kept.
    with publish_folder(target, keep_existing=lambda folder: (folder / MANIFEST).is_file()) as tmp:
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                      trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                         trust_remote_code=trust_remote_code)
        except (ValueError, KeyError, NotImplementedError) as err:
            from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelNotFoundError(
                f"GGUF {gguf}: transformers could not dequantize it ({first_line}); supported GGUF "
                f"architectures: {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}"
            ) from None
        # transformers refuses to save a model it thinks is still quantized; the weights are plain
        # fp32 after dequantization, so drop the quantizer markers (see docs/models.md).
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        manifest = {"source": str(gguf), "source_sha256": digest, "label": label,
                    "fingerprint": fingerprint_folder(tmp), "convert_seconds": round(time.perf_counter() - start, 1)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        del model
    return target


def _decoder_layers(model: PreTrainedModel, n_layers: int) -> tuple[Any, str]:
    """The module holding the decoder layers of `model` and that attribute's name (`layers` for
    llama, qwen2, mistral, gemma and gpt_neox, `h` for gpt2)."""
    base = model.base_model
    for attr in ("layers", "h", "blocks"):
        layers = getattr(base, attr, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) == n_layers:
            return base, attr
    raise ModelNotFoundError(f"{type(model).__name__}: cannot find its {n_layers} decoder layers to keep the first "
                             "ones (supported: models whose base model holds them as layers, h or blocks)")


def truncate_layers(folder: Path, layers: int, *, name: str, trust_remote_code: bool = False) -> Path:
    """The first `layers` decoder layers of the model in `folder`, saved once as a cached
    safetensors folder (`<folder>-layers<K>-<fingerprint>`) and returned.

    Embeddings, final norm and head are kept, so the truncated model's hidden states up to layer
    K are the full model's (tests/test_model_loading.py checks it). Its fingerprint is computed from
    its own files, so it differs from the full model's and from every other K."""
    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    total = config.num_hidden_layers
    if not 1 <= layers <= total:
        raise ModelNotFoundError(f"model {name!r}: layers={layers}, but the model has {total} decoder layers "
                                 f"(keep 1 to {total})")
    source = folder_fingerprint(folder, _weight_files(name, folder, allow_pickle=False))
    target = models_cache_dir() / f"{folder.name}-layers{layers}-{source[:12]}"
    if (target / MANIFEST).is_file():
        return target
    with publish_folder(target, keep_existing=lambda done: (done / MANIFEST).is_file()) as tmp:
        model_cls = _model_class(name, json.loads((folder / "config.json").read_text()), trust_remote_code)
        with torch.no_grad():
            model = model_cls.from_pretrained(folder, dtype="auto", use_safetensors=True,  # as saved
                                              trust_remote_code=trust_remote_code)
        owner, attr = _decoder_layers(model, total)
        setattr(owner, attr, getattr(owner, attr)[:layers])
        model.config.num_hidden_layers = layers
        if isinstance(getattr(model.config, "layer_types", None), list):  # per-layer attention kinds
            model.config.layer_types = model.config.layer_types[:layers]
        model.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code).save_pretrained(tmp)
        manifest = {"source": str(folder), "source_fingerprint": source, "layers": layers, "of_layers": total,
                    "fingerprint": fingerprint_folder(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return target


def load_folder(
    folder: Path,
    *,
    name: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    placement: Placement | None = None,
) -> LoadedModel:
    """Load a saved model folder (config + weights + tokenizer) into a `LoadedModel`.

    `placement` (device, dtype, quantization) wins over the older `device` / `dtype` arguments."""
    folder = Path(folder)
    name = name or str(folder)
    config_data = json.loads((folder / "config.json").read_text())
    model_cls = _model_class(name, config_data, trust_remote_code)
    weight_files = _weight_files(name, folder, allow_pickle)
    if placement is None:
        device = device or default_device()
        dtype_name = str(dtype or default_dtype(device)).removeprefix("torch.")
        placement = Placement(device=str(device), dtype=dtype_name)
    placement.check()
    model = load_placed(model_cls, folder, placement, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                        config=AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code))
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    ensure_pad_token(tokenizer, model)
    return LoadedModel(name=name, model=model, tokenizer=tokenizer, path=folder,
                       fingerprint=folder_fingerprint(folder, weight_files), trust_remote_code=trust_remote_code,
                       placement=placement)


def quantization_config(placement: Placement) -> Any:
    """The bitsandbytes config of a quantized placement (None for none): 4-bit is NF4 with double
    quantization and the placement's dtype as compute dtype, QLoRA's setting; 8-bit is LLM.int8()."""
    if not placement.quantized:
        return None
    from transformers import BitsAndBytesConfig

    if placement.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=placement.torch_dtype)


def parameter_count(weight_files: list[Path]) -> int:
    """Parameters stored in `weight_files`, read from the safetensors headers (no weights are
    loaded); a pickled checkpoint has no header, so its size is taken as 16-bit weights (the usual
    case; an fp32 one is then counted double, which only makes sharding come sooner)."""
    from safetensors import safe_open

    total = 0
    for path in weight_files:
        if path.suffix != ".safetensors":
            total += path.stat().st_size // 2
            continue
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def visible_gpu_bytes() -> list[int]:
    """The memory of each visible GPU in bytes, in index order (empty without CUDA)."""
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())]


def plan_weights(placement: Placement, weight_files: list[Path]) -> WeightPlacement:
    """`weight_placement` for this machine's GPUs and this checkpoint's size as loaded."""
    if placement.torch_device.type != "cuda":  # no size needed off the GPU
        return weight_placement(placement, [], 0)
    size = int(parameter_count(weight_files) * placement.bytes_per_weight)
    return weight_placement(placement, visible_gpu_bytes(), size)


def load_placed(model_cls: Any, folder: Path, placement: Placement, *, allow_pickle: bool = False,
                **kwargs: Any) -> PreTrainedModel:
    """`model_cls.from_pretrained(folder, **kwargs)` in the placement's dtype and quantization,
    placed as `plan_weights` decides, in eval mode. Only an unquantized one-device model is moved
    with `.to(device)` after loading: bitsandbytes refuses to move a quantized one, and a sharded
    one stays spread over its GPUs (its inputs go to its embeddings' device)."""
    weights = plan_weights(placement, _weight_files(str(folder), folder, allow_pickle))
    model = model_cls.from_pretrained(folder, dtype=placement.torch_dtype,
                                      quantization_config=quantization_config(placement),
                                      use_safetensors=None if allow_pickle else True, **weights.kwargs(), **kwargs)
    if weights.device_map is None:
        model = model.to(placement.torch_device)
    return model.eval()


def model_fingerprint(name: str, *, trust_remote_code: bool = False, allow_pickle: bool = False) -> tuple[Path, str]:
    """The folder `load_model(name)` would load and its fingerprint, without loading any weights:
    enough to plan a run and find its cached jobs (a fully cached rerun never loads the model)."""
    folder = resolve_model_folder(name, trust_remote_code=trust_remote_code)
    _model_class(name, json.loads((folder / "config.json").read_text()), trust_remote_code)
    return folder, folder_fingerprint(folder, _weight_files(name, folder, allow_pickle))


def folder_fingerprint(folder: Path, weight_files: list[Path]) -> str:
    """A converted folder's recorded fingerprint, else one computed from its files."""
    manifest = folder / MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())["fingerprint"]
    return fingerprint_folder(folder, weight_files)


def _model_class(name: str, config: dict, trust_remote_code: bool):
    """Causal LM unless the checkpoint is a sequence-classification reward model; else one clear line."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if "auto_map" in config and model_type not in CONFIG_MAPPING_NAMES and not trust_remote_code:
        raise ModelNotFoundError(
            f"model {name!r}: architecture {model_type!r} needs its own code from the checkpoint; "
            "pass --trust-remote-code if you trust it")
    if trust_remote_code and "auto_map" in config:
        wants_cls = any(a.endswith("ForSequenceClassification") for a in architectures)
        return AutoModelForSequenceClassification if wants_cls else AutoModelForCausalLM
    if any(a.endswith("ForSequenceClassification") for a in architectures) \
            and model_type in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        return AutoModelForSequenceClassification
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return AutoModelForCausalLM
    examples = ", ".join(t for t in ("llama", "qwen2", "mistral", "gemma", "gpt_neox", "phi3")
                         if t in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    raise ModelNotFoundError(
        f"model {name!r}: unsupported architecture {model_type!r} ({', '.join(architectures) or 'no architectures'}); "
        f"supported: the {len(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)} causal-LM and sequence-classification "
        f"model types of transformers (e.g. {examples})")


def _weight_files(name: str, folder: Path, allow_pickle: bool) -> list[Path]:
    """The weight files that will be read; pickled checkpoints only with allow_pickle."""
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    pickled = sorted(p for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in folder.glob(pattern))
    if pickled and not allow_pickle:
        raise ModelNotFoundError(
            f"model {name!r}: {folder} has only pickled weights ({pickled[0].name}); pickles can run code when "
            "loaded, so genies reads safetensors only: pass --allow-pickle (allow_pickle=True) if you trust them")
    if not pickled:
        raise ModelNotFoundError(f"model {name!r}: {folder} holds no weights (*.safetensors or, with --allow-pickle, *.bin)")
    return pickled


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase, model) -> None:
    """Give the tokenizer a pad token without adding vocabulary.

    Choice order: the existing pad token, else the unk token, else EOS. Padding is always
    masked out by genies' engines, so the pad id never affects a score; reusing an existing token
    avoids resizing embeddings (which would change the model's fingerprint semantics). EOS is
    used only as a last resort and logged, because code that derives masks from `input_ids ==
    pad_token_id` would then also mask real EOS tokens.
    """
    if tokenizer.pad_token is None:
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        elif tokenizer.eos_token is not None:
            log.info("%s: no pad or unk token; padding with EOS (always masked)", type(tokenizer).__name__)
            tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
