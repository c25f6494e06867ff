"""Reward functions written for TRL's GRPOTrainer (from its documentation), used by raftkit unchanged:
nothing in them knows raftkit.

    raftkit score --reward examples/trl_reward_file.py:reward_len --input samples.jsonl
    raftkit align --reward examples/trl_reward_file.py:format_reward_func --reward emoji
    python examples/trl_reward_file.py       # the same functions through the Python API

`reward_len` is for plain-text prompts (string completions); `format_reward_func` for chat prompts, such
as raftkit's bundled ones (each completion is a list of assistant messages), as TRL defines the formats.
"""

import re


def reward_len(completions, **kwargs):
    return [-abs(20 - len(completion)) for completion in completions]


def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]


if __name__ == "__main__":
    import raftkit

    chat = [{"role": "user", "content": "What is 2 + 2?"}]
    rows = raftkit.score([chat, chat], ["<think>2 + 2 = 4</think><answer>4</answer>", "4"],
                         rewards=[format_reward_func])
    print([row["format_reward_func"] for row in rows])  # [1.0, 0.0]
    print(raftkit.score(["Hi"], ["Hello there!"], rewards=[reward_len])[0]["reward_len"])  # -8
