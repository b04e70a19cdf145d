"""Issue 22's judge experiments on the tuning split (never the held-out one).

Reads what `aies-judge-dump` wrote for the tuning split (token vectors of
the model's last layer, or of its first k with AIES_JUDGE_LAYERS=k, pooled
vectors, the guard's verdicts), builds
features per pair, and cross-validates classifiers (5 folds, stratified by
language and kind): for each, the threshold where at most 1% of each
language's traps are served (vetoes for numbers, units, dates, negation
and language applied first), and the should-hits served there. The
threshold is chosen on the same predictions it is reported on: optimistic.

    cargo build --release -p aies-tests --bin aies-judge-dump
    AIES_JUDGE_LAYERS=2 "$CARGO_TARGET_DIR/release/aies-judge-dump" \
        .spin/ai-models/multilingual-e5-small "query: " /tmp/e5 tests/data/cache_eval/pairs.jsonl
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scikit-learn
    /tmp/venv/bin/python scripts/judge-explore.py /tmp/e5
"""

import json
import re
import sys
import unicodedata

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

base = sys.argv[1]
index = json.load(open(base + ".json"))
pairs = json.load(open(base + ".pairs.json"))
raw = np.fromfile(base + ".bin", dtype="<f4")
dim = int(sys.argv[2]) if len(sys.argv) > 2 else 384
tokens, pooled, at = {}, {}, 0
for entry in index:
    n = entry["n"]
    rows = raw[at : at + (n + 1) * dim].reshape(n + 1, dim)
    at += (n + 1) * dim
    tokens[entry["text"]], pooled[entry["text"]] = rows[:n], rows[n]
assert at == len(raw)

def words(s):
    s = unicodedata.normalize("NFKD", s.lower())
    return re.findall(r"\w+", "".join(c for c in s if not unicodedata.combining(c)))


STOP = set(
    words(
        "the a an of to in on for and or is are was were be do does did i my me you your it this "
        "that what how which who whom why when where can could should would will with from by as "
        "at about into than then so if el la los las un una de del al y o es son fue ser que como "
        "cual quien por para con en mi mis te tu tus se lo le les su sus"
    )
)


def alignment(a, b):
    """BERTScore-style greedy alignment of the two prompts' token vectors."""
    s = tokens[a] @ tokens[b].T
    ra, pb = s.max(1), s.max(0)
    r, p = ra.mean(), pb.mean()
    best, confident = s.argmax(1), np.where(ra > 0.85)[0]
    pairs_ = [(x, y) for i, x in enumerate(confident) for y in confident[i + 1 :]]
    crossed = sum(best[x] > best[y] for x, y in pairs_) / len(pairs_) if pairs_ else 0.0
    # The best order-keeping alignment against the free one: a swap keeps
    # every word but crosses its alignments.
    m, n = s.shape
    dp = np.zeros((m + 1, n + 1))
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            dp[i, j] = max(dp[i - 1, j], dp[i, j - 1], dp[i - 1, j - 1] + max(0.0, s[i - 1, j - 1] - 0.5))
    free = (np.maximum(ra - 0.5, 0).sum() + np.maximum(pb - 0.5, 0).sum()) / 2
    return [
        float(pooled[a] @ pooled[b]),
        dp[m, n] / max(free, 1e-6),
        (ra < 0.7).mean(),
        (pb < 0.7).mean(),
        r,
        p,
        2 * r * p / (r + p),
        min(ra.min(), pb.min()),
        max(ra.min(), pb.min()),
        max(r - ra.min(), p - pb.min()),
        crossed,
        min(len(ra), len(pb)) / max(len(ra), len(pb)),
    ] + [float((ra < t).mean()) for t in (0.5, 0.6, 0.8, 0.9)] + [
        float((pb < t).mean()) for t in (0.5, 0.6, 0.8, 0.9)
    ] + [float(np.sort(ra)[:2].mean()), float(np.sort(pb)[:2].mean())]


def lexical(a, b):
    ca = [w for w in words(a) if w not in STOP]
    cb = [w for w in words(b) if w not in STOP]
    sa, sb = set(ca), set(cb)
    jaccard = len(sa & sb) / max(1, len(sa | sb))
    reordered = float(sorted(ca) == sorted(cb) and ca != cb)
    # Order of the shared content words: pairs in a's order that b crosses.
    shared = [w for w in dict.fromkeys(ca) if w in sb]
    pos = [cb.index(w) for w in shared]
    pairs_ = [(i, j) for i in range(len(pos)) for j in range(i + 1, len(pos))]
    crossed = sum(pos[i] > pos[j] for i, j in pairs_) / len(pairs_) if pairs_ else 0.0
    return [
        crossed,
        float(words(a) == words(b)),
        jaccard,
        float(jaccard == 1.0),
        min(len(sa - sb), 3),
        min(len(sb - sa), 3),
        reordered,
        len(sa | sb),
    ]


y = np.array([p["label"] == "hit" for p in pairs])
veto = np.array([p["veto"] != "None" for p in pairs])
guard_served = np.array([p["guard"] == "None" and p["sim"] >= p["threshold"] for p in pairs])
langs = np.array([p["lang"] for p in pairs])
kinds = np.array([p["kind"] for p in pairs])
strata = np.array([f"{lang}{kind}" for lang, kind in zip(langs, kinds)])
align = np.array([alignment(p["a"], p["b"]) for p in pairs])
lex = np.array([lexical(p["a"], p["b"]) for p in pairs])
u = np.array([pooled[p["a"]] for p in pairs])
v = np.array([pooled[p["b"]] for p in pairs])


def line(name, served):
    rates = [
        f"{lang}: hits {served[(langs == lang) & y].mean():.1%} traps {served[(langs == lang) & ~y].mean():.1%}"
        for lang in ("en", "es")
    ]
    print(f"{name:38s} " + "  ".join(rates))


def cross_validate(name, make, x):
    prob = np.zeros(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, strata):
        model = make().fit(x[train], y[train])
        prob[test] = model.predict_proba(x[test])[:, 1]
    for t in np.linspace(0.01, 0.995, 200):
        served = ~veto & (prob >= t)
        if all(served[(langs == lang) & ~y].mean() <= 0.01 for lang in ("en", "es")):
            break
    else:
        name += ", never at 1% traps"
    line(f"{name} (p >= {t:.2f})", served)
    print(" " * 39 + " ".join(f"{k}:{served[kinds == k].mean():.0%}" for k in sorted(set(kinds))))


def logistic(c=1.0):
    return lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def boosted():
    return GradientBoostingClassifier(n_estimators=300, max_depth=3, learning_rate=0.05, random_state=0)


line("guard at its thresholds (in-sample)", guard_served)
line("vetoes, then cosine >= threshold", ~veto & (align[:, 0] >= pairs[0]["threshold"]))
cross_validate("LR alignment + lexical", logistic(), np.hstack([align, lex]))
cross_validate("GB alignment + lexical", boosted, np.hstack([align, lex]))
cross_validate("LR |u-v|, u*v", logistic(), np.hstack([abs(u - v), u * v]))
cross_validate("LR |u-v|, u*v + all", logistic(10.0), np.hstack([abs(u - v), u * v, align, lex]))
