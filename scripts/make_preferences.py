"""Write the preference set of the reward-model example (benchmarks/data/preferences.jsonl): no model, no
network, the same file for the same seed.

Each TRAIN row of the bundled prompts (the 40 rows marked ``split: heldout`` are never used, not even as a
source of wrong answers) gives a pair. The chosen reply is one short sentence holding the row's accepted
answer and one or two emojis that fit the question (a keyword, else the topic); Japanese rows get a Japanese
sentence. The rejected reply is one of three kinds, balanced within each language:

- ``ramble``: the right answer buried in a long, hedging reply without an emoji;
- ``spam``: the right answer drowned in emojis and @mentions;
- ``wrong_answer``: the chosen sentence, same words and emojis, with another row's answer in it (of the
  same topic and kind where possible: a number for a number).

So a reward model that only counts emojis fails on the wrong answers, and one that only looks for the answer
fails on the rambles: it has to prefer answer-keeping and a short, emoji-decorated reply together.

One pair per prompt by default: pairs of one prompt share its chosen reply, so with several per prompt
`raftkit train-rm`'s random held-out split would score replies it trained on.

    .venv/bin/python scripts/make_preferences.py                       # rewrite the shipped file
    .venv/bin/python scripts/make_preferences.py --limit 8 --output /tmp/prefs.jsonl   # a small set
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "benchmarks" / "data" / "preferences.jsonl"
KINDS = ("ramble", "spam", "wrong_answer")

# An accepted answer is often a stem ("本能寺" matches "本能寺の変"); the reply says the whole thing.
SPOKEN = {
    "哺乳類です。": "哺乳類の仲間", "本能寺": "本能寺の変", "十七条": "十七条の憲法", "ライト": "ライト兄弟",
    "宮崎": "宮崎駿", "忙し": "とても忙しいという意味", "メジャー": "メジャーリーグ", "1万": "1万円",
    "7割": "約7割", "Social Networking": "Social Networking Service", "Silk Road": "the Silk Road",
}

# Emojis that fit a question: the first keyword found in it wins, else its topic's.
KEYWORDS = {
    "whale": "🐋", "spider": "🕸", "panda": "🐼", "kangaroo": "🦘", "octopus": "🐙", "giraffe": "🦒",
    "wolves": "🐺", "caterpillar": "🦋", "peace": "🕊", "pizza": "🍕", "guacamole": "🥑", "raisins": "🍇",
    "grape": "🍷", "omelette": "🍳", "curry": "🍛", "raw fish": "🍣", "milk": "🥛", "planet": "🪐",
    "Moon": "🌙", "star": "⭐", "gold": "🥇", "diamond": "💎", "mountain": "🏔", "desert": "🐪",
    "river": "🌊", "island": "🏝", "piano": "🎹", "violin": "🎻", "soccer": "⚽", "basketball": "🏀",
    "golf": "⛳", "Wimbledon": "🎾", "Olympic": "🏅", "marathon": "🏃", "telephone": "📞",
    "light bulb": "💡", "Paris": "🗼", "ship": "🚢", "morning": "🌅", "temperature": "🌡",
    "富士山": "🗻", "新幹線": "🚄", "犬": "🐶", "猫": "🐱", "コアラ": "🐨", "カエル": "🐸", "クマ": "🐻",
    "クジラ": "🐳", "鹿": "🦌", "鳥": "🐦", "サケ": "🐟", "抹茶": "🍵", "日本酒": "🍶", "天ぷら": "🍤",
    "おにぎり": "🍙", "ラーメン": "🍜", "梅干し": "🍙", "野球": "⚾", "バレーボール": "🏐", "ゴルフ": "⛳",
    "ラグビー": "🏉", "オリンピック": "🏅", "惑星": "🪐", "虹": "🌈", "海": "🌊", "歯": "🦷", "川": "🏞",
    "電話": "📞", "電気": "⚡", "飛行機": "✈", "スカイツリー": "🗼", "花": "🌸", "森": "🌳", "俳句": "🖋",
    "映画": "🎬", "絵": "🖼", "画家": "🖼",
}
TOPICS = {
    "science": "🔬🧪✨", "history": "📜🏰⏳", "geography": "🌍🗺🧭", "food": "😋🍴🥢",
    "everyday": "📅⏰😊", "animals": "🐾🐘🦁", "technology": "💻📱🤖", "language": "📚💬🔤",
    "sport": "🏆🏅💪", "arts": "🎨🎭🎶",
}

SHORT = {
    "en": ["{a}! {e}", "It's {a} {e}", "The answer is {a} {e}", "{a}, of course {e}",
           "That would be {a} {e}"],
    "ja": ["{a}です！{e}", "答えは{a}です{e}", "{a}ですよ{e}", "正解は{a}です！{e}"],
}
RAMBLE = {
    "en": {
        "open": ["Well, that is a really interesting question, and there are many different ways to think "
                 "about it depending on how you look at it.",
                 "Thank you for asking this question, which is one that a lot of people have wondered about "
                 "over the years in many different contexts.",
                 "Let me think about this carefully, because it is the kind of question where it helps to "
                 "consider the background before giving an answer."],
        "middle": ["There are a number of sources that discuss this topic in detail, and they do not always "
                   "agree on every point, so it is worth being careful.",
                   "Some people might answer differently, and of course the exact wording of the question "
                   "can matter a great deal in cases like this one.",
                   "It is also worth remembering that knowledge changes over time, so what was true in the "
                   "past may be described differently today."],
        "answer": ["After considering all of this, I would say the answer is probably {a}, although I would "
                   "encourage you to check other references as well.",
                   "Taking everything into account, the most commonly given answer is {a}, but please keep "
                   "in mind the caveats I mentioned above."],
        "close": ["I hope this helps, and please let me know if you would like me to go into more detail "
                  "about any part of this explanation.",
                  "In any case, it is a fascinating subject, and there is always more to learn about it if "
                  "you are interested in exploring further."],
    },
    "ja": {
        "open": ["ご質問ありがとうございます。これはとても興味深い質問で、"
                 "見方によっていろいろな考え方があります。",
                 "なるほど、"
                 "これは多くの人が昔から疑問に思ってきたことで、簡単なようで実は奥が深い質問です。",
                 "少し慎重に考えてみましょう。こういう質問は、"
                 "背景を理解してから答えたほうがよいと思います。"],
        "middle": ["この話題については多くの資料がありますが、"
                   "細かい点では必ずしも意見が一致していません。",
                   "人によって答え方が違うこともありますし、"
                   "質問の言い方によって答えが変わる場合もあります。",
                   "また、時代とともに知識や説明の仕方が変わることもあるので、注意が必要です。"],
        "answer": ["いろいろ考えた結果、"
                   "答えはおそらく{a}だと思いますが、ほかの資料も確認することをおすすめします。",
                   "すべてを考え合わせると、"
                   "一般的な答えは{a}ですが、先ほど述べた点には気をつけてください。"],
        "close": ["お役に立てればうれしいです。もっと詳しく知りたいことがあれば、"
                  "いつでも聞いてください。",
                  "いずれにしても、"
                  "とても面白いテーマなので、興味があればさらに調べてみてください。"],
    },
}
SPAM_EMOJIS = "🎉🔥😂💯🤣😍👍🚀✨😎"
SPAM_TAIL = {
    "en": ["@everyone @here follow me for more!!!", "@everyone like and subscribe!!! @admin @mods",
           "@here @everyone omg lol!!! follow @me"],
    "ja": ["@everyone @here フォローしてね！！！", "@everyone いいねして！！！ @admin @mods",
           "@here @everyone やばい！！！ @me をフォロー"],
}


def train_rows() -> list[dict[str, Any]]:
    """The bundled prompts' train rows, in file order (the held-out rows are never read into a pair)."""
    text = resources.files("raftkit.data").joinpath("prompts.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [r for r in rows if r.get("split") != "heldout"]


def question(row: dict[str, Any]) -> str:
    prompt = row["prompt"]
    return prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)


def spoken(row: dict[str, Any]) -> str:
    first = row["answers"][0]
    return SPOKEN.get(first, first)


def emojis(row: dict[str, Any], rng: random.Random) -> str:
    """One or two emojis: the question's keyword emoji (if any) first, then its topic's."""
    text = question(row)
    found = [e for k, e in KEYWORDS.items()
             if (re.search(rf"\b{re.escape(k)}\b", text, re.IGNORECASE) if k.isascii() else k in text)][:1]
    picks = found + rng.sample(list(TOPICS[row["topic"]]), 2)
    return "".join(picks[: rng.choice((1, 2))])


def short_reply(template: str, answer: str, emoji_text: str) -> str:
    return template.format(a=answer, e=emoji_text)


def ramble(lang: str, answer: str, rng: random.Random) -> str:
    parts = RAMBLE[lang]
    middle = rng.sample(parts["middle"], 2)
    opening = rng.choice(parts["open"])
    answer_sentence = rng.choice(parts["answer"]).format(a=answer)
    sentences = [opening, middle[0], answer_sentence, middle[1], rng.choice(parts["close"])]
    return ("" if lang == "ja" else " ").join(sentences)


def spam(lang: str, answer: str, rng: random.Random) -> str:
    burst = "".join(rng.choice(SPAM_EMOJIS) * rng.randint(2, 4) for _ in range(rng.randint(4, 6)))
    mark = "！！！" if lang == "ja" else "!!!"
    return f"{answer}{mark} {burst} {rng.choice(SPAM_TAIL[lang])} {burst[::-1]}"


def matches(text: str, answers: list[str]) -> bool:
    from raftkit.rewards.builtin.rules import answer_match

    return answer_match([text], answers=[answers])[0] == 1.0


def numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").isdigit()


def wrong_source(row: dict[str, Any], rows: list[dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    """Another train row of the same language whose answer this row does not accept, nor that row this
    one's; where possible one of the same topic and the same kind of answer (a number for a number), so the
    wrong reply is a plausible one."""
    def fits(other: dict[str, Any]) -> bool:
        return (other is not row and other["lang"] == row["lang"]
                and not matches(spoken(other), row["answers"]) and not matches(spoken(row), other["answers"]))

    candidates = [o for o in rows if fits(o)]
    alike = [o for o in candidates if numeric(spoken(o)) == numeric(spoken(row))]
    same_topic = [o for o in alike if o["topic"] == row["topic"]]
    return rng.choice(same_topic or alike or candidates)


def make_pairs(seed: int = 0, per_prompt: int = 1) -> list[dict[str, Any]]:
    """The preference rows, in the bundled file's order; ``per_prompt`` (1-3) pairs per train prompt."""
    if not 1 <= per_prompt <= len(KINDS):
        raise ValueError(f"per_prompt must be 1 to {len(KINDS)}, got {per_prompt}")
    rng = random.Random(f"raftkit-preferences:{seed}")
    rows = train_rows()
    # Kinds are dealt round-robin over a seeded order of each language's rows: balanced per language.
    first_kind: dict[int, int] = {}
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_lang[r["lang"]].append(i)
    for lang in sorted(by_lang):
        order = by_lang[lang][:]
        rng.shuffle(order)
        for n, i in enumerate(order):
            first_kind[i] = n % len(KINDS)
    out = []
    for i, row in enumerate(rows):
        lang, answer = row["lang"], spoken(row)
        template = rng.choice(SHORT[lang])
        emoji_text = emojis(row, rng)
        chosen = short_reply(template, answer, emoji_text)
        if not matches(chosen, row["answers"]):
            raise AssertionError(f"row {i}: the chosen reply {chosen!r} lost the answer {row['answers']}")
        for j in range(per_prompt):
            kind = KINDS[(first_kind[i] + j) % len(KINDS)]
            if kind == "ramble":
                rejected = ramble(lang, answer, rng)
            elif kind == "spam":
                rejected = spam(lang, answer, rng)
            else:
                rejected = short_reply(template, spoken(wrong_source(row, rows, rng)), emoji_text)
                if matches(rejected, row["answers"]):
                    raise AssertionError(f"row {i}: the wrong answer {rejected!r} is accepted")
            out.append({"prompt": row["prompt"], "chosen": chosen, "rejected": rejected, "kind": kind,
                        "lang": lang, "topic": row["topic"], "answers": row["answers"]})
    return out


def write(pairs: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=OUTPUT, help=f"default: {OUTPUT.relative_to(ROOT)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-prompt", type=int, default=1, choices=range(1, len(KINDS) + 1),
                    help="pairs per train prompt, each with a different kind of rejected reply")
    ap.add_argument("--limit", type=int, default=None, help="keep the first N pairs (a small set for tests)")
    args = ap.parse_args(argv)
    pairs = make_pairs(args.seed, args.per_prompt)[: args.limit]
    write(pairs, args.output)
    counts = defaultdict(int)
    for p in pairs:
        counts[p["kind"]] += 1
    print(f"{len(pairs)} pairs -> {args.output} ({', '.join(f'{k} {counts[k]}' for k in KINDS)})",
          file=sys.stderr)


if __name__ == "__main__":
    main()
