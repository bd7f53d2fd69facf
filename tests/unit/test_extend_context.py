"""The context-extended copy of a model (prefix_rft_pl/extend_context.py): transformers and the
model read the new context and RoPE base, the weights are the source's, a prompt + budget over
the source's context fits the copy, and the copy is written once (again: a no-op; other values,
or a folder it did not write: refused)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from prefix_rft_pl.context import model_context, over_context
from prefix_rft_pl.extend_context import ContextExtension, extend_context, extended_config, rope_theta_of


def hub_layout(model_dir, tmp_path):
    """The model with config.json as Qwen2.5-Math's on the hub spells it (transformers 4: a
    top-level `rope_theta`, no `rope_parameters`); weights and tokenizer linked."""
    folder = tmp_path / "hub_layout"
    folder.mkdir()
    for item in model_dir.iterdir():
        (folder / item.name).symlink_to(item.resolve())
    config = json.loads((model_dir / "config.json").read_text())
    config["rope_theta"] = config.pop("rope_parameters")["rope_theta"]
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("layout", ["transformers5", "hub"])
def test_the_copy_has_the_new_context_in_transformers_and_in_the_model(layout, tiny_model_dir, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    if layout == "hub":
        tiny_model_dir = hub_layout(tiny_model_dir, tmp_path)
    source = AutoConfig.from_pretrained(tiny_model_dir)
    ext = ContextExtension(4 * source.max_position_embeddings, 4 * rope_theta_of(source))
    out = extend_context(str(tiny_model_dir), tmp_path / "copy", ext)
    config = AutoConfig.from_pretrained(out)
    assert model_context(config) == ext.max_position_embeddings and rope_theta_of(config) == ext.rope_theta
    # the source's context stops a prompt + budget that the copy takes
    assert over_context([100], source.max_position_embeddings, model_context(source)) == [0]
    assert over_context([100], source.max_position_embeddings, model_context(config)) == []

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    extended = AutoModelForCausalLM.from_pretrained(out)
    head_dim = config.hidden_size // config.num_attention_heads
    expected = 1.0 / ext.rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    torch.testing.assert_close(extended.model.rotary_emb.inv_freq, expected)  # the RoPE the model computes
    for (name, a), (_, b) in zip(original.state_dict().items(), extended.state_dict().items()):
        assert torch.equal(a, b), name  # the same weights (linked)
    assert all((out / p.name).is_symlink() for p in tiny_model_dir.iterdir() if p.name != "config.json")
    assert ("rope_theta" in json.loads((out / "config.json").read_text())) == (layout == "hub")
    record = json.loads((out / "prepared.json").read_text())
    assert record["before"] == {"max_position_embeddings": source.max_position_embeddings,
                                "rope_theta": rope_theta_of(source)}


def test_written_once_and_refused_over_another_preparation_or_a_foreign_folder(tiny_model_dir, tmp_path, capsys):
    ext = ContextExtension(16384, 40000.0)
    out = extend_context(str(tiny_model_dir), tmp_path / "copy", ext)
    stamp = (out / "prepared.json").stat().st_mtime_ns
    extend_context(str(tiny_model_dir), out, ext)  # the same: a no-op
    assert "already prepared" in capsys.readouterr().out and (out / "prepared.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="holds another preparation"):
        extend_context(str(tiny_model_dir), out, ContextExtension(16384, 1e6))
    (tmp_path / "foreign").mkdir()
    with pytest.raises(FileExistsError, match="without prepared.json"):
        extend_context(str(tiny_model_dir), tmp_path / "foreign", ext)
    assert not (tmp_path / "copy.partial").exists()


def test_copy_mode_and_a_cut_short_attempt(tiny_model_dir, tmp_path):
    (tmp_path / "copy.partial").mkdir()
    (tmp_path / "copy.partial" / "junk").write_text("from a killed attempt")
    out = extend_context(str(tiny_model_dir), tmp_path / "copy", ContextExtension(16384, 40000.0), copy=True)
    assert not (out / "junk").exists() and not (tmp_path / "copy.partial").exists()
    assert not any(p.is_symlink() for p in out.iterdir())


def test_the_rope_base_goes_where_the_file_keeps_it():
    ext = ContextExtension(16384, 40000.0)
    legacy = extended_config({"max_position_embeddings": 4096, "rope_theta": 10000.0}, ext)
    assert legacy == {"max_position_embeddings": 16384, "rope_theta": 40000.0}
    v5 = extended_config({"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default",
                                                                               "rope_theta": 10000.0}}, ext)
    assert v5 == {"max_position_embeddings": 16384, "rope_parameters": {"rope_type": "default", "rope_theta": 40000.0}}


def test_the_command_names_a_bad_source_and_bad_values(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "prefix_rft_pl.extend_context", *args], capture_output=True,
                              text=True, timeout=120)

    missing = run(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    assert missing.returncode != 0 and "not a model folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run(str(tmp_path / "empty"), str(tmp_path / "out"))
    assert empty.returncode != 0 and "no config.json" in empty.stderr
    with pytest.raises(ValueError, match="rope_theta must be > 0"):
        ContextExtension(16384, 0.0)
