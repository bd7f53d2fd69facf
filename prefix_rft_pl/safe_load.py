"""Loading checkpoints without running code from them.

`torch.load(weights_only=False)` unpickles arbitrary objects, so a crafted `.ckpt` runs
whatever it names (`os.system`) before anything can look at it. Checkpoints are loaded
with `weights_only=True` instead, with this framework's own types allow-listed
(`FRAMEWORK_TYPES`: ReLIFT's buffer keeps `PromptItem`s). A legacy checkpoint that holds
other objects is refused with an error naming them; a user who made the file and trusts
it opts in explicitly: `trust_pickle=True`, `--trust_pickle` on
`python -m eval_harness run`, or `PREFIX_RFT_TRUST_PICKLE=1` (docs/grading.md).

A torch.distributed.checkpoint directory (FSDP2) keeps its index in `.metadata`, a plain
pickle: `check_dcp_metadata` unpickles it with only torch's checkpoint metadata types,
dtypes and paths allowed before torch reads it; then only the tensors are loaded (DCP
reads its non-tensor items with weights_only=False).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

TRUST_ENV = "PREFIX_RFT_TRUST_PICKLE"
_METADATA_GLOBALS = {"collections.OrderedDict", "pathlib.PosixPath", "torch.serialization._get_layout"}


class UnsafeCheckpointError(ValueError):
    """A checkpoint would run code or build objects outside the allow-list when loaded."""


def framework_types() -> list[type]:
    """Classes this framework itself stores in checkpoints (allowed under weights_only)."""
    from prefix_rft_pl.types import PromptItem

    return [PromptItem]


def allow_framework_types() -> None:
    """Allow-list FRAMEWORK types process-wide, for loads this code does not call itself
    (Lightning's `fit(ckpt_path=...)`, whose torch.load defaults to weights_only=True)."""
    import torch

    torch.serialization.add_safe_globals(framework_types())


def trust_from_env() -> bool:
    return os.environ.get(TRUST_ENV, "") not in ("", "0", "false", "False")


def load_checkpoint(path: str | Path, trust_pickle: bool = False, mmap: bool = False) -> Any:
    """`torch.load(path)` on CPU with weights_only=True and the framework's types allowed;
    `trust_pickle=True` (the user made the file) unpickles anything."""
    import torch

    if trust_pickle:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    try:
        with torch.serialization.safe_globals(framework_types()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        reason = str(exc).split("\n\n")[-1].split("\n")[0] if str(exc) else repr(exc)
        raise UnsafeCheckpointError(
            f"{path}: refused to unpickle it (loading would create objects outside this framework's "
            f"allow-list, which is how a crafted checkpoint runs code): {reason}. If you made this file "
            f"and trust it, opt in with --trust_pickle or {TRUST_ENV}=1 (see docs/grading.md)"
        ) from None


def _allowed_metadata_global(name: str) -> bool:
    """torch.distributed.checkpoint's own classes, OrderedDict, and torch's dtypes, layouts,
    memory formats and Size: what a DCP .metadata pickle holds."""
    import torch

    if name.startswith("torch.distributed.checkpoint.") or name in _METADATA_GLOBALS:
        return True
    module, _, attr = name.rpartition(".")
    value = getattr(torch, attr, None) if module == "torch" else None
    return value is torch.Size or isinstance(value, (torch.dtype, torch.layout, torch.memory_format))


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if _allowed_metadata_global(f"{module}.{name}"):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(f"{module}.{name}")


def check_dcp_metadata(path: Path) -> None:
    """Refuse a DCP `.metadata` pickle that would import anything but its own types (it is
    unpickled here with only those allowed, so nothing else can run)."""
    try:
        with path.open("rb") as f:
            _MetadataUnpickler(f).load()
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{path}: would import {exc} when unpickled; refused. If you made it "
                                    f"and trust it: --trust_pickle or {TRUST_ENV}=1") from None
    except Exception as exc:  # noqa: BLE001  (a broken pickle is refused, not crashed on)
        raise UnsafeCheckpointError(f"{path}: not a readable checkpoint index ({exc!r})") from None
