"""Trains the cache's near-duplicate judge (issue 22) on the tuning split.

    judge-train.py <features.json from aies-judge-train> <judge.json>

Per embedding model: a logistic regression (scikit-learn, features
standardized) on the judge's features plus that model's cosine. Its
thresholds come from the tuning split only: 5-fold cross-validated
predictions (stratified by language and kind), and for each level and
each language of the asked prompt (as the judge detects it) the lowest
score at which at most that share of that language's traps is served
(and one for prompts in neither language, which holds for both),
counting what the cache does around the judge (the exact tier answers a
prompt equal after folding; the cheap vetoes refuse first; a candidate
needs a similarity: of a few, the one that serves the most should-hits at
the default level).

A model the judge has no weights for (a remote embedding provider) gets
the "*" weights: fitted without the cosine (its column all zero), with
the candidate similarity of thresholds.txt's "*" floor. The held-out
split is never read here: `make cache-eval` measures it.
"""

import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# The share of each language's traps a level may serve.
LEVELS = {"strict": 0.005, "default": 0.01, "lenient": 0.03}
LANGS = ("en", "es")
# The similarities a candidate may be asked to have before the judge counts.
CANDIDATE_SIMILARITIES = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85)

dump = json.load(open(sys.argv[1]))
pairs = dump["pairs"]
x = np.array([p["x"] for p in pairs], dtype=np.float64)
y = np.array([p["hit"] for p in pairs])
exact = np.array([p["exact"] for p in pairs])
veto = np.array([p["veto"] is not None for p in pairs])
langs = np.array([p["lang"] for p in pairs])
kinds = np.array([p["kind"] for p in pairs])
strata = np.array([f"{p['lang']}{p['kind']}" for p in pairs])
# The asked prompt's language as the judge reads it (its own feature), by
# which it picks its thresholds at run time.
judged = np.where(x[:, dump["features"].index("asked_spanish") - 1] == 1, "es", "en")
GRID = np.linspace(0.02, 0.995, 196)


def fit(features, labels):
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)).fit(
        features, labels
    )


# Unrelated pairs teach the judge that different questions differ; they
# are too easy to count among the traps a threshold is chosen on.
hard = kinds != "unrelated"


def rates(served):
    return {
        lang: (served[(langs == lang) & y].mean(), served[(langs == lang) & ~y & hard].mean())
        for lang in LANGS
    }


out = {"features": dump["features"], "layers": dump["layers"], "models": {}}
models = dict(dump["models"])
models["*"] = {"similarity": None}
for model, m in models.items():
    if m["similarity"] is None:
        sim, choices = np.zeros(len(y)), (dump["any_model_floor"],)
    else:
        sim, choices = np.array(m["similarity"], dtype=np.float64), CANDIDATE_SIMILARITIES
    features = np.hstack([sim[:, None], x])
    prob = np.zeros(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(features, strata):
        prob[test] = fit(features[train], y[train]).predict_proba(features[test])[:, 1]
    def levels(floor):
        """Per level: one threshold for every language, one per language
        of the asked prompt, and the rates the latter serve."""
        candidate = ~veto & ((sim >= floor) | (m["similarity"] is None))
        found = {}
        for level, share in LEVELS.items():
            for overall in GRID:
                served = exact | (candidate & (prob >= overall))
                if all(r[1] <= share for r in rates(served).values()):
                    break
            per, served = {}, exact.copy()
            for lang in LANGS:
                group = judged == lang
                for t in GRID:
                    mine = exact | (candidate & (prob >= t))
                    if mine[group & ~y & hard].mean() <= share:
                        break
                per[lang] = round(float(t), 3)
                served[group] = mine[group]
            found[level] = (round(float(overall), 3), per, rates(served), served[~hard].mean())
        return found

    def default_hits(floor):
        return sum(h for h, _ in levels(floor)["default"][2].values())

    floor = max(choices, key=default_hits)
    found = levels(floor)
    print(f"{model} (tuning split, {len(y)} pairs, 5-fold cross-validated; thresholds and the candidate similarity chosen on these same predictions)")
    print(f"  candidate similarity >= {floor}")
    for level, (t, per, r, unrelated) in found.items():
        line = "  ".join(f"{lang}: hits {h:.1%} traps {tr:.1%}" for lang, (h, tr) in r.items())
        at = "  ".join(f"{lang} p >= {pt:.3f}" for lang, pt in per.items())
        print(f"  {level:8s} {at}  {line}  unrelated {unrelated:.1%}  (neither language: p >= {t:.3f})")
    thresholds = {level: t for level, (t, _, _, _) in found.items()}
    by_language = {
        lang: {level: per[lang] for level, (_, per, _, _) in found.items()} for lang in LANGS
    }
    final = fit(features, y)
    scaler, lr = final[0], final[1]
    out["models"][model] = {
        "mean": scaler.mean_.tolist(),
        "scale": scaler.scale_.tolist(),
        "coef": lr.coef_[0].tolist(),
        "intercept": float(lr.intercept_[0]),
        "candidate_similarity": floor,
        "thresholds": thresholds,
        "language_thresholds": by_language,
    }
json.dump(out, open(sys.argv[2], "w"), indent=1)
