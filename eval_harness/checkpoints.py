"""Turn whatever `--ckpt` names into an HF model directory (or hub id) both engines can load.

- HF model directory (has config.json), or a hub id (`owner/name`, not a local path): as is.
- Lightning .ckpt of this framework: weights under `state_dict["policy.<hf name>"]`, base
  model id/path in `hyper_parameters["policy"]`. The base's config and tokenizer are
  rebuilt, the weights loaded, and the result saved as an HF directory `<ckpt>.hf` next to
  the checkpoint, and rebuilt when the checkpoint's content changes (size, mtime and a
  hash: `save_last` overwrites `last.ckpt` in place). A relative base path is taken
  relative to the checkpoint's run directory when it is not found from here.
- FSDP2 sharded checkpoint directory as Lightning's ModelParallelStrategy writes it
  (torch.distributed.checkpoint files plus `meta.pt`): consolidated once with
  `dcp_to_torch_save`, then exported like a .ckpt to `<dir>.hf`.
Anything else raises an error that says what was found; a path that looks local (has a
suffix, starts with . / ~, or has more than one part) but does not exist is an error, not a
hub lookup. Checkpoints are unpickled with weights_only=True and the framework's types
allowed (prefix_rft_pl/safe_load.py); `trust_pickle` opts into a legacy pickle.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from prefix_rft_pl.safe_load import check_dcp_metadata, load_checkpoint, trust_from_env

POLICY_PREFIX = "policy."
DONE_MARKER = ".export_complete"


class CheckpointError(ValueError):
    pass


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def is_sharded_dir(path: Path) -> bool:
    return path.is_dir() and (path / ".metadata").is_file()


def looks_like_hub_id(spec: str) -> bool:
    """owner/name, no file suffix (`runs/last.ckpt` is a local path with a typo, not a repo)."""
    parts = spec.split("/")
    local_suffix = Path(spec).suffix in (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".hf")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~")) and not local_suffix


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


def content_key(path: Path) -> str:
    """Size, mtime and a hash of a checkpoint's content (its first and last MiB, and for a
    directory every file's size and mtime): changes when the file is overwritten."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f.relative_to(path) if path.is_dir() else f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        if not path.is_dir():
            with f.open("rb") as handle:
                digest.update(handle.read(2**20))
                handle.seek(max(0, stat.st_size - 2**20))
                digest.update(handle.read(2**20))
    return digest.hexdigest()


def checkpoint_identity(spec: str) -> dict:
    """What the samples' protocol records of the checkpoint's content (nothing for a hub id)."""
    path = Path(spec).expanduser()
    return {"ckpt_content": content_key(path)} if path.exists() else {}


def resolve_checkpoint(spec: str, trust_pickle: bool | None = None) -> tuple[str, str | None]:
    """(HF directory or hub id, base model of a framework checkpoint or None) for `spec`.

    trust_pickle: unpickle a legacy checkpoint with weights_only=False (None: the
    PREFIX_RFT_TRUST_PICKLE environment variable decides)."""
    trust = trust_from_env() if trust_pickle is None else trust_pickle
    path = Path(spec).expanduser()
    if is_hf_dir(path):
        return str(path), None
    if path.is_file() and path.suffix == ".ckpt":
        return _cached_export(path, lambda: _load_lightning(path, trust))
    if is_sharded_dir(path):
        return _cached_export(path, lambda: _load_sharded(path, trust))
    if not path.exists() and looks_like_hub_id(spec):
        return spec, None
    if not path.exists():
        raise CheckpointError(f"--ckpt {spec}: no such file or directory ({path.resolve()}); a hub id is "
                              f"owner/name without a file suffix")
    raise CheckpointError(
        f"--ckpt {spec}: expected an HF model directory (config.json), a hub id (owner/name), a "
        f"Lightning .ckpt, or an FSDP2 sharded checkpoint directory (.metadata); found {describe(path)}"
    )


def _load_lightning(path: Path, trust_pickle: bool) -> tuple[dict, dict]:
    ckpt = load_checkpoint(path, trust_pickle=trust_pickle, mmap=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: keys {sorted(ckpt)[:8]}")
    return ckpt["state_dict"], ckpt.get("hyper_parameters", {})


def _load_sharded(path: Path, trust_pickle: bool) -> tuple[dict, dict]:
    """The `state_dict.*` tensors of a DCP directory (its index checked first; its
    non-tensor items, which DCP unpickles with weights_only=False, are never read)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta_file = path / "meta.pt"
    meta = load_checkpoint(meta_file, trust_pickle=trust_pickle) if meta_file.is_file() else {}
    if not trust_pickle:
        check_dcp_metadata(path / ".metadata")
    reader = dcp.FileSystemReader(str(path))
    prefix = "state_dict."
    state = {fqn: torch.empty(md.size, dtype=md.properties.dtype)
             for fqn, md in reader.read_metadata().state_dict_metadata.items()
             if fqn.startswith(prefix) and isinstance(md, TensorStorageMetadata)}
    if not state:
        raise CheckpointError(f"{path}: sharded checkpoint without 'state_dict' tensors")
    dcp.load(state, storage_reader=reader, no_dist=True)
    return {fqn[len(prefix):]: t for fqn, t in state.items()}, meta.get("hyper_parameters", {})


def resolve_base(base: str, ckpt: Path) -> str:
    """The base model named in a checkpoint: as is if it exists from here or is a hub id;
    a relative path is tried relative to the checkpoint's directory and its parents (a run
    folder's `checkpoints/last.ckpt` stored the path relative to where training ran)."""
    if Path(base).expanduser().exists():
        return base
    if not Path(base).is_absolute():
        for folder in [ckpt.resolve().parent, *ckpt.resolve().parents]:
            if (folder / base).exists():
                return str(folder / base)
    if looks_like_hub_id(base) and not base.startswith(("./", "../")):
        return base
    raise CheckpointError(f"{ckpt}: its base model {base!r} (hyper_parameters['policy']) is neither a path that "
                          f"exists from here or from the checkpoint's folders, nor a hub id (owner/name)")


def _cached_export(path: Path, load) -> tuple[str, str]:
    """`<path>.hf`: built once per checkpoint content (atomically: a killed export leaves no
    half directory); an overwritten checkpoint is exported again."""
    target = path.with_name(path.name + ".hf")
    key = content_key(path)
    done = target / DONE_MARKER
    if done.is_file():
        record = _read_marker(done)
        if record.get("content") == key:
            return str(target), record["base"]
    state_dict, hparams = load()
    if not hparams.get("policy"):
        raise CheckpointError(f"{path}: no hyper_parameters['policy'] naming the base model")
    base = resolve_base(str(hparams["policy"]), path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.export"))
    try:
        export_hf(base, policy_state_dict(state_dict), tmp)
        (tmp / DONE_MARKER).write_text(json.dumps({"base": base, "content": key}))  # the base, for the report
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target), str(base)


def _read_marker(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}  # an older marker held the base only: export again
    return record if isinstance(record, dict) else {}


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
        raise CheckpointError(f"weights do not fit {base}: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in weights.items() if k not in tied}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(out))
    try:
        GenerationConfig.from_pretrained(base).save_pretrained(str(out))
    except OSError:
        pass  # the base has no generation config
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out))
