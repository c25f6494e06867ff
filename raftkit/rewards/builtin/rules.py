"""Built-in rule rewards: cheap functions of the completion text (every prompt is sampled k times).

Each is a TRL reward function: ``fn(prompts, completions, **kwargs) -> list[float]``, with completions as
strings or chat messages. Its keyword-only arguments are its parameters (``--reward length:target=50``).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from typing import Annotated, Any, Literal

import emoji as emoji_lib

from raftkit.rewards import Ge, completion_text, hookimpl, reward
from raftkit.text import distinct_n


def check_regex(pattern: str) -> None:
    """Reject a pattern that does not compile, when the reward is configured rather than mid-run."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"not a regular expression ({e})") from None


Regex = Annotated[str, check_regex]


@reward(name="emoji", description="Number of emojis, capped at `max` (TRL's GRPO emoji example).")
def emoji(completions: list[Any], *, max: Annotated[int, Ge(0)] = 4, **kwargs: Any) -> list[float]:
    """Count the emojis in each completion, capped at ``max``.

    Args:
        completions: strings, or chat messages ``[{"role": "assistant", "content": ...}]``.
        max: the cap; more emojis than this earn nothing extra.

    Returns:
        ``min(emoji_count, max)`` per completion.

    Example:
        >>> emoji(["Tokyo 🗼🍣", "no emoji", "🎉🎉🎉🎉🎉🎉"])
        [2.0, 0.0, 4.0]
    """
    cap = max
    return [float(min(emoji_lib.emoji_count(completion_text(c)), cap)) for c in completions]


@cache
def _default_tokenizer():
    # Only for unit=tokens without completion_ids (e.g. `raftkit score` on a file): the bundled model's.
    from transformers import AutoTokenizer

    from raftkit.models import default_model_path

    return AutoTokenizer.from_pretrained(str(default_model_path()))


@reward(name="length", description="exp(-alpha*|len - target|): 1.0 at the target (TRL's GRPO example).")
def length(
    completions: list[Any],
    *,
    target: Annotated[int, Ge(0)] = 30,
    alpha: Annotated[float, Ge(0)] = 0.15,
    unit: Literal["chars", "tokens"] = "chars",
    completion_ids: list[list[int]] | None = None,
    **kwargs: Any,
) -> list[float]:
    """Closeness of each completion's length to ``target``.

    Args:
        completions: strings or chat messages.
        target: the length that earns 1.0.
        alpha: how fast the reward decays per unit away from the target.
        unit: ``chars`` (characters, right for Japanese too) or ``tokens`` (taken from the
            ``completion_ids`` keyword argument that trainers pass; without it, counted with the
            bundled model's tokenizer).

    Returns:
        ``exp(-alpha * |length - target|)`` per completion, in (0, 1].

    Example:
        >>> [round(v, 4) for v in length(["x" * 30, "x" * 20], target=30, alpha=0.15)]
        [1.0, 0.2231]
    """
    if unit == "tokens":
        if completion_ids is None:
            tok = _default_tokenizer()
            texts = [completion_text(c) for c in completions]
            completion_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        sizes = [len(ids) for ids in completion_ids]
    else:
        sizes = [len(completion_text(c)) for c in completions]
    return [math.exp(-alpha * abs(n - target)) for n in sizes]


# One <think>…</think> block at the start, then a non-empty answer with no further think tags (as TRL's
# think_format_reward). Linear time by construction: the tempered tokens cannot consume a think tag and
# the possessive quantifiers (Python 3.11) never give characters back, so a 2,000-token degenerate
# completion costs one pass, not an exponential search.
THINK_FORMAT = r"\A\s*+<think>(?:(?!</?think>).)*+</think>(?=\s*+\S)(?:(?!</?think>).)*+\Z"


@reward(name="format", description="1.0 on a regex match (default: <think>…</think>, then an answer).")
def format(completions: list[Any], *, pattern: Regex = THINK_FORMAT, **kwargs: Any) -> list[float]:
    """Whether each completion matches ``pattern`` (``re.search``, DOTALL: ``.`` crosses lines).

    Args:
        completions: strings or chat messages.
        pattern: a Python regular expression; the default wants exactly one ``<think>…</think>`` block
            at the start, followed by a non-empty answer. Anchor your own with ``\\A``/``\\Z`` as needed,
            and avoid nested quantifiers such as ``(a+)+``: a regex holds the interpreter while it runs.

    Returns:
        1.0 for a match, else 0.0.

    Example:
        >>> format(["<think>2+2 is 4</think> 4", "4", "<think>unfinished"])
        [1.0, 0.0, 0.0]
    """
    rx = _compiled(pattern)
    return [1.0 if rx.search(completion_text(c)) else 0.0 for c in completions]


@lru_cache(maxsize=64)
def _compiled(pattern: str, flags: int = re.DOTALL) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def _split_words(words: str) -> list[str]:
    return [w.strip() for w in re.split(r"[,|]", words) if w.strip()]


def check_words(words: str) -> None:
    if not _split_words(words):
        raise ValueError("give at least one word, separated by commas or |")


@reward(name="keyword", description="Fraction of the given words present (case-insensitive).")
def keyword(
    completions: list[Any], *, words: Annotated[str, check_words], whole_words: bool = False, **kwargs: Any
) -> list[float]:
    """Fraction of ``words`` that appear in each completion, ignoring case.

    Args:
        completions: strings or chat messages.
        words: the words, separated by commas or ``|`` (``keyword:words=Paris|France``). Required.
        whole_words: match whole words only (``cat`` not in ``category``). Leave off for Japanese,
            which has no spaces between words.

    Returns:
        present / len(words) per completion, in [0, 1].

    Example:
        >>> keyword(["Paris is in France.", "Lyon.", "パリはフランスの首都"], words="paris,france")
        [1.0, 0.0, 0.0]
        >>> keyword(["パリはフランスの首都"], words="パリ|東京")
        [0.5]
    """
    wanted = [w.casefold() for w in _split_words(words)]
    if not wanted:
        raise ValueError("keyword: give at least one word (keyword:words=a,b)")
    out = []
    for c in completions:
        text = completion_text(c).casefold()
        if whole_words:
            found = sum(1 for w in wanted if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text))
        else:
            found = sum(1 for w in wanted if w in text)
        out.append(found / len(wanted))
    return out


@reward(name="contains", description="1.0 if a substring (or regex) is present.")
def contains(
    completions: list[Any],
    *,
    pattern: str,
    regex: bool = False,
    ignore_case: bool = False,
    **kwargs: Any,
) -> list[float]:
    """Whether each completion contains ``pattern``.

    Args:
        completions: strings or chat messages.
        pattern: the substring to look for (required); a regular expression when ``regex=true``.
        regex: treat ``pattern`` as a Python regular expression (``re.search``).
        ignore_case: ignore case.

    Returns:
        1.0 if present, else 0.0.

    Example:
        >>> contains(["The answer is 42.", "No idea."], pattern="42")
        [1.0, 0.0]
        >>> contains(["ANSWER: 7"], pattern=r"answer:\\s*\\d+", regex=True, ignore_case=True)
        [1.0]
    """
    if regex:
        check_regex(pattern)
        rx = _compiled(pattern, re.DOTALL | (re.IGNORECASE if ignore_case else 0))
        return [1.0 if rx.search(completion_text(c)) else 0.0 for c in completions]
    needle = pattern.casefold() if ignore_case else pattern
    return [
        1.0 if needle in (completion_text(c).casefold() if ignore_case else completion_text(c)) else 0.0
        for c in completions
    ]


@reward(name="distinct", description="Distinct-n of the completion: unique n-grams / all n-grams.")
def distinct(completions: list[Any], *, n: Annotated[int, Ge(1)] = 2, **kwargs: Any) -> list[float]:
    """Distinct-n of each completion on its own (words; characters for text without spaces).

    Args:
        completions: strings or chat messages.
        n: the n-gram size.

    Returns:
        unique n-grams / all n-grams, in [0, 1]; 0.0 for a completion shorter than n.

    Example:
        >>> distinct(["the cat sat on the mat", "the the the the"], n=2)
        [1.0, 0.3333333333333333]
    """
    return [distinct_n(completion_text(c), n=n) for c in completions]


# One token per CJK / kana / hangul character (those scripts do not put spaces between words), and one
# per run of anything else that is not space or punctuation: so English counts words, Japanese characters.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}\W]+|[^\s\w]", re.UNICODE)


def repetition_tokens(text: str) -> list[str]:
    """Words for space-separated scripts, single characters for CJK, punctuation marks on their own.

    >>> repetition_tokens("人生の、Life is")
    ['人', '生', 'の', '、', 'life', 'is']
    """
    return [t.casefold() for t in _TOKEN.findall(text)]


@reward(name="repetition", description="Penalty in [-1, 0]: the share of n-grams that repeat an earlier one.")
def repetition(completions: list[Any], *, n: Annotated[int, Ge(1)] = 3, **kwargs: Any) -> list[float]:
    """Penalise repeated n-grams and loops such as "人生の、人生の、人生の" or "I think I think I think".

    Tokens are words for English and the like, single characters for Japanese/Chinese/Korean (so it
    works without spaces), punctuation on its own.

    Args:
        completions: strings or chat messages.
        n: the n-gram size.

    Returns:
        ``-(1 - unique/total)`` over the completion's n-grams: 0.0 when nothing repeats, towards -1.0
        for a long loop; 0.0 when the completion is shorter than n tokens.

    Example:
        >>> repetition(["The cat sat on the mat.", "I think I think I think"], n=3)
        [0.0, -0.5]
        >>> [round(v, 3) for v in repetition(["人生の、人生の、人生の"], n=3)]
        [-0.556]
    """
    out = []
    for c in completions:
        toks = repetition_tokens(completion_text(c))
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        out.append(-(1.0 - len(set(grams)) / len(grams)) if grams else 0.0)
    return [v + 0.0 for v in out]  # no -0.0 in the logs


# --------------------------------------------------------------------------- answer accuracy

_KEYCAP = re.compile("([0-9#*])\ufe0f?\u20e3")  # 7️⃣ -> 7, before emojis are removed
# A thin or no-break space between digit groups (3 776, SI style) is a thousands separator; before NFKC,
# which turns these into ordinary spaces (and "3 776" with an ordinary space may be a list).
_THIN_THOUSANDS = re.compile(r"(?<=\d)[\u2009\u202f\u00a0](?=\d{3}(?!\d))")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")  # 3,776 -> 3776; 1,2,3 stays
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")  # invisible inside a word
_SUPERSCRIPTS = str.maketrans({**{c: f"^{d}" for d, c in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")}, "⁻": "^-", "⁺": "^+"})
# Letters of scripts that put spaces between words (Latin without × and ÷, Greek, Cyrillic) and digits:
# an answer edge made of one must not touch another ("7" is not in "17", "cat" not in "category"). Not
# \w, which matches CJK too and would refuse the "7" in "答えは7です".
_EDGE = "0-9a-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff"
_EDGE_CHAR = re.compile(f"[{_EDGE}]")
_WORD = _EDGE + "_+#"  # word characters for an answer's edges: "C" is not in "C++" or "C#"
_WORD_CHAR = re.compile(f"[{_WORD}]")
_LETTERS = _EDGE[3:]  # without the digits
# A number: a sign only where no word character precedes it ("COVID-19", "5-7" have none), digits with
# one decimal point or comma, or a fraction, or an exponent (10² is written 10^2 by normalize_answer).
_NUMBER = re.compile(
    rf"(?:(?<![{_WORD}])(?P<sign>[-+]))?(?<![{_LETTERS}0-9])(?<!\d[.,/^])"
    # Bounded runs of digits: int() refuses strings of over 4,300 digits, and no answer is that long.
    r"(?P<int>\d{1,300})(?:[.,](?P<frac>\d{1,300})(?![.,]\d)|/(?P<den>\d{1,300})|\^(?P<exp>[-+]?\d{1,3}))?"
    rf"(?![{_LETTERS}0-9])(?![.,/^]\d)"
)


def normalize_answer(text: str) -> str:
    """Text as ``answer_match`` compares it: keycaps to digits, emojis replaced by spaces (an emoji
    separates words: "7🎉days"), zero-width characters dropped, superscripts written as exponents
    (10² -> 10^2), thin-space thousands separators dropped, NFKC (full-width digits and letters folded),
    other scripts' decimal digits (Arabic-Indic ٣) to ASCII, the minus sign − to -, casefolded (İ to i),
    thousands separators removed, whitespace collapsed.

    >>> normalize_answer("富士山は３，７７６ m 🗻")
    '富士山は3776 m'
    """
    text = emoji_lib.replace_emoji(_KEYCAP.sub(r"\1", text), " ")
    text = _THIN_THOUSANDS.sub("", _ZERO_WIDTH.sub("", text).translate(_SUPERSCRIPTS))
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("\u066b", ".")
    text = "".join(str(unicodedata.decimal(c)) if c > "\x7f" and unicodedata.decimal(c, None) is not None
                   else c for c in text)
    text = _THOUSANDS.sub("", text.casefold().replace("i\u0307", "i"))
    return " ".join(text.split())


def _number_value(m: re.Match[str]) -> Fraction | None:
    """The value of a ``_NUMBER`` match (None for a zero denominator)."""
    value = Fraction(int(m["int"]))
    if m["frac"]:
        value += Fraction(int(m["frac"]), 10 ** len(m["frac"]))
    elif m["den"]:
        if not int(m["den"]):
            return None
        value /= int(m["den"])
    elif m["exp"]:
        exp = int(m["exp"])
        value = value**exp if value or exp >= 0 else Fraction(0)
    return -value if m["sign"] == "-" else value


def _numbers(text: str) -> set[Fraction]:
    return {v for m in _NUMBER.finditer(text) if (v := _number_value(m)) is not None}


@lru_cache(maxsize=4096)
def _answer_pattern(answer: str) -> re.Pattern[str]:
    # A boundary only on a side whose edge is a word character of a spaced script, a digit, + or #;
    # CJK edges match as substrings.
    left = f"(?<![{_WORD}])" if _WORD_CHAR.match(answer[0]) else ""
    right = f"(?![{_WORD}])" if _WORD_CHAR.match(answer[-1]) else ""
    if _EDGE_CHAR.match(answer[-1]) and answer[-1].isdigit():
        right += r"(?![.,/^]\d)"  # a number goes on: "3776 m" is not in "3776.5 m"
    return re.compile(left + re.escape(answer) + right)


def _emoji_key(text: str) -> str:
    return text.replace("\ufe0f", "").strip()  # with or without the emoji presentation selector


@dataclass(frozen=True)
class _Answer:
    """One accepted answer: a number (compared by value), text (matched on word edges) or emojis."""

    kind: Literal["number", "text", "emoji"]
    value: Any

    def found_in(self, raw: str, text: str, numbers: set[Fraction]) -> bool:
        if self.kind == "number":
            return self.value in numbers
        if self.kind == "emoji":
            return self.value in _emoji_key(raw)
        return bool(_answer_pattern(self.value).search(text))


def _accepted(entry: Any) -> list[_Answer]:
    if entry is None:
        return []
    items = [entry] if isinstance(entry, str) or not isinstance(entry, list | tuple) else entry
    out = []
    for raw in (str(x) for x in items if x is not None):
        text = normalize_answer(raw)
        if m := _NUMBER.fullmatch(text):
            value = _number_value(m)
            out.append(_Answer("number", value) if value is not None else _Answer("text", text))
        elif text:
            out.append(_Answer("text", text))
        elif _emoji_key(raw):  # only emojis: looked for as they are
            out.append(_Answer("emoji", _emoji_key(raw)))
    return out


@reward(name="answer_match", description="1.0 if an accepted answer (dataset column `answers`) is present.")
def answer_match(completions: list[Any], answers: list[Any] | None = None, **kwargs: Any
                 ) -> list[float | None]:
    """Whether each completion contains one of its row's accepted answers.

    Both sides are normalised (``normalize_answer``: NFKC, casefold, emojis, zero-width characters and
    thousands separators dropped, other digits to ASCII), so "PARIS 🗼" matches "Paris" and "３,７７６"
    matches "3776". An accepted answer that is a number is compared by value with every number in the
    completion, sign, decimal point or comma, fraction and exponent included: "7.5" is in "7,5 m", "7" is
    not, "5" is not in "-5", "3" not in "3/4", "100" is in "10²". Other answers whose first or last
    character is a Latin/Greek/Cyrillic letter, a digit, ``+`` or ``#`` must not touch another such
    character on that side ("cat" is not in "category", "C" is not in "C++" or "C#"); a CJK edge needs
    no boundary ("東京" is in "東京です"), nor does a CJK neighbour block one ("7" is in "答えは7日"). An
    answer made only of emojis is looked for as it is ("🎉").

    Args:
        completions: strings or chat messages.
        answers: the dataset column of accepted answers, one entry per completion (TRL and the stack
            pass columns as keyword arguments): a list of strings, a single string, or None / [] for a
            row without answers. Not a parameter: the column fills it.

    Returns:
        1.0 if an accepted answer is present, else 0.0; None where the row has no accepted answer, and
        for every completion when there is no ``answers`` column (left out of the weighted sum).

    Example:
        >>> answer_match(["A week has 7 days.", "There are 17 days", "一週間は７日です", "Paris"],
        ...              answers=[["7"], ["7"], ["7", "七"], None])
        [1.0, 0.0, 1.0, None]
    """
    if answers is None:
        return [None] * len(completions)
    out: list[float | None] = []
    for c, entry in zip(completions, answers, strict=True):
        accepted = _accepted(entry)
        if not accepted:
            out.append(None)
            continue
        raw = completion_text(c)
        text = normalize_answer(raw)
        numbers = _numbers(text) if any(a.kind == "number" for a in accepted) else set()
        out.append(1.0 if any(a.found_in(raw, text, numbers) for a in accepted) else 0.0)
    return out


@hookimpl
def register_rewards(register):
    for fn in (emoji, length, format, keyword, contains, distinct, repetition, answer_match):
        register(fn)
