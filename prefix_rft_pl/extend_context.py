"""A context-extended copy of a model, written once: the preparation Qwen2.5-Math needs.

Qwen2.5-Math-7B and -1.5B ship a 4,096-token context (`max_position_embeddings` 4096, RoPE base
10,000). The paper's runs generate 8,192 tokens after the prompt, so, as LUFFY does for its
training and evaluation (its model `Elliott/Qwen2.5-Math-7B-16k-think`), the copy used by every
fit and evaluation of these models has `max_position_embeddings` 16,384 and a larger RoPE base
(`LUFFY_CONTEXT`). Only `config.json` changes; the other files are linked (or copied, `--copy`).

    python -m prefix_rft_pl.extend_context Qwen/Qwen2.5-Math-7B /scratch/models/qwen2.5-math-7b-ctx16384 \\
        --max-position-embeddings 16384 --rope-theta 40000

SOURCE is a local folder or a hub id (downloaded with `huggingface_hub.snapshot_download`; on a
cluster whose compute nodes have no network, run this once on the login node). The copy is
written beside OUT and renamed into place when complete, with `prepared.json` (source, old and
new values); running the command again is a no-op when OUT holds the same preparation, and an
error when it holds another. The values are read back through transformers before the copy is
declared done (transformers 5 keeps the RoPE base in `rope_parameters`), so a value that would
not apply is an error, not a silently unchanged model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER = "prepared.json"


@dataclass(frozen=True)
class ContextExtension:
    """The context of a prepared copy."""

    max_position_embeddings: int
    rope_theta: float

    def __post_init__(self):
        if self.max_position_embeddings < 1:
            raise ValueError(f"max_position_embeddings must be >= 1, got {self.max_position_embeddings}")
        if not self.rope_theta > 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta}")


# LUFFY's released 16k copy of Qwen2.5-Math (README of ElliottYan/LUFFY at 01f4ae0 names
# Elliott/Qwen2.5-Math-7B-16k-think as the model of every script): 16,384 positions, RoPE base
# 40,000 in place of 10,000. The base is the value of that model's config.json as LUFFY describes
# it; it could not be read from the hub here (no network): check it against the model card.
LUFFY_CONTEXT = ContextExtension(16384, 40000.0)


def source_folder(source: str) -> Path:
    """A local model folder as it is, or a hub id downloaded into the hub's cache."""
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a model folder)")
        return path.resolve()
    if path.exists() or source.startswith((".", "/")) or source.count("/") != 1:
        raise FileNotFoundError(f"{source}: not a model folder, and not a hub id of the form owner/name")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source))


def rope_theta_of(config) -> float | None:
    """The RoPE base as transformers reads it (4.x: `rope_theta`; 5.x: `rope_parameters`)."""
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, dict) and "rope_theta" in parameters:
        return float(parameters["rope_theta"])
    theta = getattr(config, "rope_theta", None)
    return None if theta is None else float(theta)


def extended_config(config: dict, ext: ContextExtension) -> dict:
    """config.json with the new context: `max_position_embeddings`, and the RoPE base wherever the
    file keeps it (top-level `rope_theta`, `rope_parameters`, or both)."""
    out = json.loads(json.dumps(config))
    out["max_position_embeddings"] = ext.max_position_embeddings
    if isinstance(out.get("rope_parameters"), dict):
        out["rope_parameters"]["rope_theta"] = ext.rope_theta
    if "rope_theta" in out or not isinstance(out.get("rope_parameters"), dict):
        out["rope_theta"] = ext.rope_theta
    return out


def extend_context(source: str, out: str | Path, ext: ContextExtension, copy: bool = False) -> Path:
    """Write the context-extended copy of `source` to `out` (once); returns `out`."""
    from transformers import AutoConfig

    from prefix_rft_pl.context import model_context

    out = Path(out).absolute()
    record = {"source": source, **asdict(ext)}
    marker = out / MARKER
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if {k: saved.get(k) for k in record} != record:
            raise FileExistsError(f"{out} holds another preparation ({ {k: saved.get(k) for k in record} }), not "
                                  f"{record}: choose another folder, or delete it")
        print(f"{out}: already prepared ({record})")
        return out
    if out.exists():
        raise FileExistsError(f"{out} exists without {MARKER} (not a copy this command wrote): choose another "
                              "folder, or delete it")
    folder = source_folder(source)
    config = json.loads((folder / "config.json").read_text())
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # an earlier attempt cut short
    partial.mkdir(parents=True)
    for item in sorted(folder.iterdir()):
        if item.name in ("config.json", MARKER) or item.name.startswith("."):
            continue
        target = partial / item.name
        if copy:
            (shutil.copytree if item.is_dir() else shutil.copy2)(item.resolve(), target)
        else:
            os.symlink(item.resolve(), target)
    (partial / "config.json").write_text(json.dumps(extended_config(config, ext), indent=2) + "\n")

    read = AutoConfig.from_pretrained(partial)  # what the trainer, vLLM and the harness will see
    seen = {"max_position_embeddings": model_context(read), "rope_theta": rope_theta_of(read)}
    if seen != asdict(ext):
        raise ValueError(f"{source}: transformers reads {seen} from the prepared config.json, not {asdict(ext)}: "
                         "this model type keeps its context elsewhere")
    before = {"max_position_embeddings": config.get("max_position_embeddings"),
              "rope_theta": config.get("rope_theta", (config.get("rope_parameters") or {}).get("rope_theta"))}
    (partial / MARKER).write_text(json.dumps({**record, "from": str(folder), "before": before,
                                              "files": "copied" if copy else "linked"}, indent=2) + "\n")
    partial.rename(out)
    print(f"{out}: {source} with context {before} -> {asdict(ext)} (other files {'copied' if copy else 'linked'})")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prefix_rft_pl.extend_context", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a model folder or a hub id")
    parser.add_argument("out", help="the prepared copy's folder")
    parser.add_argument("--max-position-embeddings", type=int, default=LUFFY_CONTEXT.max_position_embeddings)
    parser.add_argument("--rope-theta", type=float, default=LUFFY_CONTEXT.rope_theta)
    parser.add_argument("--copy", action="store_true", help="copy the weights instead of linking them")
    args = parser.parse_args(argv)
    try:
        extend_context(args.source, args.out, ContextExtension(args.max_position_embeddings, args.rope_theta),
                       args.copy)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e


if __name__ == "__main__":
    main()
