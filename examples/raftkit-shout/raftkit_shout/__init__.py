"""raftkit-shout: an example third-party raftkit plugin with one reward, ``shout``.

Install it (``pip install -e examples/raftkit-shout``) and ``raftkit rewards`` lists ``shout``;
``raftkit align --reward shout:mode=bang`` trains with it. The entry point in pyproject.toml
(``[project.entry-points.raftkit] shout = "raftkit_shout"``) is all raftkit needs to find it.
"""

from __future__ import annotations

from typing import Any, Literal

from raftkit import hookimpl, reward
from raftkit.rewards import completion_text


@reward(name="shout", description="How loud a completion is: share of capital letters, or '!' count.")
def shout(
    completions: list[Any],
    *,
    mode: Literal["caps", "bang"] = "caps",
    max_bangs: int = 3,
    **kwargs: Any,
) -> list[float | None]:
    """Reward loud completions.

    Args:
        completions: strings, or chat messages ``[{"role": "assistant", "content": ...}]``.
        mode: ``caps`` scores the share of letters that are upper case (None for a completion with
            no cased letters, e.g. Japanese: the reward does not apply there); ``bang`` scores
            ``min(count of "!" or "！", max_bangs) / max_bangs``.
        max_bangs: how many exclamation marks earn the full reward in ``bang`` mode.

    Returns:
        one value in [0, 1] (or None) per completion.

    Example:
        >>> shout(["HELLO there", "quiet", "日本語"])
        [0.5, 0.0, None]
        >>> shout(["Wow!!", "Wow!!!!!"], mode="bang", max_bangs=4)
        [0.5, 1.0]
    """
    if max_bangs < 1:
        raise ValueError(f"shout: max_bangs must be at least 1, got {max_bangs}")
    out: list[float | None] = []
    for c in completions:
        text = completion_text(c)
        if mode == "bang":
            out.append(min(text.count("!") + text.count("！"), max_bangs) / max_bangs)
            continue
        cased = [ch for ch in text if ch.isupper() or ch.islower()]
        out.append(sum(ch.isupper() for ch in cased) / len(cased) if cased else None)
    return out


@hookimpl
def register_rewards(register):
    register(shout)
