"""A toy world that needs no download: a character tokenizer, a tiny Qwen2 model and a
synthetic digit-arithmetic task with step-by-step demonstrations ending in \\boxed{}."""
