"""The update pipeline: the passes of one rollout batch over the policy, with explicit inputs
(the batch, the settings, a ranks object), never the LightningModule.

- logprobs.py  chunked token log-probs and entropies (no [T x V] float32 at once)
- forward.py   `Passes` (model, pad id, settings, ranks, backward); micro-batched log-prob passes
- rows.py      which rows each pass covers; prefix selection across ranks; mini-batch prompts
- steps.py     the optimiser steps and the demonstration cross-entropy
- ranks.py     `OneRank`, `LightningRanks`: rank, world and the collectives the passes need
"""
