"""The FLOP count (PaLM appendix B) on a tiny Qwen2, by hand; the peak table; throughput."""

import pytest
import torch

from prefix_rft_pl.perf import (
    attention_width,
    matmul_params,
    measured_matmul_flops,
    peak_flops,
    step_perf,
    table_peak_tflops,
    train_flops,
)


def tiny_qwen2(tied: bool):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=24, tie_word_embeddings=tied)
    return Qwen2ForCausalLM(config)


# Hand count, hidden 16, head_dim 16/4 = 4, k/v width 2 x 4 = 8, intermediate 24, vocab 32:
#   per layer: q 16*16+16 = 272, k 16*8+8 = 136, v 136 (Qwen2: q/k/v have biases), o 16*16 = 256,
#              gate 16*24 = 384, up 384, down 24*16 = 384, two RMSNorms 2*16 = 32    -> 1984
#   2 layers 3968 + final norm 16 + lm_head 32*16 = 512                               -> N = 4496
#   (the embedding table, 32*16 = 512, is a lookup: not in N; tied, the head is still one matmul)
N = 4496


@pytest.mark.parametrize("tied", [False, True])
def test_matmul_params_of_a_tiny_qwen2(tied):
    model = tiny_qwen2(tied)
    assert sum(p.numel() for p in model.parameters()) == N + (0 if tied else 512)
    assert matmul_params(model) == N


def test_train_flops_of_a_tiny_qwen2_counts_each_rows_own_length():
    model = tiny_qwen2(False)
    layers, width = attention_width(model.config)
    assert (layers, width) == (2, 16)
    # rows of 3 and 5 tokens: 6 * 4496 * (3 + 5) = 215,808 for the weights,
    # 12 * 2 * 16 * (3^2 + 5^2) = 384 * 34 = 13,056 for attention: 228,864
    assert train_flops(matmul_params(model), layers, width, [3, 5]) == 228_864
    # padded to 5 the attention term would be 384 * 50 = 19,200: actual lengths, not the padded one
    assert train_flops(N, layers, width, [5, 5]) - 6 * N * 10 == 19_200


def test_peak_table_matches_device_names():
    assert table_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert table_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert table_peak_tflops("NVIDIA H200") == 989.0
    assert table_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert table_peak_tflops("NVIDIA L40S") == 362.0
    assert table_peak_tflops("Tesla T4") is None


def test_peak_setting_overrides_and_cpu_measure_draws_no_random_numbers():
    assert peak_flops(torch.device("cpu"), 2.5) == (2.5e12, "setting")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    peak, source = peak_flops(torch.device("cpu"))
    assert source == "measured" and peak > 1e6
    assert torch.equal(torch.get_rng_state(), state)
    assert measured_matmul_flops(size=64, repeats=2) > 0


def test_step_perf_by_hand():
    # 300 tokens in 1.5 s = 200/s; 400 tokens in 2 s = 200/s; 1e12 FLOPs / 2 s / 1e12 FLOP/s = 0.5
    assert step_perf(300, 1.5, 400, 2.0, 10**12, 1e12) == {
        "perf/gen_tokens_per_s": 200.0, "perf/tokens_per_s": 200.0, "perf/mfu": 0.5}


def test_peak_setting_is_checked_naming_its_key():
    from prefix_rft_pl.config import Update

    assert Update(peak_tflops=989.0).peak_tflops == 989.0
    with pytest.raises(ValueError, match="model.update.peak_tflops: must be > 0"):
        Update(peak_tflops=0.0)
