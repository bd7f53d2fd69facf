"""The evaluation protocol: the paper's as defaults (SPEC 4), every field overridable from
the command line or a YAML file, and all of it recorded in results.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from prefix_rft_pl.config import Engine

PAPER_BENCHMARKS = ["aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"]


@dataclass
class EvalConfig:
    ckpt: str
    """HF model directory or hub id, Lightning .ckpt of this framework, or an FSDP2 sharded checkpoint directory."""
    benchmarks: list[str] = field(default_factory=lambda: list(PAPER_BENCHMARKS))
    """Registry names (aime24, aime25, amc, amc23, math500, minerva, olympiadbench), .jsonl paths, or a
    veRL parquet path (one benchmark per data_source)."""
    data_dir: str | None = None
    """Folder with <benchmark>.jsonl files ({id, problem, answer: [...]}); the hub otherwise."""
    out: str = "eval_out"
    """Output folder: samples_<benchmark>.jsonl, results.json, results.md, pass_at_k.png."""

    # -- protocol (SPEC 4) ---------------------------------------------------------------
    num_samples: dict[str, int] = field(default_factory=lambda: {"aime24": 32, "aime25": 32, "amc": 32})
    """Samples per problem by benchmark (paper: avg@32 on AIME24, AIME25, AMC)."""
    default_num_samples: int = 1
    """Samples per problem elsewhere (paper: pass@1 from one sample)."""
    temperature: float = 0.6
    top_p: float = 1.0
    """Paper: 1.0 (0.95 is common elsewhere)."""
    top_k: int = -1
    max_new_tokens: int = 8192
    """Paper: 8,192 (2,048 for LLaMA-3.1-8B)."""
    template: str = "auto"
    """auto (the tokenizer's chat template if it has one, else plain), chat, plain, qwen_math, llama3.1, toy,
    or a string with {problem}."""
    seed: int = 0
    """Sampling seed; every chunk of requests draws from its own seed derived from it."""

    # -- generation ----------------------------------------------------------------------
    engine: Engine = field(default_factory=lambda: Engine(kind="vllm", gpu_memory_utilization=0.9))
    """The engine settings group, as in training (`--engine.kind hf`, `--engine.kv_cache_gib 1`, ...): vllm,
    or hf (transformers generate, the fallback); here vLLM may take 90% of the GPU."""
    chunk_size: int = 256
    """Requests (problem x sample) per engine call; samples are written after each chunk (the hf engine
    generates a chunk in one batch)."""
    data_parallel_size: int = 1
    """Engines, one process each (engine.tensor_parallel_size GPUs apiece, or on CPU), dealt the missing chunks
    round-robin."""

    # -- grading -------------------------------------------------------------------------
    grading_workers: int = 2
    grading_timeout_s: float = 5.0
    """Hard bound on the grading time of one answer."""
    paper_row: str | None = None
    """Published row to print beside the results (base, prefix_rft, ...); None: guessed from the checkpoint."""
    limit: int | None = None
    """Only the first N problems of each benchmark (smoke tests)."""
    skip_long_prompts: bool = False
    """Problems whose prompt + max_new_tokens exceed the model's context: False stops before any
    generation with an error naming them; True skips them (scored 0, counted as grading status
    prompt_too_long in results.json)."""

    def __post_init__(self):
        from eval_harness.benchmarks import expand_benchmarks

        if isinstance(self.engine, dict):  # from a results.json / shard spec (asdict)
            self.engine = Engine(**self.engine)
        if self.engine.max_batch_size not in (Engine().max_batch_size, self.chunk_size):
            raise ValueError(f"engine.max_batch_size {self.engine.max_batch_size}: the eval harness generates one "
                             f"chunk per engine call; set chunk_size instead")
        self.benchmarks = expand_benchmarks(self.benchmarks)  # a parquet: one benchmark per data_source

    def samples_for(self, benchmark: str) -> int:
        return self.num_samples.get(benchmark, self.default_num_samples)

    def protocol(self) -> dict:
        """The fields that determine the numbers: a resumed run must match them."""
        return protocol_of(asdict(self))


def protocol_of(config: dict) -> dict:
    """The protocol of an EvalConfig given as a dict (as results.json stores it): the fields that
    determine the numbers, the engine as its kind and dtype."""
    keys = ("num_samples", "default_num_samples", "temperature", "top_p", "top_k", "max_new_tokens",
            "template", "seed", "chunk_size", "ckpt", "limit")
    engine = config.get("engine") or {}
    if not isinstance(engine, dict):  # already a protocol (or a results.json from before the engine group)
        engine = {"kind": engine, "dtype": config.get("dtype")}
    fields = {k: v for k, v in config.items() if k in keys}
    return {**fields, "engine": engine.get("kind"), "dtype": engine.get("dtype")}


# The flat engine options before the engine group, and their new names.
MOVED_OPTIONS = {"dtype": "engine.dtype", "max_model_len": "engine.max_model_len",
                 "gpu_memory_utilization": "engine.gpu_memory_utilization", "kv_cache_gib": "engine.kv_cache_gib",
                 "enforce_eager": "engine.enforce_eager", "tensor_parallel_size": "engine.tensor_parallel_size",
                 "device": "engine.device"}
