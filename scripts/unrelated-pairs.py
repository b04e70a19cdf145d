"""Adds unrelated pairs to the tuning split (issue 22): two of its own
prompts of one language that share no content word, labeled `unrelated`
traps.

The tuning split's traps were all near-duplicates and its hits heavy
paraphrases, so the judge learned "few shared words: the same question"
and served "ATTACKER prompt" the answer of "What is the capital of
France?" (score 0.99999). Pairs of different questions teach it
otherwise. Made from the tuning split's prompts with a fixed seed, never
from the held-out split.

    python3 scripts/unrelated-pairs.py tests/data/cache_eval/pairs.jsonl
"""

import json
import random
import re
import sys
import unicodedata

PER_LANGUAGE = 300
STOP = set(
    "the a an of to in on for and or is are was were be do does did i my me you your it this that "
    "what how which who whom why when where can could should would will with from by as at about "
    "into than then so if el la los las un una de del al y o es son fue ser que como cual quien "
    "por para con en mi mis te tu tus se lo le les su sus".split()
)


def content(s):
    s = unicodedata.normalize("NFKD", s.lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    return {w for w in re.findall(r"\w+", s) if w not in STOP}


path = sys.argv[1]
pairs = [json.loads(line) for line in open(path) if line.strip()]
if any(p["kind"] == "unrelated" for p in pairs):
    sys.exit("the tuning split has unrelated pairs already")
rng = random.Random(20261206)
added = []
for lang in ("en", "es"):
    prompts = sorted({p["a"] for p in pairs if p["lang"] == lang})
    rng.shuffle(prompts)
    for a, b in zip(prompts[0::2], prompts[1::2]):
        if len(added) >= PER_LANGUAGE * (1 + (lang == "es")):
            break
        if not content(a) & content(b):
            added.append((lang, a, b))
with open(path, "a") as out:
    for n, (lang, a, b) in enumerate(added, 1):
        pair = {"id": f"unrelated-{lang}-{n:03d}", "lang": lang, "kind": "unrelated",
                "label": "trap", "a": a, "b": b, "added": "2026-12-06"}
        out.write(json.dumps(pair, ensure_ascii=False) + "\n")
print(f"added {len(added)} pairs")
