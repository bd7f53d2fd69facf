"""Turn whatever `--ckpt` names into an HF model directory (or hub id) both engines can load.

- HF model directory (has config.json), or a hub id (`owner/name`, not a local path): as is.
- Lightning .ckpt of this framework: weights under `state_dict["policy.<hf name>"]`, base
  model id/path in `hyper_parameters["policy"]`. The base's config and tokenizer are
  rebuilt, the weights loaded, and the result saved as an HF directory `<ckpt>.hf` next to
  the checkpoint, once.
- FSDP2 sharded checkpoint directory as Lightning's ModelParallelStrategy writes it
  (torch.distributed.checkpoint files plus `meta.pt`): consolidated once with
  `dcp_to_torch_save`, then exported like a .ckpt to `<dir>.hf`.
Anything else raises an error that says what was found.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

POLICY_PREFIX = "policy."
DONE_MARKER = ".export_complete"


class CheckpointError(ValueError):
    pass


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def is_sharded_dir(path: Path) -> bool:
    return path.is_dir() and (path / ".metadata").is_file()


def looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def policy_state_dict(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`policy.<hf name>` entries -> `<hf name>` (a torch.compile `_orig_mod.` is dropped too)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(POLICY_PREFIX):
            out[key[len(POLICY_PREFIX):].replace("_orig_mod.", "")] = value
    return out


def describe(path: Path) -> str:
    if not path.exists():
        return "nothing at that path"
    if path.is_file():
        return f"a file of {path.stat().st_size} bytes with suffix {path.suffix or '(none)'}"
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    return f"a directory without config.json or .metadata, containing: {shown or '(empty)'}"


def resolve_checkpoint(spec: str) -> tuple[str, str | None]:
    """(HF directory or hub id, base model of a framework checkpoint or None) for `spec`."""
    path = Path(spec).expanduser()
    if is_hf_dir(path):
        return str(path), None
    if path.is_file() and path.suffix == ".ckpt":
        return _cached_export(path, lambda: _load_lightning(path))
    if is_sharded_dir(path):
        return _cached_export(path, lambda: _load_sharded(path))
    if not path.exists() and looks_like_hub_id(spec):
        return spec, None
    raise CheckpointError(
        f"--ckpt {spec}: expected an HF model directory (config.json), a hub id (owner/name), a "
        f"Lightning .ckpt, or an FSDP2 sharded checkpoint directory (.metadata); found {describe(path)}"
    )


def _load_lightning(path: Path) -> tuple[dict, dict]:
    # weights_only=False: hyper_parameters may hold arbitrary objects (the user's own file)
    ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: keys {sorted(ckpt)[:8]}")
    return ckpt["state_dict"], ckpt.get("hyper_parameters", {})


def _load_sharded(path: Path) -> tuple[dict, dict]:
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    meta_file = path / "meta.pt"
    meta = torch.load(meta_file, map_location="cpu", weights_only=False) if meta_file.is_file() else {}
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        consolidated = Path(tmp) / "consolidated.pt"
        dcp_to_torch_save(path, consolidated)
        state = torch.load(consolidated, map_location="cpu", weights_only=False)
    if "state_dict" not in state:
        raise CheckpointError(f"{path}: sharded checkpoint without a 'state_dict' entry: {sorted(state)[:8]}")
    return state["state_dict"], meta.get("hyper_parameters", {})


def _cached_export(path: Path, load) -> tuple[str, str]:
    """`<path>.hf`: built once (atomically: a killed export leaves no half directory)."""
    target = path.with_name(path.name + ".hf")
    if (target / DONE_MARKER).is_file():
        return str(target), (target / DONE_MARKER).read_text()
    state_dict, hparams = load()
    base = hparams.get("policy")
    if not base:
        raise CheckpointError(f"{path}: no hyper_parameters['policy'] naming the base model")
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.export"))
    try:
        export_hf(str(base), policy_state_dict(state_dict), tmp)
        (tmp / DONE_MARKER).write_text(str(base))  # the base, for the report
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target), str(base)


def export_hf(base: str, weights: dict[str, torch.Tensor], out: Path) -> None:
    """Base config, generation config and tokenizer with `weights`, saved as an HF directory.

    The weights are written as they are (no model is instantiated, so nothing is
    re-initialised); their names are checked against the base architecture on the meta device.
    """
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if not weights:
        raise CheckpointError("the checkpoint has no 'policy.*' weights")
    config = AutoConfig.from_pretrained(base)
    with torch.device("meta"):
        expected = set(AutoModelForCausalLM.from_config(config).state_dict())
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing, unexpected = expected - set(weights) - tied, set(weights) - expected
    if missing or unexpected:
        raise CheckpointError(f"weights do not fit {base}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in weights.items() if k not in tied}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    try:
        GenerationConfig.from_pretrained(base).save_pretrained(str(out))
    except OSError:
        pass  # the base has no generation config
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out))
