"""Model fingerprints: a short hash of config, weight identity and tokenizer that names cache entries.

Hashing every weight byte of a multi-GB checkpoint would make each load slow, so weights are
identified by each safetensors file's header (names, dtypes, shapes, offsets) plus its size and
fixed 64 KiB samples spread evenly over the data. Any retrained or merged checkpoint changes the
sampled bytes, while a reload of the same files always gives the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

SAMPLE_BYTES = 64 * 1024
N_SAMPLES = 32
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
    "tokenizer.model", "vocab.txt", "added_tokens.json",
)
# Keys that describe where or how a config was saved, not what the model computes.
VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "_commit_hash", "dtype", "torch_dtype")


def weights_digest(path: Path, digest: hashlib._Hash) -> None:
    """Feed a weight file's identity into `digest`: header + size + evenly spaced samples."""
    size = path.stat().st_size
    digest.update(path.name.encode() + b"\0" + str(size).encode())
    with path.open("rb") as fh:
        if path.suffix == ".safetensors":
            (header_len,) = struct.unpack("<Q", fh.read(8))
            digest.update(fh.read(header_len))
        for i in range(N_SAMPLES):
            fh.seek(max(0, (size - SAMPLE_BYTES) * i // max(1, N_SAMPLES - 1)))
            digest.update(fh.read(SAMPLE_BYTES))


def config_identity(config: dict) -> bytes:
    """The config as canonical JSON without save-location and dtype keys."""
    clean = {k: v for k, v in config.items() if k not in VOLATILE_CONFIG_KEYS}
    return json.dumps(clean, sort_keys=True, default=str).encode()


def fingerprint_folder(folder: Path, weight_files: list[Path] | None = None) -> str:
    """A 16-hex-digit fingerprint of a saved model folder (config, weights, tokenizer)."""
    folder = Path(folder)
    digest = hashlib.sha256(b"genies-model-v1\0")
    config_file = folder / "config.json"
    if config_file.is_file():
        digest.update(config_identity(json.loads(config_file.read_text())))
    if weight_files is None:
        weight_files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    for file in sorted(weight_files):
        weights_digest(file, digest)
    for name in TOKENIZER_FILES:
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]
