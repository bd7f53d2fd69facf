"""Flip a sign (or an operator) in each pure loss/prefix/schedule function and check that its
unit tests fail. Prints one line per mutation; exits 1 if a mutation survives.

    .venv/bin/python scripts/flip_signs.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOSSES, TEST_LOSSES = "prefix_rft_pl/losses.py", "tests/unit/test_losses.py"
PREFIX, TEST_PREFIX = "prefix_rft_pl/prefix.py", "tests/unit/test_prefix.py"
MUTATIONS = [  # (file, original, mutated, tests)
    (LOSSES, "advantages = rewards - mean", "advantages = mean - rewards", TEST_LOSSES),
    (LOSSES, "unclipped = -advantages * ratio", "unclipped = advantages * ratio", TEST_LOSSES),
    (LOSSES, "loss = torch.maximum(unclipped, clipped)", "loss = torch.minimum(unclipped, clipped)", TEST_LOSSES),
    (LOSSES, "capped = torch.minimum(loss, -dual_clip * advantages)",
     "capped = torch.minimum(loss, dual_clip * advantages)", TEST_LOSSES),
    (LOSSES, "return -advantages * (prob / (prob + gamma)) * mask",
     "return advantages * (prob / (prob + gamma)) * mask", TEST_LOSSES),
    (LOSSES, "return -weight * logprobs * mask", "return weight * logprobs * mask", TEST_LOSSES),
    (LOSSES, "return per_token.sum() / (num_sequences * max_response_tokens)",
     "return per_token.sum() / (num_sequences + max_response_tokens)", TEST_LOSSES),
    (PREFIX, "length = math.floor(prefix_ratio * demo_len)", "length = math.ceil(prefix_ratio * demo_len)",
     TEST_PREFIX),
    (PREFIX, 'descending=(mode == "top")', 'descending=(mode != "top")', TEST_PREFIX),
    (PREFIX, "max(0, round(keep_ratio * num_prefix_tokens))", "max(0, round((1 - keep_ratio) * num_prefix_tokens))",
     TEST_PREFIX),
    (PREFIX, "requests.append(GenerationRequest(item.prompt_ids, budget, demo[:length], 1))",
     "requests.append(GenerationRequest(item.prompt_ids, budget, demo[:length + 1], 1))", TEST_PREFIX),
    ("prefix_rft_pl/schedule.py", "(1 + math.cos(math.pi * _progress(step, steps, delay)))",
     "(1 - math.cos(math.pi * _progress(step, steps, delay)))", "tests/unit/test_schedule.py"),
]


def main() -> int:
    survivors = 0
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for path, old, new, tests in MUTATIONS:
        with tempfile.TemporaryDirectory() as tmp:
            for f in files:
                if (ROOT / f).is_file():
                    (Path(tmp) / f).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / f, Path(tmp) / f)
            target = Path(tmp) / path
            source = target.read_text()
            assert old in source, f"{path}: {old!r} not found"
            target.write_text(source.replace(old, new))
            out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", tests], cwd=tmp,
                                 capture_output=True, text=True, env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"})
            caught = out.returncode == 1
            survivors += not caught
            print(f"{'caught ' if caught else 'SURVIVED'} {path}: {old!r} -> {new!r}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
