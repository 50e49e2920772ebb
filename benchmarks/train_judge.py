"""Fit the answer-or-refuse judge (chatbot/judge.py) and measure it across data sets.

    python benchmarks/train_judge.py [--write] [--json]

For every dev set (dev_qa, analyst_dev, XQuAD dev half, SQuAD 2.0 Normans indexed with the XQuAD
articles; the indexes of benchmarks/qa_eval.py) it runs the project's own answer path up to the
judge (retrieval, sentence scoring with terms and meaning, ``chatbot.judge.features``) and
labels each question answerable or not. A logistic regression (numpy, L2, standardised
features, every set given the same total weight) is then scored only on data it was not fitted on:

- leave one set out: fit on the other sets, score the held-out set (analyst, dev, xquad);
- SQuAD 2.0: grouped folds by paragraph (all wordings about one paragraph, answerable or not,
  stay on one side), fitted on the other folds plus every other set;
- tests/data/seed_qa.jsonl (the project's own questions) and tests/data/analyst_blind.jsonl (blind
  set 1, a dev set since rules were written from its misses) are never fitted on: they are scored by
  the model fitted on everything else.

It also prints which part of ``SupportPolicy.answers`` refuses each set's questions: a rule
(``type_gap_top``, ``names_unknown``, ``names_listed_only``, ``time_mismatch``: refused whatever the
probability) or
the probability alone, and the univariate AUCs of the used features on the questions no rule
refuses (what the probability has to decide).

``--write`` fits the final model on all four dev sets and writes chatbot/judge_model.json with
the coefficients, the command, the date and these cross-set figures. Sentence vectors computed
here are cached in benchmarks/.cache/sentence-vectors.pkl (keyed by the sentence text).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from qa_eval import CACHE, SETS, index_for  # noqa: E402

FIT_SETS = ("dev", "analyst", "xquad", "squad2")
HELD_OUT_ONLY = ("seed", "blind")
VECTOR_CACHE = CACHE / "sentence-vectors.pkl"
TOKEN_CACHE = CACHE / "token-vectors.pkl"  # TokenAligner's per-text token vectors (float16)
SQUAD2_FOLDS = 5
# The features the model uses: those whose relation to answerability points the same way on
# every dev set (univariate AUCs printed by this script, in benchmarks/RESULTS.md). Coverage, the
# share of terms absent from the index and the margin point opposite ways on analyst-phrased
# questions (paraphrases cover few words; near-misses cover many), so they are computed and
# reported but not used. JUDGE_FEATURES=a,b,c tries another set.
USED = tuple(os.environ["JUDGE_FEATURES"].split(",")) if os.environ.get("JUDGE_FEATURES") else (
    "alignment", "semantic_max", "type_gap")
L2 = 1.0


def collect(names, embedder) -> dict[str, list[dict]]:
    """Per set, per question: the judge's features, the label and the paragraph group."""
    from chatbot.evaluate import groups_found, load_items
    from chatbot.extractive import select, spans_actors
    from chatbot.judge import FEATURES
    from chatbot.service import QAService

    cached = pickle.loads(VECTOR_CACHE.read_bytes()) if VECTOR_CACHE.exists() else {}
    tokens = pickle.loads(TOKEN_CACHE.read_bytes()) if TOKEN_CACHE.exists() else {}
    tokens = {k: (t, v.astype(np.float32)) for k, (t, v) in tokens.items()}
    out = {}
    for name in names:
        service = QAService(index_for(name, embedder), embedder=embedder).open()
        service.sentences._cache.update(cached)
        service.sentences.cache_size = 10**9
        service.aligner._cache.update(tokens)
        service.aligner.cache_size = 10**9
        rows = []
        for n, item in enumerate(load_items(SETS[name][2])):
            vector = embedder.embed_query(item.question)
            passages = service.passages(item.question, vector)
            found = service.answerer.rank(item.question, passages, vector)
            chosen = select(found.ranked, service.answerer._quoting(item.question, None), per_actor=spans_actors(item.question),
                            question=item.question)
            quoted = "\n".join(c.text for c in chosen)
            feats = found.features or {k: 0.0 for k in FEATURES}
            rows.append({"id": item.id, "question": item.question, "label": int(item.answerable),
                         "x": [feats[k] for k in FEATURES], "features": dict(feats), "evidence": bool(item.evidence) and
                         groups_found(item.evidence, quoted), "n": n,
                         "top": [c.text for c in found.ranked[:3]]})  # for benchmarks/reading.py
        _paragraph_groups(rows)
        out[name] = rows
        cached.update(service.sentences._cache)
        tokens.update(service.aligner._cache)
    VECTOR_CACHE.parent.mkdir(parents=True, exist_ok=True)
    VECTOR_CACHE.write_bytes(pickle.dumps(cached))
    TOKEN_CACHE.write_bytes(pickle.dumps({k: (t, v.astype(np.float16)) for k, (t, v) in tokens.items()}))
    return out


def _paragraph_groups(rows: list[dict]) -> None:
    """SQuAD files list a paragraph's answerable questions, then its unanswerable ones, paragraph by
    paragraph: a paragraph starts where an answerable question follows an unanswerable one."""
    group, prev = 0, None
    for r in rows:
        if prev is not None and r["label"] == 1 and prev == 0:
            group += 1
        r["group"] = group
        prev = r["label"]


def fit(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = L2) -> dict:
    """Weighted L2 logistic regression on standardised features (Newton's method)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = np.hstack([np.ones((len(X), 1)), (X - mean) / scale])
    beta = np.zeros(Z.shape[1])
    w = w / w.sum() * len(w)
    reg = np.full(Z.shape[1], l2)
    reg[0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-np.clip(Z @ beta, -30, 30)))
        grad = Z.T @ (w * (p - y)) + reg * beta
        hess = (Z * (w * p * (1 - p))[:, None]).T @ Z + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": mean, "scale": scale, "bias": float(beta[0]), "coef": beta[1:]}


def predict(model: dict, X: np.ndarray) -> np.ndarray:
    z = model["bias"] + ((X - model["mean"]) / model["scale"]) @ model["coef"]
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def _arrays(rows_by_set: dict[str, list[dict]]):
    X, y, w = [], [], []
    for rows in rows_by_set.values():
        if not rows:
            continue
        for r in rows:
            X.append(r["x"])
            y.append(r["label"])
            w.append(1.0 / len(rows))  # every set weighs the same in total
    return np.asarray(X, dtype=float), np.asarray(y, dtype=float), np.asarray(w, dtype=float)


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return None
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def figures(rows: list[dict], p: np.ndarray, threshold: float, keep: bool = True) -> dict:
    """Decision figures of SupportPolicy.answers (the probability and the number/date rule). ``keep``:
    record each row's probability as ``r["p"]`` (for ``refusals``)."""
    from chatbot.answerer import SupportPolicy

    if keep:
        for r, pi in zip(rows, p):
            r["p"] = float(pi)
    policy = SupportPolicy(threshold=threshold)
    y = np.asarray([r["label"] for r in rows])
    answer = np.asarray([policy.answers(float(pi), r["features"]) for pi, r in zip(p, rows)])
    ev = np.asarray([r["evidence"] for r in rows])
    n_ans, n_un = int(y.sum()), int((1 - y).sum())
    return {
        "questions": len(rows),
        "decision_accuracy": float((answer == (y == 1)).mean()),
        "answered_answerable": float(answer[y == 1].mean()) if n_ans else None,
        "refused_unanswerable": float((~answer[y == 0]).mean()) if n_un else None,
        "evidence_in_quotes": float(ev[y == 1].mean()) if n_ans else None,  # whatever the decision
        "auc": auc(p, y),
    }


def refusals(data: dict[str, list[dict]], threshold: float) -> dict:
    """Per set: questions refused by a rule, by the probability alone (cross-set ``p``), and the
    univariate AUCs of the used features on the questions no rule refuses."""
    from chatbot.answerer import SupportPolicy

    policy = SupportPolicy(threshold=threshold)
    out = {}
    for name, rows in data.items():
        y = np.asarray([r["label"] for r in rows])
        rule = np.asarray([not policy.answers(1.0, r["features"]) for r in rows], dtype=bool)
        low = np.asarray([r["p"] < threshold for r in rows], dtype=bool) & ~rule
        rest = [r for r, refused in zip(rows, rule) if not refused]
        y_rest = np.asarray([r["label"] for r in rest])
        out[name] = {
            "refused_by_rule": {"unanswerable": int(rule[y == 0].sum()), "answerable": int(rule[y == 1].sum())},
            "refused_by_probability_only": {"unanswerable": int(low[y == 0].sum()),
                                            "answerable": int(low[y == 1].sum())},
            "unanswerable": int((y == 0).sum()),
            "auc_where_no_rule_refuses": {f: auc(np.asarray([r["features"][f] for r in rest]), y_rest)
                                          for f in USED},
        }
    return out


def cross_set(data: dict[str, list[dict]], threshold: float) -> dict:
    """Every figure from a model that never saw the scored questions."""
    out = {}
    for held in FIT_SETS:
        if held == "squad2":
            continue
        model = fit(*_arrays({k: v for k, v in data.items() if k in FIT_SETS and k != held}))
        rows = data[held]
        out[held] = figures(rows, predict(model, np.asarray([r["x"] for r in rows])), threshold)
        out[held]["protocol"] = "leave-one-set-out"
    # SQuAD 2.0: grouped folds by paragraph
    rows = data["squad2"]
    groups = sorted({r["group"] for r in rows})
    fold_of = {g: i % SQUAD2_FOLDS for i, g in enumerate(groups)}
    p = np.zeros(len(rows))
    for k in range(SQUAD2_FOLDS):
        train = {key: v for key, v in data.items() if key in FIT_SETS and key != "squad2"}
        train["squad2"] = [r for r in rows if fold_of[r["group"]] != k]
        model = fit(*_arrays(train))
        idx = [i for i, r in enumerate(rows) if fold_of[r["group"]] == k]
        p[idx] = predict(model, np.asarray([rows[i]["x"] for i in idx]))
    out["squad2"] = figures(rows, p, threshold)
    out["squad2"]["protocol"] = f"{SQUAD2_FOLDS} folds grouped by paragraph ({len(groups)} paragraphs), other sets in training"
    # SQuAD 2.0 with no SQuAD 2.0 data at all in training (the hardest transfer)
    model = fit(*_arrays({k: v for k, v in data.items() if k in FIT_SETS and k != "squad2"}))
    out["squad2_unseen"] = figures(rows, predict(model, np.asarray([r["x"] for r in rows])), threshold, keep=False)
    out["squad2_unseen"]["protocol"] = "leave-one-set-out (no SQuAD 2.0 question in training)"
    model = fit(*_arrays({k: v for k, v in data.items() if k in FIT_SETS}))
    for name in HELD_OUT_ONLY:
        if name in data:
            rows = data[name]
            out[name] = figures(rows, predict(model, np.asarray([r["x"] for r in rows])), threshold)
            out[name]["protocol"] = "never fitted on (model fitted on the four dev sets)"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="fit on all dev sets and write chatbot/judge_model.json")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the features collected by the last run (benchmarks/.cache/judge-data.pkl)")
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the policy's)")
    args = parser.parse_args()
    from common import prepare_env

    prepare_env()  # the project's process defaults (offline, no telemetry), as every benchmark
    from chatbot.judge import FEATURES, MODEL_FILE
    from chatbot.answerer import SupportPolicy
    from ingest.embed import SentenceTransformerEmbedder

    threshold = SupportPolicy().threshold if args.threshold is None else args.threshold
    embedder = SentenceTransformerEmbedder()
    saved = CACHE / "judge-data.pkl"
    if args.reuse and saved.exists():
        data = pickle.loads(saved.read_bytes())
    else:
        data = collect(FIT_SETS + HELD_OUT_ONLY, embedder)
        saved.write_bytes(pickle.dumps(data))
    univariate = {name: {f: auc(np.asarray([r["x"][FEATURES.index(f)] for r in rows]),
                                np.asarray([r["label"] for r in rows])) for f in FEATURES}
                  for name, rows in data.items() if 0 < sum(r["label"] for r in rows) < len(rows)}
    if not args.json:
        for name, row in univariate.items():
            print(f"AUC {name:8s} " + " ".join(f"{f}={v:.2f}" for f, v in row.items()))
    data = {name: [{**r, "x": [r["x"][FEATURES.index(f)] for f in USED]} for r in rows] for name, rows in data.items()}
    results = cross_set(data, threshold)
    if not args.json:
        for name, row in results.items():
            print(f"{name:14s} " + "  ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float))
                  + f"  ({row['protocol']})")
    sources = refusals(data, threshold)
    if not args.json:
        for name, row in sources.items():
            rule, low = row["refused_by_rule"], row["refused_by_probability_only"]
            print(f"refused {name:8s} by a rule: {rule['unanswerable']}/{row['unanswerable']} unanswerable, "
                  f"{rule['answerable']} answerable; by the probability alone: {low['unanswerable']} unanswerable, "
                  f"{low['answerable']} answerable; AUC where no rule refuses: "
                  + " ".join(f"{f}={v:.2f}" if v is not None else f"{f}=-" for f, v in
                             row["auc_where_no_rule_refuses"].items()))
    model = fit(*_arrays({k: v for k, v in data.items() if k in FIT_SETS}))
    record = {
        "about": "Answer-or-refuse judge of chatbot/judge.py: logistic regression on standardised features. "
                 "p = sigmoid(bias + sum(coef * (x - mean) / scale)); answered when p >= QA_ANSWER_THRESHOLD "
                 "and, for a question asking for a number, a date or the holder of a role, one of the top two "
                 "sentences supplies one about what the question names, and those sentences name the "
                 "question's names other than as items of a list (SupportPolicy.answers). cross_set: "
                 "figures of models that never saw the scored questions.",
        "command": "python benchmarks/train_judge.py --write",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "embedding_model": embedder.model_id,
        "trained_on": {k: len(data[k]) for k in FIT_SETS},
        "l2": L2,
        "threshold": threshold,
        "model": {"features": list(USED), "mean": [round(float(v), 6) for v in model["mean"]],
                  "scale": [round(float(v), 6) for v in model["scale"]],
                  "coef": [round(float(v), 6) for v in model["coef"]], "bias": round(model["bias"], 6)},
        "univariate_auc": {k: {f: round(v, 3) for f, v in row.items()} for k, row in univariate.items()},
        "cross_set": {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in row.items()}
                      for k, row in results.items()},
    }
    if args.write:
        MODEL_FILE.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {MODEL_FILE.relative_to(ROOT)}", file=sys.stderr)
    print(json.dumps({"cross_set": record["cross_set"], "refusals": sources, "coef": dict(zip(USED, record["model"]["coef"]))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
