"""Metrics from the samples on disk, and the three outputs: results.json (numbers and the
whole configuration), results.md (a table, with the paper's published row beside it when
the model is one the paper reports) and pass_at_k.png (pass@k curves)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from eval_harness.benchmarks import benchmark_name, load_benchmark
from eval_harness.config import PAPER_BENCHMARKS, EvalConfig
from eval_harness.metrics import AvgAtK, PassAtK, powers_of_two
from eval_harness.store import SampleStore

# SPEC 5: Qwen2.5-Math-7B (six-benchmark average; per benchmark only for Prefix-RFT) and 1.5B.
PUBLISHED = {
    "qwen2.5-math-7b": {
        "base": {"average": 19.0}, "sft": {"average": 44.1}, "rft": {"average": 45.5},
        "sft_rft": {"average": 48.2}, "rl_sft_loss": {"average": 40.1}, "luffy": {"average": 50.1},
        "relift": {"average": 47.8}, "uft": {"average": 44.2},
        "prefix_rft": {"aime24": 31.8, "aime25": 26.4, "amc": 68.2, "math500": 88.4, "minerva": 40.3,
                       "olympiadbench": 55.7, "average": 51.8},
    },
    "qwen2.5-math-1.5b": {"sft": {"average": 31.9}, "rft": {"average": 30.0}, "prefix_rft": {"average": 41.1}},
}


def benchmark_metrics(correct: list[int], samples: list[int]) -> dict:
    """avg@n, pass@1 and the pass@k curve at every power of two up to n, in percent."""
    c, n = torch.tensor(correct), torch.tensor(samples)
    avg = AvgAtK()
    avg.update(c, n)
    ks = powers_of_two(min(samples))
    curve = PassAtK(ks)
    curve.update(c, n)
    values = curve.compute().reshape(-1).tolist()  # torchmetrics squeezes a one-k result to a scalar
    return {
        "num_problems": len(correct),
        "num_samples": min(samples),
        "score": 100 * avg.compute().item(),
        "metric": f"avg@{min(samples)}" if min(samples) > 1 else "pass@1",
        "pass_at_k": {str(k): 100 * v for k, v in zip(ks, values)},
    }


def paper_row(cfg: EvalConfig, base: str | None) -> tuple[str, str, dict] | None:
    """(model family, row name, numbers) of the published row for this model, if any."""
    names = f"{cfg.ckpt} {base or ''}".lower()
    for family in sorted(PUBLISHED, key=len, reverse=True):
        if family in names:
            row = cfg.paper_row or ("prefix_rft" if base else "base")
            numbers = PUBLISHED[family].get(row)
            return (family, row, numbers) if numbers else None
    return None


def write_report(cfg: EvalConfig, out: Path, base: str | None = None) -> dict:
    per_benchmark = {}
    for spec in cfg.benchmarks:
        name = benchmark_name(spec)
        num_problems = len(load_benchmark(spec, cfg.data_dir)[: cfg.limit])
        store = SampleStore(out, name)
        correct, samples = store.counts(num_problems, cfg.samples_for(name))
        per_benchmark[name] = benchmark_metrics(correct, samples) | {"grading": store.status_counts()}
    scores = [m["score"] for m in per_benchmark.values()]
    results = {
        "config": asdict(cfg),
        "base_model": base,
        "benchmarks": per_benchmark,
        "average": sum(scores) / len(scores),
    }
    published = paper_row(cfg, base)
    if published:
        results["paper"] = {"model": published[0], "row": published[1], "numbers": published[2]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown_table(results))
    plot_curves(per_benchmark, out / "pass_at_k.png")
    return results


def markdown_table(results: dict) -> str:
    paper = results.get("paper")
    header = "| benchmark | metric | problems | score |" + (" paper |" if paper else "")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, m in results["benchmarks"].items():
        row = f"| {name} | {m['metric']} | {m['num_problems']} | {m['score']:.1f} |"
        if paper:
            ref = paper["numbers"].get(name)
            row += f" {ref:.1f} |" if ref is not None else " - |"
        lines.append(row)
    names = list(results["benchmarks"])
    all_six = set(PAPER_BENCHMARKS) <= set(names)
    label = "average" if all_six or not paper else f"average of {len(names)} (not the paper's six)"
    avg = f"| {label} | | | {results['average']:.1f} |"
    if paper:
        ref = paper["numbers"].get("average") if all_six else None
        avg += f" {ref:.1f} |" if ref is not None else " - |"
    lines.append(avg)
    cfg = results["config"]
    engine = cfg["engine"].get("kind") if isinstance(cfg["engine"], dict) else cfg["engine"]
    notes = [f"\nModel: `{cfg['ckpt']}`; temperature {cfg['temperature']}, top_p {cfg['top_p']}, "
             f"max_new_tokens {cfg['max_new_tokens']}, template {cfg['template']}, engine {engine}, "
             f"seed {cfg['seed']}."]
    if paper:
        missing = [b for b in PAPER_BENCHMARKS if b not in results["benchmarks"]]
        notes.append(f"Paper column: published `{paper['row']}` row for {paper['model']} (SPEC 5). "
                     + ("Both averages are over the paper's six benchmarks." if not missing else
                        f"The paper's average is over six benchmarks; this run has {len(names)} of them "
                        f"(missing: {', '.join(missing)}), so it is not printed beside this run's average."))
    return "\n".join(lines + notes) + "\n"


def plot_curves(per_benchmark: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    if max(len(m["pass_at_k"]) for m in per_benchmark.values()) == 1:
        draw_bars(ax, per_benchmark)  # one k (one sample per problem): a curve would be one point
    else:
        for name, m in per_benchmark.items():
            ks = [int(k) for k in m["pass_at_k"]]
            ax.plot(ks, list(m["pass_at_k"].values()), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.legend()
    ax.set_ylabel("pass@k (%)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_bars(ax, per_benchmark: dict) -> None:
    """One bar per benchmark, labelled with its value and metric: what one k can show."""
    names = list(per_benchmark)
    values = [next(iter(m["pass_at_k"].values())) for m in per_benchmark.values()]
    bars = ax.bar(names, values)
    ax.bar_label(bars, labels=[f"{v:.1f}" for v in values])
    k = next(iter(per_benchmark[names[0]]["pass_at_k"]))
    ax.set_title(f"pass@{k} (one k: no curve to draw)")
    ax.set_ylim(0, 100)
