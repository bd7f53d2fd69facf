"""The reproduction harness's table: per row, the mean and spread over seeds of every reported
benchmark and of the average, the published numbers beside them (SPEC 5) where the paper has
them, the learning-rate grid when there is one; as table.json, table.md and table.png.

Everything is read from the evaluations' results.json files, so the table of a run that was
interrupted and resumed is the table of one that was not.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from eval_harness.jobs import selection_score
from eval_harness.report import PUBLISHED

PAPER_ORDER_MODEL = "qwen2.5-math-7b"  # the row order the toy is compared with (SPEC 5's averages)
PALETTE = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9"]  # tab10 without its grey (the base's)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def cell(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{mean:.1f} ± {sd:.1f}" if len(values) > 1 else f"{mean:.1f}"


def kendall_tau(order_a: list[str], order_b: list[str]) -> float:
    """Kendall's tau between two orders of the same items (1: same order, -1: reversed)."""
    rank_b = {r: i for i, r in enumerate(order_b)}
    pairs = [(x, y) for i, x in enumerate(order_a) for y in order_a[i + 1:]]
    return sum(1 if rank_b[x] < rank_b[y] else -1 for x, y in pairs) / max(len(pairs), 1)


def collect(jobs, reported: tuple[str, ...], average: tuple[str, ...]) -> dict:
    """{row: {"runs": [...], "mean": {...}, "sd": {...}}} from the finished reported evaluations,
    and the learning-rate grid's selection scores."""
    rows: dict[str, dict] = {}
    grid: dict[str, dict[str, list[float]]] = {}
    for job in jobs:
        results = job.results() if job.kind == "eval" and job.meta else None
        if results is None:
            continue
        meta = job.meta
        if meta.get("select"):
            grid.setdefault(meta["row"], {}).setdefault(f"{meta['lr']:g}", []).append(selection_score(job))
            continue
        scores = {name: results[name]["score"] for name in reported}
        scores["average"] = statistics.mean(scores[name] for name in average)
        run = {"seed": meta["seed"], "lr": meta["lr"], "dir": str(job.marker.parent.parent), "scores": scores,
               "pass_at_k": {name: results[name]["pass_at_k"] for name in reported}}
        rows.setdefault(meta["row"], {"runs": []})["runs"].append(run)
    for row in rows.values():
        row["runs"].sort(key=lambda r: (r["seed"] is None, r["seed"]))
        stats = {k: mean_sd([r["scores"][k] for r in row["runs"]]) for k in row["runs"][0]["scores"]}
        row["mean"] = {k: mean for k, (mean, _) in stats.items()}
        row["sd"] = {k: sd for k, (_, sd) in stats.items()}
    return {"rows": rows, "grid": grid}


def write_table(req, jobs, spec, rows: list[str]) -> dict:
    """table.json, table.md and table.png in req.out for the model `spec` (reproduce.ModelSpec),
    its rows in the order `rows`; returns the json."""
    data = collect(jobs, spec.reported, spec.average)
    data["rows"] = {r: data["rows"][r] for r in rows if r in data["rows"]}
    published = PUBLISHED.get(spec.published or "", {})
    table = {"model": req.model, "command": req.command,
             "reported": list(spec.reported), "average_over": list(spec.average), "seeds": req.seeds,
             "steps": req.steps, "lrs": req.lrs, **data,
             "published": {r: published[r] for r in data["rows"] if r in published}}
    out = Path(req.out)
    (out / "table.json").write_text(json.dumps(table, indent=1))
    (out / "table.md").write_text(markdown(table))
    if table["rows"]:
        plot(table, out / "table.png")
    return table


def markdown(table: dict) -> str:
    names = table["reported"] + ["average"]
    paper = bool(table["published"])
    lines = [f"# {table['model']}: the paper's table", "", f"    {table['command']}", "",
             f"Cells: score in percent (avg@n or pass@1, eval harness), mean ± sample sd over seeds {table['seeds']}; "
             f"average = mean of {', '.join(table['average_over'])}." + (" Paper: SPEC 5." if paper else ""), "",
             "| row | lr | seeds | " + " | ".join(names) + (" | paper average |" if paper else " |"),
             "|---|---|---|" + "---|" * len(names) + ("---|" if paper else "")]
    for row, r in table["rows"].items():
        cells = [cell([run["scores"][n] for run in r["runs"]]) for n in names]
        lr = f"{r['runs'][0]['lr']:g}" if r["runs"][0]["lr"] is not None else "-"  # "-": the row's config
        seeds = len(r["runs"]) if r["runs"][0]["seed"] is not None else "-"
        line = f"| {row} | {lr} | {seeds} | " + " | ".join(cells) + " |"
        if paper:
            ref = table["published"].get(row, {}).get("average")
            line += f" {ref:.1f} |" if ref is not None else " - |"
        lines.append(line)
    if table["grid"]:
        lrs = sorted({lr for g in table["grid"].values() for lr in g}, key=float)
        lines += ["", "Learning-rate grid: selection score (mean ± sd over seeds); each row's chosen rate is the one "
                  "whose runs are in the table above.", "",
                  "| row | " + " | ".join(f"lr {lr}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
        for row, g in table["grid"].items():
            lines.append(f"| {row} | " + " | ".join(cell(g[lr]) if lr in g else "-" for lr in lrs) + " |")
    if not paper and len(table["rows"]) > 2:
        lines += ranking(table)
    return "\n".join(lines) + "\n"


def ranking(table: dict) -> list[str]:
    """The rows' order by average next to the paper's order (Qwen2.5-Math-7B's averages)."""
    paper = {row: numbers["average"] for row, numbers in PUBLISHED[PAPER_ORDER_MODEL].items()}
    ours = {row: r["mean"]["average"] for row, r in table["rows"].items() if row in paper}
    order = sorted(ours, key=ours.get, reverse=True)
    paper_order = sorted(ours, key=paper.get, reverse=True)
    lines = ["", f"Order of the rows (best first) against the paper's on {PAPER_ORDER_MODEL} (SPEC 5):", "",
             "| rank | here | paper |", "|---|---|---|"]
    lines += [f"| {i} | {a} ({ours[a]:.1f}) | {b} ({paper[b]:.1f}) |"
              for i, (a, b) in enumerate(zip(order, paper_order), 1)]
    return lines + ["", f"Kendall tau between the two orders: {kendall_tau(order, paper_order):.2f}."]


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, rows = table["reported"], list(table["rows"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 4.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, row in enumerate(rows):
            values = [run["scores"][name] for run in table["rows"][row]["runs"]]
            mean, sd = mean_sd(values)
            colour = "lightgrey" if row == "base" else PALETTE[i % len(PALETTE)]
            ax.bar(i, mean, color=colour, alpha=0.8)
            ax.errorbar(i, mean, yerr=sd, color="black", capsize=3)
            ax.scatter([i] * len(values), values, color="black", s=8, zorder=3)
            ref = table["published"].get(row, {}).get(name)
            if ref is not None:
                ax.scatter([i], [ref], marker="*", color="red", s=60, zorder=4)
        ax.set_xticks(range(len(rows)), rows, rotation=60, ha="right")
        ax.set_title(name)
    fig.suptitle(f"{table['model']}: score (%) per row, mean ± sd over seeds (dots: seeds"
                 + ("; red stars: paper" if table["published"] else "") + ")")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
