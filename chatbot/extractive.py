"""The default answerer: no LLM, offline, deterministic.

1. Every sentence of the retrieved passages is a candidate (deduplicated across overlapping chunks).
2. Each is scored against the question: its MiniLM cosine to the question (vectors stored at
   ingest, ``chatbot.relevance``), IDF-weighted coverage of the question's terms by the sentence
   (not the words that only say it asks for a view or a reason: "see", "what drives"; plus, at
   half weight, by its neighbours and its document title; a state named by its capital or demonym
   counts as the state), the rank of its passage, and a small bonus when the sentence
   has the kind of token the question asks for (a number for "how many", a date for "when", a
   name for "who", a stated cause for "why", reported speech for a question about an actor's
   position). The top few long sentences are also scored by their clause closest in meaning
   (``by_best_clause``): a long sentence's vector blurs its clauses.
3. The best sentence, and up to three more that score close to it, are quoted best first, each
   followed by its ``[n]`` marker (for a number or date question, only runners-up that give one).
   Each citation is the exact sentence span.
4. Whether that answers the question is the judge's call (``chatbot.judge``, ``SupportPolicy`` in
   chatbot.answerer): answered, partial ("The sources don't say how long. What they say: …"),
   or "The sources don't say …" with the closest sentences as nearest evidence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from chatbot.brief.gazetteer import default_gazetteer
from chatbot.judge import DETAIL_KINDS, asks_for, names_in, reason_opening, supplies
from chatbot.relevance import similarities
from chatbot.retrieve import Passage
from chatbot.types import Citation
from ingest.lexical import STOPWORDS, LexicalIndex, tokenize

# Question words that carry no topic (tokenize() already drops common stop words).
QUESTION_NOISE = frozenset(tokenize("many much kind type sort name named called happen happened describe toward "
                                    "towards"))
_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                     r"fifty|hundred|thousand|million|billion|half|third|quarter|fifth|sixth|dozen)\b", re.I)
_YEAR_OR_DATE = re.compile(r"\b(1[0-9]{3}|20[0-9]{2})\b|\b(January|February|March|April|May|June|July|August|"
                           r"September|October|November|December)\b|\bcentur", re.I)
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][a-z]+")
# A sentence that states a cause or a motive (causal connectives and reason nouns; any English text)
_CAUSE = re.compile(r"\b(?:because|due to|owing to|as a result|thanks to|in order to|so that|so as to|therefore|hence|"
                    r"factors?|reasons?|motives?|motivat\w*|driven by|caused by|results? (?:of|from)|aim(?:s|ed)? (?:to|at)|"
                    r"seek(?:s|ing)? to|in exchange for)\b", re.I)
# A question about an actor's position ("What is Kazakhstan's official line on ...", "How does X view
# ...", "What does X want", "What are Dushanbe's demands") and a sentence that reports what someone
# said or holds (reported speech: a verb of saying, or a quotation)
_POSITION = re.compile(r"^(?:what (?:is|are|was|were) [\w’'\s-]*?\b(?:line|position|stance|view|views|approach|attitude|"
                       r"policy|demands|conditions|positions)\b|how (?:does|do|did) .+ \b(?:see|view|regard|perceive)\b|"
                       r"what (?:does|do|did) .+ \b(?:say|want|think|argue|demand|claim|believe)\b|"
                       r"what (?:argument|arguments|demands|conditions|case)\b)", re.I)
# The words of a position question that say it asks for a view, not what the view is about ("How does
# Tajikistan *see* the Taliban?", "What is Kazakhstan's *approach* to …"). In a small collection they
# are rare, so their IDF ranked a sentence that happens to "see" something above one about Tajikistan.
# The opening of a reason question ("What *drives* …", "What *explains* …") is dropped the same way.
POSITION_FRAME = frozenset(tokenize("see view views regard perceive line stance position positions approach attitude "
                                    "think believe"))
_REPORTED = re.compile(r"\b(?:said|says|saying|stated|states|told|insists?|insisted|argued?|argues|claims?|claimed|"
                       r"called|warned|according to)\b|[“”\"]", re.I)


@dataclass(frozen=True)
class ExtractiveConfig:
    max_sentences: int = 4
    max_chars: int = 600  # budget for quoted text per answer (the best sentence is always kept)
    keep_ratio: float = 0.5  # extra sentences must score at least this fraction of the best
    context_weight: float = 0.5
    passage_weight: float = 0.3
    type_bonus: float = 0.2
    semantic_weight: float = 1.0  # weight of the sentence's cosine to the question

    def __post_init__(self) -> None:
        if not 1 <= self.max_sentences <= 10:
            raise ValueError(f"max_sentences must be between 1 and 10 (got {self.max_sentences}).")
        if not 0 <= self.keep_ratio <= 1:
            raise ValueError(f"keep_ratio must be between 0 and 1 (got {self.keep_ratio}).")
        if self.max_chars < 50:
            raise ValueError(f"max_chars must be at least 50 (got {self.max_chars}).")


@dataclass(frozen=True)
class QuestionProfile:
    """The question's content terms with their IDF weights, and what kind of answer it wants.

    ``absent``: the IDF-weighted share of the question's terms that occur nowhere in the index
    (a strong sign that the documents do not cover what is asked).
    """

    terms: dict[str, float]
    kind: str | None
    absent: float

    @classmethod
    def of(cls, question: str, index: LexicalIndex) -> "QuestionProfile":
        kind = answer_type(question) or ("reason" if asks_for(question) == "reason" else None) or (
            "position" if _POSITION.match(" ".join(question.split())) else None)
        words = question_terms(question)
        frame = POSITION_FRAME if kind == "position" else frozenset(tokenize(reason_opening(question)))
        words = [t for t in words if t not in frame] or words
        terms = {t: index.idf(t) for t in words}
        total = sum(terms.values()) or 1.0
        absent = sum(w for t, w in terms.items() if not index.contains(t)) / total
        return cls(terms, kind, absent)


@dataclass
class Candidate:
    passage: Passage
    rank: int
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    coverage: float = 0.0
    context: float = 0.0
    semantic: float = 0.0  # cosine between the question and the sentence (chatbot.relevance)
    score: float = 0.0
    type_match: bool = False


@lru_cache(maxsize=1)
def _alias_forms() -> dict[str, list[tuple[str, str | None]]]:
    """First word -> (form, state or None), longest first: every capital and demonym of the
    gazetteer (chatbot/brief/data/states.tsv), and the names that merely contain one ("Indian
    Ocean": None) or are a plural demonym ("Tajiks": people, not the state), which hide it. A
    dictionary lookup per capitalised word finds the same mentions as the gazetteer's one big
    regular expression, far faster (benchmarks/RESULTS.md, issue 10 round 2)."""
    gaz = default_gazetteer()
    forms: dict[str, list[tuple[str, str | None]]] = {}

    def plural(form: str, kind: str) -> bool:
        return kind == "demonym" and form.endswith("s") and gaz.forms.get(form[:-1], ("", ""))[1] == "demonym"

    entries = [(f, None if plural(f, kind) else state) for f, (state, kind) in gaz.forms.items() if kind != "name"]
    entries += [(f, None) for f in gaz.blocked] + [(f, None) for f, (_, kind) in gaz.forms.items() if kind == "name"]
    for form, state in entries:
        forms.setdefault(re.split(r"[\s-]", form, maxsplit=1)[0], []).append((form, state))
    for options in forms.values():
        options.sort(key=lambda x: -len(x[0]))
    return forms


_CAPITALISED = re.compile(r"(?<![\w\-.])[A-Z][\w’'.]*")


def _aliases(text: str) -> list[tuple[int, int, str]]:
    """(start, end, state) of each mention of a state by its capital or by a singular demonym ("the
    Uzbek city"), left to right, longest form first."""
    forms = _alias_forms()
    out: list[tuple[int, int, str]] = []
    pos = 0
    for m in _CAPITALISED.finditer(text):
        if m.start() < pos:
            continue
        word = re.split(r"[’'.]", m.group(), maxsplit=1)[0]
        for form, state in forms.get(word, ()):
            end = m.start() + len(form)
            if text.startswith(form, m.start()) and not (end < len(text) and (text[end].isalnum() or text[end] == "-")):
                if state is not None:
                    out.append((m.start(), end, state))
                pos = end
                break
    return out


def canonical(text: str) -> str:
    """The text with every state named by its capital or demonym named by its name ("Dushanbe's
    demands" -> "Tajikistan's demands", "the Uzbek city" -> "the Uzbekistan city"): the gazetteer
    of chatbot/brief/data/states.tsv, data for any collection."""
    for start, end, state in reversed(_aliases(text)):
        text = text[:start] + state + text[end:]
    return text


@lru_cache(maxsize=10_000)
def terms_of(text: str) -> frozenset[str]:
    """A sentence's word stems, plus the name of every state it names by its capital or demonym
    (cached: a collection's sentences recur from question to question)."""
    words = set(tokenize(text))
    if _aliases(text):
        words |= set(tokenize(canonical(text)))
    return frozenset(words)


def expand_query(question: str) -> str:
    """The question plus every other way texts name the states it names (capitals, demonyms), for
    the keyword retriever: "Uzbekistan's envoy" also finds "Uzbek President"."""
    gaz = default_gazetteer()
    states = {h.state for h in gaz.find(question)}
    if not states:
        return question
    forms = [f for f, (state, kind) in gaz.forms.items()
             if state in states and (kind != "name" or f == state) and not f.endswith("s")
             and not re.search(rf"(?<!\w){re.escape(f)}(?!\w)", question)]
    return f"{question} {' '.join(forms)}" if forms else question


def question_terms(question: str) -> list[str]:
    seen = []
    for t in tokenize(canonical(question)):
        if t not in QUESTION_NOISE and t not in seen:
            seen.append(t)
    return seen


def answer_type(question: str) -> str | None:
    q = question.lower().strip()
    if re.match(r"(how (many|much|long|old|far|large|big|tall|high)|what (percentage|percent|share|proportion|"
                r"number|amount|fraction))", q):
        return "number"
    if re.match(r"(when|what year|in what year|which year|what date|on what date)", q):
        return "date"
    if re.match(r"(who|whom|whose)\b", q):
        return "name"
    return None


def _type_match(kind: str | None, text: str) -> bool:
    if kind == "number":
        return bool(_NUMBER.search(text))
    if kind == "date":
        return bool(_YEAR_OR_DATE.search(text))
    if kind == "name":
        return bool(_NAME.search(text))
    if kind == "reason":
        return bool(_CAUSE.search(text))
    if kind == "position":
        return bool(_REPORTED.search(text))
    return False


def candidates(passages: Sequence[Passage]) -> list[Candidate]:
    out: list[Candidate] = []
    seen: set[tuple[str, int, int]] = set()
    for rank, p in enumerate(passages, 1):
        c = p.chunk.chunk
        for s, e in c.sentences:
            key = (c.doc_id, s, e)
            if key in seen:
                continue
            seen.add(key)
            text = c.text[s - c.start : e - c.start]
            if is_heading(text, p.chunk.title):
                continue
            out.append(Candidate(p, rank, c.doc_id, p.chunk.title, s, e, text))
    return out


def is_heading(sentence: str, title: str) -> bool:
    """The document title or a short line without final punctuation: a label, not a statement."""
    bare = sentence.strip().lstrip("#").strip()
    if bare.lower() == title.strip().lower():
        return True
    return len(bare.split()) <= 8 and not bare.endswith((".", "!", "?", "…", "”", '"', "’", "'", ")", ":"))


def score_candidates(profile: QuestionProfile, cands: list[Candidate],
                     config: ExtractiveConfig = ExtractiveConfig(), semantic: Sequence[float] | None = None
                     ) -> list[Candidate]:
    """Score every candidate (best first). ``semantic``: the question-sentence cosines, when known."""
    weights = profile.terms
    total = sum(weights.values()) or 1.0
    kind = profile.kind
    tokens = [terms_of(c.text) for c in cands]
    titles: dict[str, set[str]] = {}
    for i, c in enumerate(cands):
        own = tokens[i]
        near: set[str] = set()
        for j in (i - 1, i + 1):
            if 0 <= j < len(cands) and cands[j].doc_id == c.doc_id and abs(cands[j].start - c.start) < 2000:
                near |= tokens[j]
        title = titles.setdefault(c.title, terms_of(c.title))
        near |= title
        c.coverage = sum(w for t, w in weights.items() if t in own) / total
        c.context = sum(w for t, w in weights.items() if t in near and t not in own) / total
        c.type_match = kind is None or _type_match(kind, c.text)
        c.semantic = float(semantic[i]) if semantic is not None else 0.0
        c.score = (
            c.coverage
            + config.semantic_weight * c.semantic
            + config.context_weight * c.context
            + config.passage_weight / c.rank
            + (config.type_bonus if kind is not None and c.type_match else 0.0)
        )
    return sorted(cands, key=lambda c: (-c.score, c.rank, c.start))


# A long sentence's vector is the mean of all its clauses, so a question about one clause ("Does
# Tajikistan still treat the Taliban as a terrorist group?" against "Rahmon has offered sanctuary to
# Ahmad Massoud, …, and a 2006 ruling by Tajikistan's Supreme Court designating the Taliban as a
# terrorist organisation remains in place.") finds it far from the question. The top few long
# sentences are therefore also scored by their closest clause (benchmarks/RESULTS.md, round 11).
CLAUSE_MIN_CHARS = 160  # sentences at least this long are split into clauses
CLAUSE_MIN_PART = 25  # a clause shorter than this is no clause ("the region", "he said")
CLAUSE_TOP = 6  # how many of the best-ranked sentences are split (their clauses are embedded per question)
_CLAUSE_BREAK = re.compile(r";\s+|\s+[–—]\s+|—|,\s+(?=(?:and|but|while|whereas|although|which|who)\b)")


def clauses(sentence: str) -> list[str]:
    """The clauses of a long sentence (at semicolons, dashes and ", and / but / while / which …"),
    or [] when it is short or does not split into two or more."""
    if len(sentence) < CLAUSE_MIN_CHARS:
        return []
    parts = [p.strip() for p in _CLAUSE_BREAK.split(sentence) if len(p.strip()) >= CLAUSE_MIN_PART]
    return parts if len(parts) > 1 else []


def by_best_clause(ranked: list[Candidate], question_vector, vectors_of, config: ExtractiveConfig = ExtractiveConfig()
                   ) -> list[Candidate]:
    """Re-rank: each of the top ``CLAUSE_TOP`` sentences whose closest clause is closer to the question
    than the whole sentence gains the difference (× ``semantic_weight``) in its score. ``vectors_of``:
    texts -> unit vectors (``SentenceVectors.of_texts``). ``Candidate.semantic`` stays the whole
    sentence's cosine (the judge's features)."""
    parts = [(c, clauses(c.text)) for c in ranked[:CLAUSE_TOP]]
    texts = list(dict.fromkeys(t for _, ps in parts for t in ps))
    if not texts:
        return ranked
    cosine = dict(zip(texts, similarities(question_vector, vectors_of(texts)).tolist()))
    for c, ps in parts:
        if ps:
            c.score += config.semantic_weight * max(0.0, max(cosine[t] for t in ps) - c.semantic)
    return sorted(ranked, key=lambda c: (-c.score, c.rank, c.start))


def window_text(cands: Sequence[Candidate], best: Candidate, after: bool = True) -> str:
    """The best sentence with its neighbours (same document, as in ``score_candidates``) and title;
    not the sentence after it unless ``after``."""
    i = next(k for k, c in enumerate(cands) if c is best)
    parts = [best.title]
    for j in (i - 1, i, i + 1) if after else (i - 1, i):
        if 0 <= j < len(cands) and cands[j].doc_id == best.doc_id and abs(cands[j].start - best.start) < 2000:
            parts.append(cands[j].text)
    return "\n".join(parts)


def select(ranked: list[Candidate], config: ExtractiveConfig = ExtractiveConfig(),
           per_actor: bool = False, question: str | None = None) -> list[Candidate]:
    """Best sentence plus close runners-up within the budget, best first (issue 10: an answer leads
    with its best evidence, not with document order). A question that sets names side by side ("How do
    Tajikistan and Uzbekistan differ …?", ``compared``) takes the best sentence about each of them
    alone first. ``per_actor``: a question about several actors ("Central Asian states") takes the
    best sentence of each actor before a second one of any.
    ``question`` asking for a number or a date: runners-up must supply one (``chatbot.judge.supplies``)."""
    if not ranked:
        return []
    best = ranked[0]
    chosen = [best]
    used = len(best.text)
    pool = [c for c in ranked[1:] if c.score >= config.keep_ratio * best.score]
    kind = asks_for(question) if question else None
    if kind in DETAIL_KINDS:
        pool = [c for c in pool if supplies(kind, c.text, question)]
    named = compared(question) if question and kind in (None, "reason") else []  # not "Who was …, A and B?"
    if len(named) > 1:  # "How do Tajikistan and Uzbekistan differ …?": the best sentence about each first
        first: list[Candidate] = []
        mentions = [(c, mentioned(c.text, named)) for c in [best, *pool]]  # each sentence read once
        for a in named:
            c = next((c for c, names in mentions if names == {a}), None)  # about ``a`` alone
            if c is not None and c is not best and all(c is not f for f in first):
                first.append(c)
        pool = first + [c for c in pool if all(c is not f for f in first)]
    elif per_actor:
        seen = {actor(best.text)}
        first = []
        for c in pool:
            a = actor(c.text)
            if a not in seen:
                seen.add(a)
                first.append(c)
        pool = first + [c for c in pool if c not in first]
    for c in pool:
        if len(chosen) >= config.max_sentences:
            break
        if used + len(c.text) > config.max_chars:
            continue
        if any(_same(c, o) for o in chosen):
            continue
        chosen.append(c)
        used += len(c.text)
    return chosen


_NAME_WORD = r"[A-Z][\w’'-]+"
_ACTOR = re.compile(rf"\b{_NAME_WORD}")
_GROUP = re.compile(r"\b(?:states|countries|governments|neighbou?rs|members|sides|parties|nations|capitals|"
                    r"powers|regimes|leaders)\b|\b(?:differ|difference|compare|comparison|versus|vs)\b", re.I)


def actor(sentence: str) -> str:
    """The first capitalised name of a sentence that is not a common word (its main actor, roughly)."""
    for m in _ACTOR.finditer(sentence):
        word = m.group().lower().removesuffix("’s").removesuffix("'s")
        if word not in STOPWORDS:
            return word
    return ""


_COMPARED = re.compile(rf"(?<!^)\b{_NAME_WORD}(?:(?:,? and|,? or|,| versus| vs\.?) (?:the )?{_NAME_WORD})+")


def compared(question: str) -> list[str]:
    """The names a question sets side by side ("How do Tajikistan and Uzbekistan differ?",
    "What do Kazakhstan, Uzbekistan and Turkmenistan want?"), lower case; [] for fewer than two."""
    for m in _COMPARED.finditer(question):
        names = [w.lower().removesuffix("’s").removesuffix("'s") for w in _ACTOR.findall(m.group())]
        names = [n for n in dict.fromkeys(names) if n not in STOPWORDS]
        if len(names) > 1:
            return names
    return []


def mentioned(sentence: str, named: Sequence[str]) -> set[str]:
    """Which of ``named`` the sentence names (a state also by its capital or demonym)."""
    return {n for n in named if names_in([n], sentence)}


def spans_actors(question: str) -> bool:
    """A question about several actors or a comparison ("What do Central Asian states want?")."""
    return bool(_GROUP.search(question))


def _same(a: Candidate, b: Candidate) -> bool:
    return a.text.strip().lower() == b.text.strip().lower()


def to_citation(n: int, c: Candidate, support: float, page: int | None = None) -> Citation:
    return Citation(n=n, doc_id=c.doc_id, title=c.title, start=c.start, end=c.end, quote=c.text,
                    support=round(float(support), 4), page=page, chunk_id=c.passage.chunk.chunk.chunk_id)
