"""The report: per-benchmark numbers and the published row beside them."""

from __future__ import annotations

import pytest

from eval_harness.config import EvalConfig
from eval_harness.report import benchmark_metrics, markdown_table, paper_row


def test_benchmark_metrics_hand_values():
    # 2 problems x 4 samples, 2 and 0 correct: avg@4 = 25%, pass@2 = (5/6 + 0) / 2, pass@4 = 50%
    m = benchmark_metrics([2, 0], [4, 4])
    assert m["metric"] == "avg@4" and m["score"] == pytest.approx(25.0)
    assert m["pass_at_k"]["2"] == pytest.approx(100 * 5 / 12) and m["pass_at_k"]["4"] == pytest.approx(50.0)


def test_benchmark_metrics_one_sample_per_problem():
    # pass@1 from one sample (the paper's protocol on MATH-500 and others): 1 of 2 correct
    m = benchmark_metrics([1, 0], [1, 1])
    assert m["metric"] == "pass@1" and m["pass_at_k"] == {"1": pytest.approx(50.0)}


def test_paper_row_for_models_the_paper_reports():
    assert paper_row(EvalConfig(ckpt="Qwen/Qwen2.5-Math-7B"), None)[1] == "base"
    family, row, numbers = paper_row(EvalConfig(ckpt="run/last.ckpt"), "Qwen/Qwen2.5-Math-7B")
    assert (family, row, numbers["aime24"]) == ("qwen2.5-math-7b", "prefix_rft", 31.8)
    assert paper_row(EvalConfig(ckpt="Qwen/Qwen2.5-Math-1.5B", paper_row="rft"), None)[2] == {"average": 30.0}
    assert paper_row(EvalConfig(ckpt="gpt2"), None) is None


def test_markdown_table_puts_the_paper_beside():
    cfg = EvalConfig(ckpt="run/last.ckpt")
    results = {"config": vars(cfg), "average": 50.0,
               "benchmarks": {"aime24": benchmark_metrics([1], [2])},
               "paper": {"model": "qwen2.5-math-7b", "row": "prefix_rft", "numbers": {"aime24": 31.8, "average": 51.8}}}
    table = markdown_table(results)
    assert "| aime24 | avg@2 | 1 | 50.0 | 31.8 |" in table
    # one benchmark of six: the paper's six-benchmark average is not printed beside it
    assert "| average of 1 (not the paper's six) | | | 50.0 | - |" in table and "missing: aime25" in table


def test_markdown_table_prints_the_papers_average_when_all_six_ran():
    from eval_harness.config import PAPER_BENCHMARKS

    cfg = EvalConfig(ckpt="run/last.ckpt")
    results = {"config": vars(cfg), "average": 50.0,
               "benchmarks": {b: benchmark_metrics([1], [2]) for b in PAPER_BENCHMARKS},
               "paper": {"model": "qwen2.5-math-7b", "row": "prefix_rft", "numbers": {"average": 51.8}}}
    assert "| average | | | 50.0 | 51.8 |" in markdown_table(results)


def test_one_k_plot_is_bars_not_a_point(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval_harness.report import draw_bars

    fig, ax = plt.subplots()
    draw_bars(ax, {"math500": benchmark_metrics([1, 0], [1, 1]), "minerva": benchmark_metrics([1], [1])})
    assert len(ax.patches) == 2 and [p.get_height() for p in ax.patches] == [50.0, 100.0]
    plt.close(fig)
