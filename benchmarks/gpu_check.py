"""The GPU check: three measurements on one CUDA GPU, in a few minutes, without network.

    python benchmarks/gpu_check.py            # on a GPU machine; without a GPU it says so and exits 0
    python benchmarks/gpu_check.py --tiny     # the same code paths at tiny sizes on CPU (under a minute)

(a) the toy fit (Prefix-RFT, HF engine) on the GPU with float32 master weights and bf16 compute
    (trainer.precision bf16-mixed): step time, its phase split (time/*_s) and perf/*;
(b) peak memory of the chunked token log-probs against the naive float32 log_softmax at
    V = 151,936 and 8,192 tokens (benchmarks/logprob_memory.py, forward + backward);
(c) the update's MFU on a randomly initialised Qwen2 shaped like Qwen2.5-0.5B at 4,096 tokens:
    forward + backward through the chunked log-probs and an AdamW step, FLOPs by
    prefix_rft_pl.perf.train_flops (PaLM), peak by prefix_rft_pl.perf.peak_flops.

The objects are built in Python, not through the CLI, so the machine needs no omegaconf or
datasets. What it lacks of the rest (jsonargparse, math-verify and its parser) is installed from
wheels/gpu (benchmarks/gpu_wheels.txt, downloaded by scripts/gpu_wheels.sh) with pip --no-index.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_GPU = "gpu_check: no CUDA GPU on this machine; nothing measured (run with --tiny for the CPU smoke run)"


def install_wheels() -> None:
    """pip install --no-index the listed wheels whose module is missing (wheels/gpu)."""
    modules = {"jsonargparse": "jsonargparse", "math-verify": "math_verify",
               "latex2sympy2_extended": "latex2sympy2_extended", "antlr4-python3-runtime": "antlr4"}
    wanted = [line.strip() for line in (ROOT / "benchmarks" / "gpu_wheels.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    missing = [req for req in wanted if importlib.util.find_spec(modules[req.split("==")[0]]) is None]
    if missing:
        print(f"installing from wheels/gpu: {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--find-links", str(ROOT / "wheels" / "gpu"), *missing], check=True)


def toy_fit(device: str, tiny: bool, work: Path) -> None:
    """(a) The toy Prefix-RFT fit, float32 masters with bf16 autocast, HF engine."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from datamodules import PromptDemoDataModule
    from prefix_rft_pl.config import Optim, Rollout, Update
    from prefix_rft_pl.module import PrefixRFTModule
    from prefix_rft_pl.prefix_schedule import PrefixSchedule
    from prefix_rft_pl.toy.model import save_tiny_model
    from prefix_rft_pl.toy.task import build_task

    steps, batch, group = (2, 2, 4) if tiny else (10, 16, 8)
    task = build_task(work / "task", num_train=64 if tiny else 2000, num_heldout=8)
    policy = str(save_tiny_model(work / "init"))
    module = PrefixRFTModule(policy=policy, rollout=Rollout(group_size=group, num_hybrid=1, max_response_tokens=40),
                             update=Update(micro_batch_size=64, skip_rows_without_gradient=False),
                             optim=Optim(lr=1e-4))  # every row through the update: a random policy's rewards are 0
    data = PromptDemoDataModule(tokenizer=policy, train_files=str(task["train"]), template="toy", layout="plain",
                                batch_size=batch)
    step_times: list[float] = []  # wall time of each training step

    class StepTimer(L.Callback):
        def on_train_batch_start(self, *args) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            step_times.append(time.perf_counter() - self.start)

    trainer = L.Trainer(accelerator=device, devices=1, precision="bf16-mixed", max_steps=steps, limit_val_batches=0,
                        log_every_n_steps=1, logger=CSVLogger(str(work), name="fit"), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[PrefixSchedule(steps=steps), StepTimer()])
    trainer.fit(module, datamodule=data)
    rows = [r for r in csv.DictReader(open(Path(trainer.logger.log_dir) / "metrics.csv")) if r.get("time/update_s")]
    later = rows[1:] or rows  # the first step compiles kernels and warms the allocator
    mean = lambda key: sum(float(r[key]) for r in later) / len(later)
    timed = step_times[1:] or step_times
    print(f"(a) toy fit on {device}: {steps} steps of {batch} prompts x {group} rollouts, float32 masters, "
          f"bf16-mixed; step time {sum(timed) / len(timed):.3f} s (mean over steps after the first)")
    phases = ("rollout", "reward", "logprob", "update")
    print("    phases (s): " + "  ".join(f"{p} {mean(f'time/{p}_s'):.3f}" for p in phases))
    print("    perf: " + "  ".join(f"{k} {mean(k):.4g}" for k in ("perf/gen_tokens_per_s", "perf/tokens_per_s",
                                                               "perf/mfu")))


def logprob_memory(tiny: bool) -> None:
    """(b) Chunked against naive log-probs: benchmarks/logprob_memory.py in its own processes."""
    sizes = ["--vocab=1024", "--tokens=256", "--hidden=64"] if tiny else ["--vocab=151936", "--tokens=8192",
                                                                            "--hidden=896"]
    print(f"(b) token log-probs, forward + backward ({' '.join(sizes)}, bfloat16):", flush=True)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "logprob_memory.py"), *sizes, "--dtype=bfloat16"],
                   check=True)


def update_mfu(device: str, tiny: bool) -> None:
    """(c) MFU of the update on a random Qwen2 (Qwen2.5-0.5B's shape) at 4,096 tokens."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from prefix_rft_pl.perf import attention_width, matmul_params, peak_flops, train_flops
    from prefix_rft_pl.update.logprobs import logprobs_from_model

    if tiny:
        config = Qwen2Config(vocab_size=1024, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=True)
        rows, tokens, repeats = 1, 256, 2
    else:  # Qwen2.5-0.5B: 494M parameters, tied embeddings
        config = Qwen2Config(vocab_size=151_936, hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                             num_key_value_heads=2, intermediate_size=4864, tie_word_embeddings=True,
                             max_position_embeddings=32_768)
        rows, tokens, repeats = 1, 4096, 5
    with torch.device(device):
        model = Qwen2ForCausalLM(config).train()  # float32 masters
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (rows, tokens + 1), generator=gen).to(device)
    mask = torch.ones(rows, tokens, dtype=torch.long, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def update() -> None:
        with torch.autocast(device, dtype=torch.bfloat16):
            logprobs, _ = logprobs_from_model(model, ids[:, :-1], mask, None, ids[:, 1:], with_entropy=False)
        (-logprobs.mean()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    update()  # warm-up
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        update()
    sync()
    seconds = (time.perf_counter() - start) / repeats
    flops = train_flops(matmul_params(model), *attention_width(config), [tokens] * rows)
    peak, source = peak_flops(torch.device(device))
    print(f"(c) update MFU: Qwen2 {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters "
          f"(N = {matmul_params(model) / 1e6:.1f}M in matmuls), {rows} x {tokens} tokens, float32 masters, bf16 "
          f"autocast: {seconds:.3f} s per update, {flops / 1e12:.3f} TFLOP, {flops / seconds / 1e12:.1f} TFLOP/s, "
          f"peak {peak / 1e12:.1f} TFLOP/s ({source}): MFU {flops / seconds / peak:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on CPU: a smoke run of the code paths")
    args = parser.parse_args()
    import torch

    if not args.tiny and not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda":
        print(f"gpu_check on {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    install_wheels()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        toy_fit(device, args.tiny, Path(tmp))
    logprob_memory(args.tiny)
    update_mfu(device, args.tiny)
    print(f"gpu_check done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
