"""Rollouts with Hugging Face `generate` on the live policy.

The engine shares the trainer's parameters, so `update_weights` has nothing to do. Requests
with different budgets are sampled together up to the largest budget and each sample is
cut at its own budget afterwards: autoregressive sampling makes the cut sample a valid
sample under the smaller budget. Requests are batched by length (`length_batches`): a hybrid
request's prompt + prefix is up to twice an ordinary prompt, and padding every ordinary
request to it made a toy Prefix-RFT rollout 1.7x an RFT one. Under FSDP every rank must run
the same number of forward passes, so generation runs with `synced_gpus` when a process
group is up, in one batch (ranks could differ in their number of length batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from prefix_rft_pl.engines.base import LiveWeights, SamplingConfig
from prefix_rft_pl.types import GenerationRequest, Rollout


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """The tokens a sample stops on, as vLLM stops: the tokenizer's EOS and every EOS id of
    the model's generation config (Qwen2.5-Instruct ends turns with <|im_end|>, which only
    the generation config names)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    extra = getattr(generation_config, "eos_token_id", None)
    ids += [extra] if isinstance(extra, int) else list(extra or [])
    return list(dict.fromkeys(ids))


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Left-pad id lists into input_ids [B, L] and attention_mask [B, L]."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[i, width - len(seq):] = 1
    return ids, mask


class HFEngine(LiveWeights):
    """RolloutEngine over a live `transformers` causal LM."""

    def __init__(self, model, tokenizer, max_batch_size: int = 256, max_padding: float = 0.25):
        """max_padding: padding a length batch may hold, as a fraction of its prompt tokens, before
        longer prompts start a batch of their own (inf: one batch)."""
        self.model = model
        self.max_padding = max_padding
        self.eos_token_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        self.max_batch_size = max_batch_size

    @torch.no_grad()
    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Rollout]:
        flat = [r for r in requests for _ in range(r.num_samples)]
        rollouts: list[Rollout] = [None] * len(flat)
        max_padding = float("inf") if _is_distributed() else self.max_padding
        for batch in length_batches([len(r.prompt_ids) + len(r.prefix_ids) for r in flat], max_padding):
            for start in range(0, len(batch), self.max_batch_size):
                rows = batch[start:start + self.max_batch_size]
                for i, rollout in zip(rows, self._generate_batch([flat[i] for i in rows], sampling)):
                    rollouts[i] = rollout
        return rollouts

    def _generate_batch(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Rollout]:
        budget = max(r.max_new_tokens for r in requests)
        if budget <= 0:
            return [Rollout([], [], "length") for _ in requests]
        device = next(self.model.parameters()).device
        input_ids, attention_mask = left_pad([r.prompt_ids + r.prefix_ids for r in requests], self.pad_token_id)
        greedy = sampling.temperature == 0
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=budget,
                do_sample=not greedy,
                temperature=None if greedy else sampling.temperature,
                top_p=None if greedy else sampling.top_p,
                top_k=None if greedy or sampling.top_k <= 0 else sampling.top_k,
                eos_token_id=self.eos_token_ids,
                pad_token_id=self.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
                use_cache=True,
                synced_gpus=_is_distributed(),
            )
        finally:
            self.model.train(was_training)
        tokens = out.sequences[:, input_ids.shape[1]:]                            # [B, T]
        temperature = 1.0 if greedy else sampling.temperature
        # one step at a time: never a float32 [B, T, V] copy of the logits HF already holds
        logprobs = torch.stack([
            (step.float() / temperature).log_softmax(-1).gather(-1, tokens[:, t:t + 1]).squeeze(-1)  # [B]
            for t, step in enumerate(out.logits)
        ], dim=1).cpu()                                                           # [B, T]
        tokens = tokens.cpu()
        return [self._cut(tokens[i], logprobs[i], r.max_new_tokens) for i, r in enumerate(requests)]

    def _cut(self, tokens: Tensor, logprobs: Tensor, budget: int) -> Rollout:
        ids = tokens[:budget].tolist()
        stops = [i for i, token in enumerate(ids) if token in self.eos_token_ids]
        if stops:
            end = stops[0] + 1
            return Rollout(ids[:end], logprobs[:end].tolist(), "stop")
        return Rollout(ids, logprobs[: len(ids)].tolist(), "length")


def length_batches(lengths: Sequence[int], max_padding: float) -> list[list[int]]:
    """Indices of `lengths` in batches of increasing length (stable): a batch takes the next
    longer one while its left-padding stays within `max_padding` x its tokens."""
    if max_padding == float("inf"):
        return [list(range(len(lengths)))]  # in request order
    batches: list[list[int]] = []
    tokens = 0  # of the last batch
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        padding = lengths[i] * (len(batches[-1]) + 1) - (tokens + lengths[i]) if batches else 0
        if batches and padding <= max_padding * (tokens + lengths[i]):
            batches[-1].append(i)
            tokens += lengths[i]
        else:
            batches.append([i])
            tokens = lengths[i]
    return batches


def _is_distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
