"""TRL's GRPO emoji example as an experiment through the Python API: RAFT on the bundled
SmolLM2-135M-Instruct with an emoji reward (a plain function: emojis counted, capped at 4) and the
built-in length reward, then the before/after evaluation on held-out questions (what `make align` runs,
about 11 minutes on 2 CPU cores).

    python examples/emoji_python_api.py
    RAFTKIT_EXAMPLE_MODEL=tiny-model/ python examples/emoji_python_api.py --tiny   # a one-iteration check
"""

import os
import sys

import emoji

import raftkit


def emoji_count(completions, *, max: int = 4, **kwargs):
    """The number of emojis in each completion, capped at `max` (a TRL reward function)."""
    return [float(min(emoji.emoji_count(raftkit.completion_text(c)), max)) for c in completions]


if __name__ == "__main__":
    # --tiny: minimal sizes, HF sampling, no answer gate (a random tiny model never says an answer).
    tiny = dict(iterations=1, prompts_per_iteration=2, k=2, max_new_tokens=4, heldout=0, sampler="hf",
                micro_batch_size=2, epochs_per_iteration=1, keep_answers=False)
    # keep_answers: a reward of your own turns the answer gate off by default (your reward decides what is
    # right); here the reward only counts emojis, and the bundled questions have answers worth keeping.
    full = dict(keep_answers=True)
    run = raftkit.align([emoji_count, "length:target=30,alpha=0.15"], algo="raft",
                        model=os.environ.get("RAFTKIT_EXAMPLE_MODEL", "default"),
                        output=os.environ.get("RAFTKIT_EXAMPLE_OUTPUT"),
                        **(tiny if "--tiny" in sys.argv else full))
    last = run.metrics[-1]
    print(f"emoji {last['rewards/emoji_count/mean']:.2f}, length {last['rewards/length/mean']:.3f}; "
          f"alarm: {run.eval.get('alarm') or 'none'}; model: {run.model_path}")
