"""Data modules: prompts, demonstrations and reference answers as token ids."""

from datamodules.prompt_demo import PromptDemoDataModule

__all__ = ["PromptDemoDataModule"]
