"""HF-format export of the trained policy: `save_pretrained` of full weights + tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

EXPORT_MARKER = "export_complete.json"


def export_dir_of(module) -> Path:
    log_dir = module.trainer.log_dir or module.trainer.default_root_dir
    return Path(log_dir) / "hf_export"


def export_hf(module, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the module's policy in HF format (all ranks must call it under FSDP2)."""
    from prefix_rft_pl.distributed import full_state_dict

    out = Path(out_dir) if out_dir is not None else export_dir_of(module)
    state = full_state_dict(module.policy)
    if module.trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        module.policy.save_pretrained(str(out), state_dict=state)
        module.tokenizer.save_pretrained(str(out))
        # last: a reader (the reproduction harness) takes an export with this file as complete
        (out / EXPORT_MARKER).write_text(json.dumps({"global_step": module.global_step}))
    module.trainer.strategy.barrier("hf_export")
    return out
