import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize("text", ["Q: 3741#5283\nA: 3#5=8  \\boxed{8924}", "héllo  wörld\t∑ x^2 {}\n\n"])
def test_tokenizer_round_trips_through_auto_tokenizer(tiny_model_dir, text):
    # The trainer loads tokenizers with AutoTokenizer.from_pretrained; a Qwen2 config makes
    # it pick Qwen2Tokenizer, which once dropped every space of a character vocabulary.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(ids) == len(text.encode())  # one token per byte


def test_tiny_model_loads_through_from_pretrained(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(tiny_model_dir))
    assert config.model_type == "qwen2" and config.head_dim >= 32
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert model.config.vocab_size >= 259


def test_toy_demonstrations_end_in_the_boxed_answer(toy_task_files):
    import json

    from prefix_rft_pl.toy.task import Problem

    assert Problem("3741", "#", "5283").answer == "8924"
    assert Problem("3741", "&", "5283").answer == "5423"  # 15, 14, 32, 3 mod 10
    rows = [json.loads(line) for line in toy_task_files["train"].open()]
    assert all(r["solution"].endswith("\\boxed{" + r["answer"] + "}") for r in rows)
    easy = {json.loads(line)["problem"] for line in toy_task_files["heldout_easy"].open()}
    assert not easy & {r["problem"] for r in rows}  # held-out problems are unseen
