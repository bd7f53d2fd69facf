"""Prefix-RFT on PyTorch Lightning: SFT and RFT in one update via prefix sampling."""
