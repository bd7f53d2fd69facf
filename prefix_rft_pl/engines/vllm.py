"""Rollouts with vLLM, running in the trainer's process (colocated), fed token ids.

The only module that imports vllm, and only inside functions, so that importing
`prefix_rft_pl.engines` (and `--print_config`) works without it.

Choices, and where they depart from the reference code:

- Log-probs. vLLM's default `logprobs_mode="raw_logprobs"` returns log-softmax of the raw
  logits, before temperature. The trainer scores log_softmax(logits / temperature), so the
  engine is built with `logprobs_mode="processed_logprobs"`: the log-probs of the
  distribution actually sampled (after temperature, top-k and top-p). With top_p = 1 and
  top_k = -1 (the training default) they equal the trainer's; with truncation they are
  the truncated distribution's, which is what truncated importance sampling needs. At
  temperature 0 (greedy) they are log_softmax(logits), as in `HFEngine`. On CUDA this
  mode makes vLLM use its PyTorch sampler instead of FlashInfer's.
- Weight push, chosen per backend. On CPU every linear layer's weight is repacked for
  oneDNN after loading and the checkpoint-format parameter is dropped, so the model's
  `load_weights` has nothing to write into; `reload_weights` (layer-wise restore, load and
  re-pack) works, at the price of the repacking. On GPUs, unquantised, the usual path, the
  model's `load_weights` through the model runner, writes into the live parameters
  directly; quantised models take `reload_weights` there too. The GPU path is written
  from vLLM's source and examples but has not been run in this repository's tests. Either
  way the prefix cache is reset afterwards: cached KV blocks were computed with the old
  weights.
- In-process engine. `VLLM_ENABLE_V1_MULTIPROCESSING` defaults to 0 here (set before vllm
  is imported, unless the caller set it) so that `update_weights` hands tensors to the
  worker by reference, as a stream. With a multiprocess engine the tensors are copied
  into a list first and pickled across.
- KV cache. `kv_cache_gib` becomes vLLM's `kv_cache_memory_bytes`; without it, the CPU
  backend claims most of the host's memory. On CPU `VLLM_CPU_KVCACHE_SPACE` (GiB), when
  set, takes precedence inside vLLM.
- Samples of one request use `SamplingParams(n=...)`, and prefix caching is on, so the
  G rollouts of a prompt share its prefill.
- Weight fingerprint. Before each `generate`, the worker computes the fingerprint
  (`prefix_rft_pl.engines.checks`) of the weights it is about to sample with: its live
  parameters still in checkpoint layout, and a few columns of every linear layer read
  through the layer's own GEMM (on CPU, the copy repacked for oneDNN). The module compares
  it with its own weights before training on the rollouts.
- One engine per data-parallel rank (`rank` given, torch.distributed up with more than one
  process): vLLM's `external_launcher` executor builds the engine in this process on the
  trainer's process group, so construction is a collective (vLLM takes the minimum of the
  free memory over all ranks): every rank must build its engine at the same point. Each
  rank's engine has its own seed (`seed + rank`) and samples the rank's own prompts. vLLM
  lays the torch world out as ExternalDP x TP; with tensor_parallel_size 1, every rank's
  engine is independent of the others. Building it in-process, vLLM seeds the process's
  global RNGs (random, numpy, torch) with that seed; the module draws its own randomness
  from explicit generators. Tensor parallelism inside per-rank engines is
  refused: the ranks of one TP group would have to feed their engine the same prompts with
  the same seed (the layout TRL's colocate mode uses), which this module's data layout (one
  batch per rank) does not do. Sleep mode is per rank as in one process (GPUs only; not
  run in this repository's tests, whose engines run on CPU).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.types import GenerationRequest, Rollout


class VLLMEngine:  # implements engines.base.RolloutEngine
    """RolloutEngine over an in-process `vllm.LLM`."""

    def __init__(
        self,
        model: str,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.5,
        tensor_parallel_size: int = 1,
        enforce_eager: bool = False,
        enable_sleep_mode: bool = False,
        kv_cache_gib: float | None = None,
        enable_prefix_caching: bool = True,
        fingerprint_weights: bool = True,
        rank: int | None = None,
        local_rank: int | None = None,
        engine_kwargs: dict[str, Any] | None = None,
    ):
        """
        Args:
            model: hub id or local path of the policy's initial weights (HF format).
            dtype: vLLM dtype ("auto" takes the checkpoint's; "bfloat16", "float32", ...).
            seed: engine seed; sampling is reproducible for a fixed seed and request order.
            max_model_len: longest prompt + prefix + response; None takes the model's.
            gpu_memory_utilization: fraction of GPU memory vLLM may take (weights + KV).
                The trainer shares the GPU, hence a default below vLLM's 0.92.
            tensor_parallel_size: GPUs per engine.
            enforce_eager: no CUDA graphs / compilation (faster start, slower decode).
            enable_sleep_mode: free GPU memory between rollouts (`sleep` / `wake_up`).
                Ignored, with a warning, on backends without sleep mode (CPU).
            kv_cache_gib: KV cache size in GiB; overrides `gpu_memory_utilization`'s
                share for the cache. Always set it on CPU.
            enable_prefix_caching: share KV blocks between requests with a common prefix.
            fingerprint_weights: record `weights_fingerprint` before every `generate`.
            rank: this process's data-parallel rank when every rank runs its own engine (see
                the module docstring); None for a single-process engine.
            local_rank: the rank's index on its node (its GPU); defaults to `rank`.
            engine_kwargs: anything else for `vllm.LLM` (no silent defaults there).
        """
        per_rank = rank is not None and torch.distributed.is_available() and torch.distributed.is_initialized()
        if per_rank:
            if tensor_parallel_size != 1:
                raise ValueError(
                    f"tensor_parallel_size={tensor_parallel_size} with one engine per data-parallel rank is not "
                    "supported: every rank runs its own engine on its own device (tensor_parallel_size 1); a larger "
                    "policy needs a separate rollout server, not a colocated engine")
            seed += rank  # independent samples on every rank
            local_rank = rank if local_rank is None else local_rank
            # vLLM's external launcher reads torchrun's variables; Lightning's launcher may not set RANK
            os.environ.update(RANK=str(rank), LOCAL_RANK=str(local_rank),
                              WORLD_SIZE=str(torch.distributed.get_world_size()))
            engine_kwargs = {"distributed_executor_backend": "external_launcher", **(engine_kwargs or {})}
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if enable_sleep_mode and not current_platform.is_sleep_mode_available():
            import warnings

            warnings.warn(f"vLLM has no sleep mode on {current_platform.device_type}; enable_sleep_mode ignored",
                          stacklevel=2)
            enable_sleep_mode = False
        self.sleep_mode = enable_sleep_mode
        self.asleep = False
        self.in_process = os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
        # vLLM's in-process worker starts a one-rank process group when none is up
        self._owns_process_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
        kv_bytes = None if kv_cache_gib is None else int(kv_cache_gib * 2**30)
        self.llm = LLM(
            model=str(model),
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            enforce_eager=enforce_eager,
            enable_sleep_mode=enable_sleep_mode,
            kv_cache_memory_bytes=kv_bytes,
            enable_prefix_caching=enable_prefix_caching,
            logprobs_mode="processed_logprobs",
            **(engine_kwargs or {}),
        )
        self.holds_weights = True  # the protocol's: the trainer pushes and verifies
        config = self.llm.llm_engine.model_config
        self.dtype: torch.dtype = config.dtype  # what update_weights casts to
        # kernels that repack weights after loading (CPU GEMMs, quantisation) need reload_weights
        self.reload = self.on_cpu or config.quantization is not None
        self.fingerprint_weights = fingerprint_weights
        self.weights_fingerprint: dict[str, dict] | None = None

    # -- rollouts -------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Rollout]:
        """Sample each request `num_samples` times from `prompt_ids + prefix_ids`.

        Rollouts come back in request order, the samples of one request contiguous; their
        token ids exclude prompt and prefix and include EOS when the sample stopped on it.
        A request with no budget (`max_new_tokens <= 0`) gives empty rollouts.
        """
        from vllm import SamplingParams, TokensPrompt

        self.wake_up()
        if self.fingerprint_weights:
            self.weights_fingerprint = self.fingerprint()
        owners: list[int] = []          # request index of each vLLM prompt
        prompts, params = [], []
        for i, request in enumerate(requests):
            if request.max_new_tokens <= 0 or request.num_samples <= 0:
                continue
            # vLLM refuses n > 1 at temperature 0: greedy samples go in as separate copies
            copies, n = (request.num_samples, 1) if sampling.temperature == 0 else (1, request.num_samples)
            owners += [i] * copies
            prompts += [TokensPrompt(prompt_token_ids=list(request.prompt_ids) + list(request.prefix_ids))] * copies
            seed = None if sampling.seed is None else sampling.seed + i  # per request: independent of the batch
            params += [_sampling_params(SamplingParams, n, request.max_new_tokens, sampling, seed)] * copies
        outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        samples: dict[int, list[Rollout]] = {i: [] for i in owners}
        for i, output in zip(owners, outputs):
            samples[i] += [_to_rollout(c) for c in sorted(output.outputs, key=lambda c: c.index)]
        return [
            rollout
            for i, request in enumerate(requests)
            for rollout in samples.get(i) or [Rollout([], [], "length") for _ in range(request.num_samples)]
        ]

    def greedy(self, requests: Sequence[GenerationRequest]) -> list[Rollout]:
        """Greedy continuations (temperature 0); log-probs are log_softmax(logits)."""
        return self.generate(requests, SamplingConfig(temperature=0.0))

    # -- weights --------------------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, Tensor]]) -> None:
        """Load full tensors with HF parameter names; a subset of the model's is fine.

        Tensors are consumed one at a time (a generator keeps memory bounded) and cast to
        the engine's dtype by vLLM's weight loaders.
        """
        self.wake_up()  # level-2 sleep dropped the weights: every one must come in now
        weights: Iterable[tuple[str, Tensor]] = named_tensors
        if not self.in_process:
            weights = [(name, tensor.detach().cpu()) for name, tensor in named_tensors]
        if self.reload:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights)})
        else:
            self.llm.collective_rpc(_load_weights_into_runner, args=(weights,))
        if self.on_cpu:
            self.llm.collective_rpc(_repack_tied_lm_head)
        self.llm.reset_prefix_cache()

    def pop_weights_fingerprint(self) -> dict[str, dict] | None:
        """The fingerprint recorded by the last `generate`, once (None when there was none since)."""
        fingerprint, self.weights_fingerprint = self.weights_fingerprint, None
        return fingerprint

    def fingerprint(self) -> dict[str, dict]:
        """Fingerprints of the weights the worker holds and computes with (`_fingerprint_in_worker`),
        computed inside the worker (the first worker's, when there are several)."""
        self.wake_up()
        return self.llm.collective_rpc(_fingerprint_in_worker, args=(self.dtype,))[0]

    # -- memory ---------------------------------------------------------------------------

    def sleep(self, level: int = 1) -> None:
        """Free GPU memory after a rollout phase: level 1 offloads weights to host memory
        and drops the KV cache; level 2 drops both (the next `update_weights` must then
        bring every weight). `generate` and `update_weights` wake the engine up first.
        A no-op without sleep mode."""
        if self.sleep_mode and not self.asleep:
            self.llm.sleep(level=level)
            self.asleep = True

    def wake_up(self) -> None:
        """Reallocate what `sleep` freed (weights and KV cache)."""
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    def close(self) -> None:
        """Shut the engine down and free its memory, so that another can start in this process.

        Its process groups go with it; the trainer's default process group, when the trainer
        made one, stays: vLLM's shutdown ends by destroying torch's default group, which left
        the trainer without its collectives, and a later `destroy_process_group()` of the
        trainer's tripped over vLLM's groups ("Invalid process group specified").
        """
        if self.llm is None:
            return
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        with _keep_default_process_group(not self._owns_process_group):
            self.llm.llm_engine.engine_core.shutdown()  # destroys vLLM's groups (and, unpatched, the default)
            self.llm = None
            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()


@contextmanager
def _keep_default_process_group(keep: bool):
    """While active (when `keep`), `torch.distributed.destroy_process_group()` without a group
    is a no-op: the groups vLLM made are destroyed, the default one is left to its owner."""
    destroy = torch.distributed.destroy_process_group

    def destroy_named_groups_only(group=None):
        if group is not None:
            destroy(group)

    if keep:
        torch.distributed.destroy_process_group = destroy_named_groups_only
    try:
        yield
    finally:
        torch.distributed.destroy_process_group = destroy


def _sampling_params(cls, n: int, max_tokens: int, sampling: SamplingConfig, seed: int | None = None):
    """vLLM `SamplingParams` (passed in as `cls`, vllm is imported lazily) for one request."""
    return cls(
        n=n,
        max_tokens=max_tokens,
        seed=seed,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        logprobs=0,            # the sampled token's log-prob only
        flat_logprobs=True,    # one flat list per sample instead of T dicts
        detokenize=False,      # callers decode what they need
    )


def _to_rollout(completion) -> Rollout:
    """One vLLM `CompletionOutput` -> Rollout; one log-prob per generated token."""
    ids = list(completion.token_ids)
    logprobs = _sampled_logprobs(completion.logprobs, ids)
    finish = "stop" if completion.finish_reason == "stop" else "length"
    return Rollout(ids, logprobs, finish)


def _sampled_logprobs(logprobs, ids: list[int]) -> list[float]:
    """The sampled token's log-prob at each position, from flat or per-position logprobs."""
    flat = getattr(logprobs, "start_indices", None)
    if flat is not None and len(logprobs.logprobs) == len(ids):  # exactly one entry per position
        return list(logprobs.logprobs)
    return [position[token].logprob for position, token in zip(logprobs, ids)]


def _fingerprint_in_worker(worker, dtype: torch.dtype) -> dict[str, dict]:
    """Runs inside each vLLM worker: fingerprints of the weights as the engine holds and uses them.

    "tensors": {name: (shape, fingerprint)} of the live parameters in checkpoint layout.
    Skipped: parameters emptied by repacking (CPU linear layers), fused ones (the model's
    `packed_modules_mapping`: qkv_proj, gate_up_proj). Vocabulary-parallel embeddings of an
    unsharded engine lose their padding rows (vLLM pads the vocabulary to a multiple of 64).

    "columns": {module weight name: (checkpoint names of its parts, columns, shape,
    fingerprint)} of a few columns of every linear layer and every vocabulary-parallel
    embedding used as an output layer, read through the layer's own GEMM (on CPU the
    repacked oneDNN copy): multiplying by one-hot rows returns those columns exactly, since
    every other product is zero. Fused layers report the names of the checkpoint tensors
    stacked in them, in order. Skipped: quantised layers (their GEMM is not exact), layers
    of a tensor-parallel engine, and all of them for float32 on GPUs with TF32 matmuls on.
    """
    from vllm.model_executor.layers.linear import LinearBase, UnquantizedLinearMethod
    from vllm.model_executor.layers.vocab_parallel_embedding import (
        UnquantizedEmbeddingMethod,
        VocabParallelEmbedding,
    )

    from prefix_rft_pl.engines.checks import fingerprint

    model = worker.model_runner.get_model()
    fused = dict(getattr(model, "packed_modules_mapping", {}))
    rows = {f"{name}.weight": module.org_vocab_size for name, module in model.named_modules()
            if isinstance(module, VocabParallelEmbedding) and module.tp_size == 1}
    tensors = {}
    for name, param in model.named_parameters():
        if param.numel() == 0 or name.rsplit(".", 2)[-2] in fused:
            continue
        tensor = param.detach()[: rows[name]] if name in rows else param.detach()
        tensors[name] = (tuple(tensor.shape), tuple(int(x) for x in fingerprint(tensor, dtype)))
    columns = {}
    device = worker.model_runner.device
    tf32 = dtype == torch.float32 and device.type == "cuda" and torch.get_float32_matmul_precision() != "highest"
    for name, module in model.named_modules(remove_duplicate=False):
        if (tf32 or not isinstance(module, (LinearBase, VocabParallelEmbedding)) or getattr(module, "tp_size", 1) != 1
                or not isinstance(module.quant_method, (UnquantizedLinearMethod, UnquantizedEmbeddingMethod))):
            continue
        width = module.embedding_dim if isinstance(module, VocabParallelEmbedding) else module.input_size
        cols = sorted({0, width // 3, 2 * width // 3, width - 1})
        probe = torch.zeros(len(cols), width, dtype=dtype, device=device)
        probe[range(len(cols)), cols] = 1
        with torch.no_grad():
            block = module.quant_method.apply(module, probe, None).T + 0  # [N, C]; + 0 turns -0 into 0
        block = block[: rows.get(f"{name}.weight", len(block))]
        prefix, _, last = name.rpartition(".")
        parts = [f"{prefix}.{p}.weight" if prefix else f"{p}.weight" for p in fused.get(last, [last])]
        columns[f"{name}.weight"] = (parts, cols, tuple(block.shape), tuple(int(x) for x in fingerprint(block, dtype)))
    return {"tensors": tensors, "columns": columns}


def _repack_tied_lm_head(worker) -> None:
    """Runs inside each CPU worker: re-pack the output layer of a model with tied embeddings.

    On CPU the lm_head's GEMM runs on a copy packed once after loading; with tied embeddings
    the checkpoint has no lm_head weight, so a reload updates the shared embedding but never
    re-packs that copy, and the engine keeps sampling from the old output layer (seen on
    SmolLM2-135M: log-probs 0.7 off after an embedding update; tests/integration/test_smollm2.py).
    """
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

    model = worker.model_runner.model
    head = getattr(model, "lm_head", None)
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(head, "cpu_linear"):
        dispatch_cpu_unquantized_gemm(head, remove_weight=False)


def _load_weights_into_runner(worker, weights: Iterable[tuple[str, Tensor]]) -> None:
    """Runs inside each vLLM worker: write checkpoint-format tensors into the live model."""
    device = worker.model_runner.device
    worker.model_runner.model.load_weights(weights=((n, t.to(device)) for n, t in weights))
    if torch.cuda.is_available():
        torch.cuda.synchronize(device)

