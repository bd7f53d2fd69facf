"""The exact weight check reads what vLLM's CPU engine computes with, packed copies included.

On CPU every linear layer's weight (and the output layer's, tied or not) is repacked for
oneDNN, and the checkpoint-format parameter emptied or left unused by the GEMM. The
engine's fingerprint reads a few columns of each through the layer's own GEMM (one-hot
inputs), so a packed copy that a push did not reach shows, as it did for the output layer
of a model with tied embeddings before `_repack_tied_lm_head`.
"""

from __future__ import annotations

import pytest
import torch

from prefix_rft_pl.engines.base import SamplingConfig
from prefix_rft_pl.engines.checks import StaleWeightsError, check_engine_weights
from prefix_rft_pl.types import GenerationRequest

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
pytest.importorskip("vllm")

# the tiny Qwen2 (2 layers) on CPU: whole tensors: embeddings, 5 norms, lm_head (untied only);
# columns of qkv, o, gate_up and down in both layers, of the embedding's and of lm_head's packed GEMM
BLOCKS = {"untied": 7 + 10, "tied": 6 + 10}


@pytest.fixture(scope="module")
def tied_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny Qwen2 with tied input and output embeddings (as Qwen2.5-Math-1.5B)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tied")
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return path


def sampled_fingerprint(engine) -> dict:
    engine.generate([GenerationRequest([10, 20, 30], 4)], SamplingConfig())
    return engine.pop_weights_fingerprint()


def test_the_check_reads_the_packed_output_layer_of_a_tied_model(tied_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    import prefix_rft_pl.engines.vllm as vllm_engine
    from prefix_rft_pl.weight_sync import stream_full_tensors

    model = AutoModelForCausalLM.from_pretrained(tied_model_dir, dtype=torch.float32)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    engine = vllm_engine.VLLMEngine(str(tied_model_dir), dtype="bfloat16", max_model_len=256, kv_cache_gib=0.25,
                                    enforce_eager=True)
    try:
        assert check_engine_weights(model, sampled_fingerprint(engine), engine.dtype, step=0) == BLOCKS["tied"]
        with torch.no_grad():
            model.model.embed_tokens.weight.mul_(3.0)
        engine.update_weights(stream_full_tensors(model, engine.dtype))
        assert check_engine_weights(model, sampled_fingerprint(engine), engine.dtype, step=1) == BLOCKS["tied"]
        # the push without the re-pack of the tied output layer: the parameters are right, the GEMM is not
        monkeypatch.setattr(vllm_engine, "_repack_tied_lm_head", lambda worker: None)
        with torch.no_grad():
            model.model.embed_tokens.weight.mul_(2.0)
        engine.update_weights(stream_full_tensors(model, engine.dtype))
        with pytest.raises(StaleWeightsError,
                           match=r"at step 2 \(rank 0: lm_head\.weight columns \[0, 42, 85, 127\]\)"):
            check_engine_weights(model, sampled_fingerprint(engine), engine.dtype, step=2)
    finally:
        engine.close()
