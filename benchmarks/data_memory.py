"""Memory and time until the first training batch, on a large demonstration set.

    .venv/bin/python benchmarks/data_memory.py [--rows 50000] [--demo-tokens 8000] [--buffers 10000 1000]

Writes a jsonl of `--rows` rows whose demonstrations are ~`--demo-tokens` tokens of the toy
byte tokenizer (one token per byte, so ~8 kB each), then, in a fresh process per setting,
builds `PromptDemoDataModule` and takes one batch. Reports wall time and peak RSS until the
first batch, next to the file size: a streaming module's memory follows the shuffle buffer,
not the file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_rows(path: Path, num_rows: int, demo_tokens: int) -> None:
    """Demonstrations of about `demo_tokens` bytes: varied text, cheap to generate."""
    units = [f"Step {k}: we expand (x+{k})^2 = x^2 + {2 * k}x + {k * k} and simplify. " for k in range(97)]
    cycle = "".join(units)
    body = cycle * (demo_tokens // len(cycle) + 2)
    with path.open("w") as f:
        for i in range(num_rows):
            start = (i * 37) % len(cycle)  # a different window of the text per row
            solution = body[start:start + demo_tokens - 20] + f" \\boxed{{{i}}}"
            row = {"problem": f"Problem {i}: expand and simplify.", "solution": solution, "answer": str(i)}
            f.write(json.dumps(row) + "\n")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(data: str, tokenizer: str, buffer: int, batch_size: int) -> dict:
    """Run in a fresh process: imports first (baseline), then time and memory to the first batch."""
    sys.path.insert(0, str(ROOT))
    import lightning  # noqa: F401  (imported by any training run anyway: part of the baseline)
    import transformers  # noqa: F401

    from datamodules import PromptDemoDataModule

    base = current_rss_mib()
    start = time.perf_counter()
    dm = PromptDemoDataModule(tokenizer, train_files=data, template="qwen_math", batch_size=batch_size,
                              shuffle_buffer=buffer, max_demo_tokens=8192)
    batch = next(iter(dm.train_dataloader()))
    seconds = time.perf_counter() - start
    demo_tokens = sum(len(d) for item in batch.items for d in item.demo_ids)
    return {"buffer": buffer, "seconds": round(seconds, 2), "baseline_rss_mib": round(base, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1), "rss_after_mib": round(current_rss_mib(), 1),
            "batch_demo_tokens": demo_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--demo-tokens", type=int, default=8_000)
    parser.add_argument("--buffers", type=int, nargs="+", default=[10_000, 1_000, 0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workdir", default=None, help="where to write the data (default: a temp dir)")
    parser.add_argument("--measure", nargs=2, metavar=("DATA", "TOKENIZER"), help=argparse.SUPPRESS)
    parser.add_argument("--buffer", type=int, default=10_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure, args.buffer, args.batch_size)))
        return

    sys.path.insert(0, str(ROOT))
    from prefix_rft_pl.toy.model import save_tiny_model

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="data_memory_"))
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "big.jsonl"
    start = time.perf_counter()
    write_rows(data, args.rows, args.demo_tokens)
    tokenizer = save_tiny_model(workdir / "tiny")
    print(f"wrote {args.rows} rows, {data.stat().st_size / 2**20:.0f} MiB, in {time.perf_counter() - start:.0f} s: "
          f"{data}")
    for buffer in args.buffers:
        out = subprocess.run([sys.executable, __file__, "--measure", str(data), str(tokenizer), "--buffer", str(buffer),
                              "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"shuffle_buffer={r['buffer']:>6}: first batch of {args.batch_size} in {r['seconds']:.2f} s; "
              f"RSS {r['baseline_rss_mib']:.0f} MiB after imports -> peak {r['peak_rss_mib']:.0f} MiB "
              f"(+{r['peak_rss_mib'] - r['baseline_rss_mib']:.0f} MiB; file {data.stat().st_size / 2**20:.0f} MiB); "
              f"{r['batch_demo_tokens']} demonstration tokens in the batch")


if __name__ == "__main__":
    main()
