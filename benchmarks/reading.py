"""Experiment: can a parse tell SQuAD 2.0's unanswerable questions from answerable ones? (issue 10)

    python benchmarks/reading.py [--top 1,2] [--json]

Reads the questions and their top sentences that ``benchmarks/train_judge.py`` collected
(benchmarks/.cache/judge-data.pkl: run that first), parses them with spaCy's small English
pipeline in its child process (``chatbot.brief.nlp.parse``), computes the checks below and prints,
per set, how often each fires on answerable and unanswerable questions, the univariate AUCs, and
the cross-set figures of the judge with these features added (``train_judge.cross_set``: the same
protocols). Result (benchmarks/RESULTS.md): no gain, so the answer path does not parse.

Questions written to look answerable from a relevant paragraph (SQuAD 2.0's "unanswerable" ones)
usually change one thing of an answerable question: a modifier ("When did Herve serve as a
*Norman* general?" where the text says Byzantine), the roles of two names ("Who did King Charles
III swear fealty to?" where Rollo swore fealty to Charles), an inserted qualifier ("the *first*
Byzantine mercenary"), a negation, or a word the text never uses. Each check compares the parse of
the question (lemmas, parts of speech, dependencies, entities) with the parse of a candidate
sentence; none uses a word list fitted to one collection. ``reading_features`` takes the best
value over the top sentences (the one most favourable to answering).
"""
from __future__ import annotations

from typing import Sequence

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from chatbot.brief.nlp import Parsed  # noqa: E402

READING_FEATURES = (
    "unmatched",  # share of the question's content lemmas the sentence lacks
    "modifier_mismatch",  # a noun of the question is in the sentence, but never with the question's modifier
    "role_swap",  # a name of the question fills the other role of the shared verb in the sentence
    "qualifier_missing",  # first/last/only/most (an ordinal or superlative) the sentence does not have
    "answer_missing",  # no entity of the kind asked for (who -> person, when -> date...) beyond the question's
    "negation_mismatch",  # exactly one of question and sentence is negated
)
_CONTENT = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "NUM", "ADV"})
_LIGHT = frozenset("be do have get make take go come say use also first then there here not so very more "
                   "most just only even still".split())
_WH = frozenset("what which who whom whose when where why how".split())
_MODIFIER_DEPS = frozenset({"amod", "compound", "nmod", "poss", "nummod"})
_SUBJECT = frozenset({"nsubj", "csubj", "expl"})
_OBJECT = frozenset({"dobj", "nsubjpass", "attr", "oprd", "dative"})
_QUALIFIERS = frozenset("first last only most least earliest latest largest smallest biggest highest lowest "
                        "oldest youngest greatest longest shortest main primary sole".split())
_EXPECTED = {  # entity labels of spaCy's English model that answer each kind of question
    "person": {"PERSON", "ORG", "NORP", "GPE"},
    "date": {"DATE", "TIME"},
    "place": {"GPE", "LOC", "FAC"},
    "number": {"CARDINAL", "QUANTITY", "MONEY", "PERCENT", "DATE", "TIME"},
}


def _lemma(p: Parsed, i: int) -> str:
    return p.lemmas[i].lower()


def _wh_tokens(q: Parsed) -> set[int]:
    """The wh-word and the phrase it heads or modifies ("what country", "how many men")."""
    out: set[int] = set()
    for i in range(len(q)):
        if _lemma(q, i) in _WH:
            out.add(i)
            h = q.heads[i]
            if q.deps[i] in ("det", "advmod", "amod") and q.pos[h] in ("NOUN", "ADJ", "ADV", "PROPN"):
                out.add(h)
                if _lemma(q, h) in ("many", "much") and q.heads[h] != h:
                    out.add(q.heads[h])
    return out


def content(q: Parsed) -> list[int]:
    """Token indices of the question's content words (not the wh-phrase, not light verbs)."""
    wh = _wh_tokens(q)
    return [i for i in range(len(q)) if q.pos[i] in _CONTENT and i not in wh and _lemma(q, i) not in _LIGHT
            and _lemma(q, i) not in _WH and any(ch.isalnum() for ch in q.word(i))]


def _lemmas(p: Parsed) -> set[str]:
    return {_lemma(p, i) for i in range(len(p))} | {p.word(i).lower() for i in range(len(p))}


def unmatched(q: Parsed, context: Sequence[Parsed]) -> float:
    words = content(q)
    if not words:
        return 0.0
    have = set().union(*(_lemmas(c) for c in context)) if context else set()
    return sum(_lemma(q, i) not in have and q.word(i).lower() not in have for i in words) / len(words)


def modifier_mismatch(q: Parsed, s: Parsed) -> float:
    """1 when a noun the question modifies with a name ("*Norman* general", "*Frankish* identity")
    occurs in the sentence, never with that name nearby (its phrase, or within three tokens;
    names compared by their first five letters, so "Scottish" matches "Scotland")."""
    wh = _wh_tokens(q)
    for i in range(len(q)):
        if q.deps[i] not in ("amod", "compound", "nmod") or i in wh or not q.word(i)[:1].isupper() or i == 0:
            continue
        head = q.heads[i]
        if head == i or head in wh or q.pos[head] != "NOUN":
            continue
        mod, noun = _lemma(q, i)[:5], _lemma(q, head)
        spots = [j for j in range(len(s)) if _lemma(s, j) == noun]
        if spots and not any(_near(s, j, mod) for j in spots):
            return 1.0
    return 0.0


def _near(s: Parsed, j: int, prefix: str) -> bool:
    a, b = s.phrase(j)
    window = range(max(0, min(a, j - 3)), min(len(s), max(b, j + 4)))
    return any(_lemma(s, k).startswith(prefix) or s.word(k).lower().startswith(prefix) for k in window)


def _role(p: Parsed, i: int, verb: int) -> str | None:
    """'agent' or 'patient' of token ``i`` with respect to ``verb`` (passives turned around)."""
    passive = any(p.deps[c] in ("auxpass", "nsubjpass") for c in p.children[verb])
    j, dep = i, p.deps[i]
    # climb compounds/appositions to the argument's head, then to the verb
    while p.heads[j] != verb and p.heads[j] != j and dep in ("compound", "flat", "appos", "conj", "poss"):
        j = p.heads[j]
        dep = p.deps[j]
    if p.heads[j] != verb:
        if dep == "pobj" and p.heads[p.heads[j]] == verb and _lemma(p, p.heads[j]) == "by" and passive:
            return "agent"
        if dep == "pobj" and p.heads[p.heads[j]] == verb:
            return "patient"
        return None
    if dep in _SUBJECT:
        return "agent"
    if dep == "nsubjpass":
        return "patient"
    if dep == "agent":
        return "agent"
    if dep in _OBJECT:
        return "patient"
    return None


def role_swap(q: Parsed, s: Parsed) -> float:
    """1 when a name or noun of the question is the agent of the question's verb and the patient of
    the same verb in the sentence, or the reverse ("Who did King Charles III swear fealty to?")."""
    wh = _wh_tokens(q)
    for v in range(len(q)):
        if q.pos[v] != "VERB" or _lemma(q, v) in _LIGHT:
            continue
        verbs = [k for k in range(len(s)) if s.pos[k] in ("VERB", "AUX") and _lemma(s, k) == _lemma(q, v)]
        if not verbs:
            continue
        for i in range(len(q)):
            if i in wh or q.pos[i] not in ("PROPN", "NOUN", "PRON") or _lemma(q, i) in _WH:
                continue
            rq = _role(q, i, v)
            if rq is None:
                continue
            for k in verbs:
                for j in range(len(s)):
                    if _lemma(s, j) == _lemma(q, i) and s.pos[j] in ("PROPN", "NOUN"):
                        rs = _role(s, j, k)
                        if rs is not None and rs != rq:
                            return 1.0
    return 0.0


def qualifier_missing(q: Parsed, s: Parsed) -> float:
    asked = {_lemma(q, i) for i in range(len(q)) if _lemma(q, i) in _QUALIFIERS}
    return float(bool(asked - _lemmas(s)))


def answer_missing(q: Parsed, s: Parsed, kind: str | None) -> float:
    """The question asks for a person, place, date or number and the sentence has no entity of
    that kind except those the question already names."""
    labels = _EXPECTED.get(kind or "")
    if not labels:
        return 0.0
    asked = q.text.lower()
    for a, b, label in s.ents:
        if label in labels and s.span_text(a, b).lower() not in asked:
            return 0.0
    return 1.0


def negated(p: Parsed) -> bool:
    return any(d == "neg" for d in p.deps) or any(_lemma(p, i) in ("never", "no", "none", "nobody")
                                                    for i in range(len(p)))


def reading_features(q: Parsed, sentences: Sequence[Parsed], kind: str | None) -> dict[str, float]:
    """The checks above for each of the top sentences; each feature takes the value of the sentence
    most favourable to answering."""
    if not sentences:
        return {f: 0.0 for f in READING_FEATURES}
    rows = [{
        "unmatched": unmatched(q, [s]),
        "modifier_mismatch": modifier_mismatch(q, s),
        "role_swap": role_swap(q, s),
        "qualifier_missing": qualifier_missing(q, s),
        "answer_missing": answer_missing(q, s, kind),
        "negation_mismatch": float(negated(q) != negated(s)),
    } for s in sentences]
    return {f: min(r[f] for r in rows) for f in READING_FEATURES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", default="1,2", help="how many top sentences to check (comma-separated runs)")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    args = parser.parse_args()
    import train_judge as tj
    from chatbot.brief.nlp import parse
    from chatbot.judge import asks_for
    from chatbot.answerer import SupportPolicy

    saved = tj.CACHE / "judge-data.pkl"
    if not saved.exists():
        raise SystemExit(f"{saved} not found: run `python benchmarks/train_judge.py` first")
    data = pickle.loads(saved.read_bytes())
    texts = sorted({t for rows in data.values() for r in rows for t in [r["question"], *r.get("top", [])]})
    parsed = dict(zip(texts, parse(texts)[0]))
    base = list(tj.USED)
    summary: dict = {}
    for top in (int(t) for t in args.top.split(",")):
        extra = {name: [reading_features(parsed[r["question"]], [parsed[t] for t in r.get("top", [])[:top]],
                                         asks_for(r["question"])) for r in rows] for name, rows in data.items()}
        fires = {f"{name}/{'answerable' if label else 'unanswerable'}":
                 {f: round(float(np.mean([e[f] > 0.5 for r, e in zip(rows, extra[name]) if r["label"] == label])), 3)
                  for f in READING_FEATURES[1:]}
                 for name, rows in data.items() for label in (1, 0) if any(r["label"] == label for r in rows)}
        aucs = {name: {f: tj.auc(-np.asarray([e[f] for e in extra[name]]), np.asarray([r["label"] for r in rows]))
                       for f in READING_FEATURES} for name, rows in data.items()
                if 0 < sum(r["label"] for r in rows) < len(rows)}
        runs = {}
        for used in (base, base + ["unmatched"], base + ["modifier_mismatch", "role_swap"], base + list(READING_FEATURES)):
            d = {name: [{**r, "x": [{**r["features"], **e}[k] for k in used]} for r, e in zip(rows, extra[name])]
                 for name, rows in data.items()}
            res = tj.cross_set(d, SupportPolicy().threshold)
            runs["+".join(used[len(base):]) or "judge alone"] = {k: round(v["decision_accuracy"], 3)
                                                                 for k, v in res.items()}
        summary[f"top{top}"] = {"fires": fires, "auc": aucs, "cross_set_decision_accuracy": runs}
        if not args.json:
            print(f"== top {top} sentence(s)")
            for k, v in fires.items():
                print(f"fires {k:22s} " + " ".join(f"{f}={x:.3f}" for f, x in v.items()))
            for k, v in aucs.items():
                print(f"AUC   {k:22s} " + " ".join(f"{f}={(x or 0):.2f}" for f, x in v.items()))
            for k, v in runs.items():
                print(f"cross-set with {k:40s} " + " ".join(f"{n}={x:.3f}" for n, x in v.items()))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
