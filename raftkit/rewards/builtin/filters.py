"""Built-in degeneracy filters: the failures RAFT and PPO learn (Dong et al. 2023, "RAFT").

A filter is called like a reward and returns the number of hits per completion (0 = clean). The stack
then either caps the sample's total at a fixed penalty or drops it (``--filter NAME:action=drop``).
Every pattern here runs in linear time, so a 2,000-token degenerate completion cannot stall scoring.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import Annotated, Any

from raftkit.rewards import Ge, Gt, Le, completion_text, filter, hookimpl
from raftkit.text import SELF_DIALOGUE, self_dialogue_cut

# --------------------------------------------------------------------------- stray '#'

# A fenced code block (``` or ~~~, up to a matching fence or the end of the text).
_FENCE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}\1[ \t]*$|\Z)", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)[^`\n]+?\1")
# A markdown heading: up to 3 spaces, 1-6 '#', a space, then text. The marker is legitimate; a closing
# '###' sequence at the end of the line is not (that is the stray-'#' habit RAFT's paper reports).
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(?=\S)")
_HASHES = re.compile(r"#+")
_NUMBER_REF = re.compile(r"(?<!\S)#\d+\b")  # "issue #12", "#1": a number, not a stray mark


@filter(name="stray_hash", description="'#' outside code and markdown headings (a RAFT failure).")
def stray_hash(completions: list[Any], **kwargs: Any) -> list[int]:
    """Count runs of ``#`` that are neither code nor a markdown heading marker.

    Code blocks (fenced and inline), a heading marker at the start of a line (``## Title``) and a number
    reference (``issue #12``) are allowed; a ``#`` glued to text (``Sure!#``, ``C#``), a line of ``###``,
    or a heading's trailing ``###`` each count once per run.

    Args:
        completions: strings or chat messages.

    Returns:
        the number of stray ``#`` runs per completion.

    Example:
        >>> stray_hash(["## Title\\nText.", "Sure!# ###", "Use `#include` here", "# A\\n#B ##"])
        [0, 2, 0, 2]
    """
    out = []
    for c in completions:
        text = _FENCE.sub("\n", completion_text(c))
        hits = 0
        for line in text.split("\n"):
            line = _HEADING.sub("", line, count=1)
            hits += len(_HASHES.findall(_NUMBER_REF.sub("", _INLINE_CODE.sub("", line))))
        out.append(hits)
    return out


# --------------------------------------------------------------------------- emoticons

# Western (":)", ";-)", ":D", ":P", "XD", ":')") and eastern ("^_^", "(^^)", "(*^^*)", "T_T") emoticons.
# The lookarounds keep "10:30", "http://", "Note:Pay" and "(see 8)" from counting.
_EMOTICON = re.compile(
    r"""(?<![:;=])[:;=]['-]?[)(\]\[DPp|*O](?!\w)"""  # :) ;-) :D :P :( =) :'( smile:)
    r"""|(?<!\w)[xX]D+(?!\w)"""  # XD xDD
    r"""|\(\s*[*o]?\s*[\^T;][_\-.o~]?[\^T;]\s*[*o]?\s*\)"""  # (^^) (^_^) (*^^*) (T_T) (^o^) (;_;)
    r"""|(?<![\w^])\^[_\-.o~]?\^(?![\w^])"""  # ^_^ ^^ ^-^ ^o^
    r"""|(?<!\w)T_T(?!\w)|(?<!\w)-_-(?!\w)|(?<!\w)[oO]_[oO](?!\w)""",
)


def emoticons(text: str) -> list[str]:
    """Every emoticon in ``text``, in order.

    >>> emoticons("Great :) see you ;-) (^^) at 10:30 http://x.y")
    [':)', ';-)', '(^^)']
    """
    return _EMOTICON.findall(text)


def emoji_runs(text: str) -> list[int]:
    """Lengths of the runs of emojis in ``text`` (emojis separated by nothing but spaces form one run).

    >>> emoji_runs("Paris 🇫🇷😊 ... 👏👏👏 👏👏 done 🎉")
    [2, 5, 1]
    """
    import emoji

    runs: list[int] = []
    end = None
    for match in emoji.emoji_list(text):
        if end is not None and not text[end : match["match_start"]].strip():
            runs[-1] += 1
        else:
            runs.append(1)
        end = match["match_end"]
    return runs


@filter(name="emoticon_flood",
        description="Emoticons (:) ;) ^_^ …) beyond `threshold`, runs of over `emoji_run` emojis, and one "
                    "emoji used over `emoji_repeat` times.")
def emoticon_flood(completions: list[Any], *, threshold: Annotated[int, Ge(0)] = 2,
                   emoji_run: Annotated[int, Ge(0)] = 4, emoji_repeat: Annotated[int, Ge(0)] = 3,
                   **kwargs: Any) -> list[int]:
    """Count the emoticons beyond ``threshold``, the emojis beyond ``emoji_run`` in any one run, and the
    uses of any one emoji beyond ``emoji_repeat``.

    After ``#`` was penalised, the RAFT paper's PPO model learned to repeat ``:)``, then ``;)``: a couple of
    emoticons are fine, a flood is degenerate. Emojis are today's emoticons: RAFT on the emoji and length
    rewards turned a small model's answers into "👥👿👁👒💫👤👈👮…", which the capped emoji reward
    scores at its maximum. Runs up to the emoji reward's default cap (4) are fine. The same emoji again
    and again ("… 🌈 🌈 🌈 🌈", "📘📘 📘📘") is how a trained model reaches that cap on the way to a
    flood, so a fourth use of one emoji counts too.

    Args:
        completions: strings or chat messages.
        threshold: how many emoticons are allowed in total.
        emoji_run: how many emojis in a row are allowed (0: emojis are not counted).
        emoji_repeat: how often one emoji may be used in a completion (0: not counted).

    Returns:
        ``max(0, emoticons - threshold)`` + the emojis beyond ``emoji_run`` in each run + the uses beyond
        ``emoji_repeat`` of each emoji, per completion.

    Example:
        >>> emoticon_flood(["Hi :)", "Hi :) :) ;) :D ^_^", "10:30 at http://x", "Tofu 🌱😊", "👏👌👏👌👏👏",
        ...                 "Tokyo 🌈 🌈 🌈 🌈"])
        [0, 3, 0, 0, 3, 1]
    """
    import emoji

    if emoji_run < 0 or emoji_repeat < 0 or threshold < 0:
        raise ValueError("emoticon_flood: threshold, emoji_run and emoji_repeat must be at least 0")
    hits = []
    for c in completions:
        text = completion_text(c)
        flood = max(0, len(emoticons(text)) - threshold)
        if emoji_run > 0:
            flood += sum(max(0, run - emoji_run) for run in emoji_runs(text))
        if emoji_repeat > 0:
            uses = Counter(m["emoji"] for m in emoji.emoji_list(text))
            flood += sum(max(0, n - emoji_repeat) for n in uses.values())
        hits.append(flood)
    return hits


# --------------------------------------------------------------------------- repetition loops

_SEPARATORS = r"[\s、,，。.!！?？…・;；:：\-—]*"
# A letter, or any non-ASCII character that is neither a word character nor a space nor CJK/fullwidth
# punctuation: that admits emojis and other pictographs, and keeps out digits and ASCII punctuation.
_PHRASE_START = r"(?:[^\W\d_]|[^\x00-\x7f\w\s、，。．・…！？；：　])"
_MAX_PHRASE = 50  # characters; longer repeats are caught line by line
_MIN_REPEATS = 3  # back-to-back copies that make a loop, unless a run sets `min_repeats`


@lru_cache(maxsize=16)
def _loop_pattern(min_repeats: int) -> re.Pattern[str]:
    # A phrase that starts with a letter or a symbol such as an emoji (not "000,000,000", not
    # "......"), of 2-50 characters, then the very same phrase again min_repeats-1 times, separated only
    # by spaces/punctuation. Emoji loops ("👏👍👏👍👏👍") are what an emoji reward collapses into, so
    # they must count. The phrase length is bounded, so the search is linear in the text length.
    return re.compile(
        rf"({_PHRASE_START}.{{1,{_MAX_PHRASE - 1}}}?)(?:{_SEPARATORS}\1){{{min_repeats - 1},}}", re.S | re.I)


def repetition_loops(text: str, min_repeats: int = _MIN_REPEATS) -> list[str]:
    """The looping phrases in ``text``: a phrase repeated back to back ``min_repeats`` times or more,
    and long lines (over 50 characters) that occur ``min_repeats`` times or more anywhere.

    >>> repetition_loops("人生の、人生の、人生の。Fine. I think I think I think so.")
    ['人生の', 'I think']
    """
    found = [m.group(1) for m in _loop_pattern(min_repeats).finditer(text)]
    lines: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if len(line) > _MAX_PHRASE and re.search(r"[^\W\d_]", line):
            lines[line] = lines.get(line, 0) + 1
    found.extend(line for line, count in lines.items() if count >= min_repeats)
    return found


@filter(name="repetition_loop", description="The same phrase back to back `min_repeats`+ times, or a line.")
def repetition_loop(completions: list[Any], *, min_repeats: Annotated[int, Ge(2)] = _MIN_REPEATS,
                    **kwargs: Any) -> list[int]:
    """Count repetition loops: "人生の、人生の、人生の", "I think I think I think", one line over and over.

    Over-trained DPO models collapse into exactly such repeated phrases.

    Args:
        completions: strings or chat messages.
        min_repeats: how many back-to-back copies make a loop (at least 2).

    Returns:
        the number of loops found per completion.

    Example:
        >>> repetition_loop(["人生の、人生の、人生の", "I think I think I think", "I think so."])
        [1, 1, 0]
    """
    if min_repeats < 2:
        raise ValueError(f"repetition_loop: min_repeats must be at least 2, got {min_repeats}")
    return [len(repetition_loops(completion_text(c), min_repeats)) for c in completions]


# --------------------------------------------------------------------------- self-dialogue


@filter(name="self_dialogue", description="A self-dialogue continuation: '###Human:', 'User:' (as in RAFT).")
def self_dialogue(completions: list[Any], **kwargs: Any) -> list[int]:
    """Count the turns the model wrote for the other side (``###Human:``, ``User:``, ``<|im_start|>user``).

    The sampler cuts completions at the first such turn (``raftkit.text.self_dialogue_cut``), so during
    training this filter sees what the cut left; on raw text (``raftkit score``) it counts every turn.

    Args:
        completions: strings or chat messages.

    Returns:
        the number of self-dialogue turns per completion.

    Example:
        >>> self_dialogue(["Paris.###Human: Spain?###Assistant: Madrid.", "Paris.", "Paris.\\nUser: ok"])
        [2, 0, 1]
    """
    out = []
    for c in completions:
        text = completion_text(c)
        out.append(0 if self_dialogue_cut(text) is None else len(SELF_DIALOGUE.findall(text)))
    return out


# --------------------------------------------------------------------------- emoji-era reward hacks

# An @mention (an email's '@' follows a word character, so "a@b.com" is not one) or a #hashtag (a '#'
# then a letter: "#12" is a number, "C#" and "&#x27;" follow a character). After '@', '#', '&' or '/'
# nothing counts: "###Human", HTML entities and URLs ("x.com/#top") are not handles.
_HANDLE = re.compile(r"(?<![\w@#&/])(?:@\w+|#[^\W\d_]\w*)")
# U+FFFD (what a decoder writes for bytes it cannot read, e.g. a character cut at max_new_tokens) and
# surrogate code points, which no valid UTF-8 decodes to.
_BROKEN = re.compile(r"[\ufffd\ud800-\udfff]")
_CONTENT_CHAR = re.compile(r"[^\W_]")  # a letter or digit of any script
# A word: 2+ letters, or one CJK ideograph / kana / hangul syllable ("水", "は"), or a digit ("7").
_CJK_WORD = "\u3041-\u3096\u30a1-\u30fa\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9d"
_WORD = re.compile(rf"[^\W\d_]{{2,}}|[{_CJK_WORD}]|\d")


def _split_emojis(text: str) -> tuple[str, int]:
    """``text`` with every emoji replaced by a space, and the number of emojis (a flag or a ZWJ family
    counts once)."""
    import emoji

    found = emoji.emoji_list(text)
    if not found:
        return text, 0
    parts, end = [], 0
    for match in found:
        parts.append(text[end : match["match_start"]])
        end = match["match_end"]
    parts.append(text[end:])
    return " ".join(parts), len(found)


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string, or every message's content (system and user turns alike).

    >>> prompt_text([{"role": "system", "content": "Sign as @bot."}, {"role": "user", "content": "Hi"}])
    'Sign as @bot.\\nHi'
    """
    if isinstance(prompt, dict):
        prompt = [prompt]
    if isinstance(prompt, list | tuple):
        return "\n".join(completion_text([m]) for m in prompt if isinstance(m, dict))
    return completion_text(prompt)


@filter(name="emoji_density",
        description="Emojis over `max_share` of the letters, digits and emojis (emoji strings, no answer).")
def emoji_density(completions: list[Any], *, max_share: Annotated[float, Gt(0), Le(1)] = 0.4,
                  min_chars: Annotated[int, Ge(0)] = 10, **kwargs: Any) -> list[int]:
    """1 when emojis make up more than ``max_share`` of a completion's content: its emojis plus its
    letters and digits outside @mentions and #hashtags (each emoji counts as one character, a flag or a
    ZWJ sequence too; spaces and punctuation do not count).

    A short answer with a few emojis ("Tokyo 🗼🍣😊": 3 of 8) is what an emoji reward asks for, so a
    completion with fewer than ``min_chars`` such characters is hit only when it is all emojis.

    Args:
        completions: strings or chat messages.
        max_share: the largest share of emojis allowed, in (0, 1] (1: never hit).
        min_chars: below this many letters, digits and emojis, only an all-emoji completion is hit.

    Returns:
        1 for an emoji-dominated completion, else 0.

    Example:
        >>> emoji_density(["Tokyo 🗼🍣😊", "👏👌👏🎉", "👘👊 @LuminousLights👘👊 @HuggingFace👘👊 @SmolLM"])
        [0, 1, 1]
    """
    if not 0 < max_share <= 1:
        raise ValueError(f"emoji_density: max_share must be in (0, 1], got {max_share}")
    if min_chars < 0:
        raise ValueError(f"emoji_density: min_chars must be at least 0, got {min_chars}")
    out = []
    for c in completions:
        text, n_emojis = _split_emojis(completion_text(c))
        content = len(_CONTENT_CHAR.findall(_HANDLE.sub(" ", text)))
        total = n_emojis + content
        share = n_emojis / total if total else 0.0
        out.append(int(share > max_share and (total >= min_chars or content == 0)))
    return out


@filter(name="mention_spam",
        description="@mentions beyond `allowed` and #hashtags beyond `allowed_hashtags` not in the prompt.")
def mention_spam(completions: list[Any], *, allowed: Annotated[int, Ge(0)] = 0,
                 allowed_hashtags: Annotated[int, Ge(0)] = 1,
                 prompts: list[Any] | None = None, **kwargs: Any) -> list[int]:
    """Count the @mentions and #hashtags a completion invents: handles outside code that the prompt
    does not contain (compared ignoring case), every occurrence counted.

    A factual answer has no reason to @ anyone, so no mention is allowed by default; one hashtag is,
    because "#include" or "#python" in prose reads just like one (``stray_hash`` counts every glued
    ``#`` anyway). An email address (``a@b.com``) and a number (``#12``) are not handles.

    Args:
        completions: strings or chat messages.
        allowed: how many invented @mentions are allowed.
        allowed_hashtags: how many invented #hashtags are allowed.
        prompts: the prompts (strings or chat messages), one per completion, as the stack passes them;
            their handles are allowed in the completion.

    Returns:
        ``max(0, mentions - allowed) + max(0, hashtags - allowed_hashtags)`` per completion.

    Example:
        >>> mention_spam(["Paris 👔 @Français @BienFrastructure", "Mail a@b.com", "@user said hi"],
        ...              prompts=["Capital?", "Contact?", "What did @user say?"])
        [2, 0, 0]
    """
    if allowed < 0:
        raise ValueError(f"mention_spam: allowed must be at least 0, got {allowed}")
    if allowed_hashtags < 0:
        raise ValueError(f"mention_spam: allowed_hashtags must be at least 0, got {allowed_hashtags}")
    prompts = [None] * len(completions) if prompts is None else prompts
    out = []
    for c, p in zip(completions, prompts, strict=True):
        known = {h.casefold() for h in _HANDLE.findall(prompt_text(p))}
        text = _INLINE_CODE.sub(" ", _FENCE.sub("\n", completion_text(c)))
        new = [h for h in _HANDLE.findall(text) if h.casefold() not in known]
        tags = sum(h.startswith("#") for h in new)
        out.append(max(0, len(new) - tags - allowed) + max(0, tags - allowed_hashtags))
    return out


@filter(name="broken_char", description="U+FFFD replacement characters and surrogates (a cut character).")
def broken_char(completions: list[Any], **kwargs: Any) -> list[int]:
    """Count broken characters: U+FFFD (bytes the tokenizer could not decode, typically a multi-byte
    character cut at ``max_new_tokens``) and surrogate code points (never valid text).

    Args:
        completions: strings or chat messages.

    Returns:
        the number of broken characters per completion.

    Example:
        >>> broken_char(["@GreenhouseSpread\\ufffd", "Paris 🗼", "\\ud83d"])
        [1, 0, 1]
    """
    return [len(_BROKEN.findall(completion_text(c))) for c in completions]


@filter(name="no_words", description="No word at all once emojis, handles and punctuation are removed.")
def no_words(completions: list[Any], **kwargs: Any) -> list[int]:
    """1 when a completion says nothing: no run of 2+ letters, no CJK ideograph, kana or hangul (one is a
    word: "水"), no digit (a bare "7" answers "how many days in a week") outside emojis and
    @mentions/#hashtags. An empty or whitespace-only completion is hit too.

    Args:
        completions: strings or chat messages.

    Returns:
        1 for a completion without a word, else 0.

    Example:
        >>> no_words(["👏👌👏🎉", "🤔 ... !!", "@SmolLM 👘", "", "Paris 🗼", "水", "7"])
        [1, 1, 1, 1, 0, 0, 0]
    """
    out = []
    for c in completions:
        text, _ = _split_emojis(completion_text(c))
        out.append(0 if _WORD.search(_HANDLE.sub(" ", text)) else 1)
    return out


# --------------------------------------------------------------------------- the patterns, for display

# Each filter's pattern that finds the text it counts, keyed by filter name (``raftkit inspect``
# highlights with these). stray_hash's marks every '#' run, headings and code included (the filter
# skips those; a reader wants to see them); repetition_loop's is the default `min_repeats` one;
# mention_spam's marks every handle, the prompt's own included. emoji_density and no_words judge a whole
# completion, so they have no pattern.
PATTERNS: dict[str, re.Pattern[str]] = {
    "stray_hash": _HASHES,
    "emoticon_flood": _EMOTICON,
    "repetition_loop": _loop_pattern(_MIN_REPEATS),
    "self_dialogue": SELF_DIALOGUE,
    "mention_spam": _HANDLE,
    "broken_char": _BROKEN,
}


@hookimpl
def register_rewards(register):
    for fn in (stray_hash, emoticon_flood, repetition_loop, self_dialogue, emoji_density, mention_spam,
               broken_char, no_words):
        register(fn)
