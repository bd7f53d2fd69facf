"""Machinery of the baseline rows (SPEC 3) that is not a per-token weight, one file each:
UFT's hints (uft.py), ReLIFT's buffer and SFT step (relift.py). Per-token weights are in
losses.py and variants.py."""
