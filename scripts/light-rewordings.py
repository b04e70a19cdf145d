"""Adds light rewordings to the tuning split (issue 22): the same question
with only its framing changed ("How do I" / "How can I", "What is" /
"What's", a "please", "Quick question:"), labeled `repeat` hits.

The judge learned from the tuning split that two prompts with the same
content words are a trap, because every such pair there was one (swaps,
roles, directions) and the hits were heavy paraphrases: it refused "How
can I cancel my subscription?" for "How do I cancel my subscription?".
These pairs are made from the tuning split's own prompts by fixed rules,
never from the held-out split (aies-judge-train refuses a shared prompt).

    python3 scripts/light-rewordings.py tests/data/cache_eval/pairs.jsonl

appends at most 2 rewordings per language and rule group to the file,
skipping prompts already rewritten (ids `light-<lang>-<n>`).
"""

import json
import re
import sys
import unicodedata

EN = [
    (r"^How do I ", "How can I "),
    (r"^How can I ", "How do I "),
    (r"^What is ", "What's "),
    (r"^What's ", "What is "),
    (r"^Where is ", "Where's "),
    (r"^Can you ", "Could you "),
    (r"^Could you ", "Can you "),
    (r"^(.*)\?$", r"\1, please?"),
    (r"^(.*)$", r"Quick question: \1"),
]
ES = [
    (r"^¿Cómo puedo ", "¿Cómo "),
    (r"^¿Cómo ", "¿Cómo puedo "),
    (r"^¿Qué es ", "¿Me dices qué es "),
    (r"^¿Puedes ", "¿Podrías "),
    (r"^¿Podrías ", "¿Puedes "),
    (r"^(.*)\?$", r"\1, por favor?"),
    (r"^(.*)$", r"Una pregunta: \1"),
]
PER_RULE = 20


def fold(s):
    s = unicodedata.normalize("NFKD", s.lower())
    return " ".join(re.findall(r"\w+", "".join(c for c in s if not unicodedata.combining(c))))


path = sys.argv[1]
pairs = [json.loads(line) for line in open(path) if line.strip()]
done = {p["a"] for p in pairs if p["id"].startswith("light-")}
prompts = {"en": [], "es": []}
for p in pairs:
    if p["lang"] in prompts and p["a"] not in prompts[p["lang"]] and p["a"] not in done:
        prompts[p["lang"]].append(p["a"])
added = []
for lang, rules in (("en", EN), ("es", ES)):
    used = set()
    for pattern, replacement in rules:
        count = 0
        for prompt in prompts[lang]:
            if prompt in used or count >= PER_RULE:
                continue
            new = re.sub(pattern, replacement, prompt, count=1)
            # "What's" -> "What is" folds to other words; only the framing may change.
            if new == prompt or fold(new) == fold(prompt):
                continue
            used.add(prompt)
            count += 1
            added.append((lang, prompt, new))
with open(path, "a") as out:
    for n, (lang, a, b) in enumerate(added, 1):
        pair = {"id": f"light-{lang}-{n:03d}", "lang": lang, "kind": "repeat", "label": "hit",
                "a": a, "b": b, "added": "2026-12-06"}
        out.write(json.dumps(pair, ensure_ascii=False) + "\n")
print(f"added {len(added)} pairs")
