"""Answer or refuse: a calibrated probability that the best evidence answers the question.

``features()`` describes the question and its best candidate sentence with a few numbers that
mean the same on any corpus (no word lists fitted to one article): how much of the question the
sentence and its neighbours cover (IDF-weighted, and the rarest term left uncovered), how close
the sentence is in meaning (MiniLM cosine), whether it supplies what the question asks for (a
number, a date, a name, a new capitalised entity) and agrees with the question's own names and
numbers, negation mismatch, the margin to the runner-up, and how well each question word is
matched in context (``alignment``). ``Judge`` is a logistic regression over the few of them
whose direction holds on every dev set (today alignment, semantic_max, type_gap), fitted by
``benchmarks/train_judge.py`` and stored as readable JSON (``chatbot/judge_model.json``: feature
names, standardisation, coefficients, training command, univariate AUCs and cross-set figures).
The others are computed for that script and for the two rules below.

Levels (``SupportPolicy`` in chatbot.answerer): ``answered`` when the probability reaches the
threshold, one of the top sentences supplies the number or date a question asks for, or names the
role whose holder it asks for ("Who is Turkmenistan's foreign minister?"), about what the question
names (``type_gap_top`` is 0), and every name of the question occurs in the index
(``names_unknown`` is 0), and the top sentences name the question's names other than as items of a
list ("… countries – Uzbekistan, Turkmenistan, Kyrgyzstan, Russia, China …" says nothing of what
China's foreign ministry said: ``names_listed_only`` is 0), and a question that dates what it asks
about ("in the 10th century") is not answered by top sentences that name only other times
(``time_mismatch`` is 0); else ``partial`` when the best evidence
is on the question's topic (the sources cover it, not the detail asked); else ``none``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ingest.lexical import STOPWORDS, tokenize

MODEL_FILE = Path(__file__).with_name("judge_model.json")

# Cardinals only: "half of its imports" does not say how long a railway is.
_NUMBER_WORDS = ("one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|"
                 "fifty|sixty|hundred|hundreds|thousand|thousands|million|millions|billion|billions|dozen|dozens")
_NUMBER = re.compile(rf"\d+(?:[.,]\d+)*|\b(?:{_NUMBER_WORDS})\b", re.I)
_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
             "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth twenty-first").split()
_DATE = re.compile(rf"\b(?:1[0-9]{{3}}|20[0-9]{{2}})s?\b|\b(?:{_MONTHS})\b|\b\d+(?:st|nd|rd|th)\s+centur|"
                   rf"\b(?:{'|'.join(_ORDINALS)})\s+centur|\b(?:century|decade|years? ago)\b", re.I)
_CAPITAL = re.compile(r"\b[A-Z][\w’'-]*")
_NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|without|n't|cannot|fail(?:ed|s)?|lack(?:ed|s)?)\b|n’t\b",
                       re.I)
_QUESTION_WORDS = frozenset("what which who whom whose when where why how is are was were do does did can could "
                            "in on at of for from to by the a an".split())

# What a question asks for, from its opening words (after an optional preposition or conjunction).
_LEAD = r"^(?:(?:and|so|but|in|on|at|by|from|for|during|to|of|since|until|after|before)\s+)?"
_QUANTITY_NOUNS = (r"volume|value|number|amount|size|cost|price|population|length|distance|rate|total|budget|height|"
                   r"weight|area|capacity|speed|gdp|revenue|income|salary|wages?|output|production|turnover")
_HOW_MUCH = r"how (?:many|much|long|old|far|large|big|tall|high|wide|deep|often|fast)"  # asks for a figure
_KINDS = (
    ("number", re.compile(_LEAD + rf"(?:what (?:is|was|are|were) (?:the )?(?:[\w’'-]+ ){{0,4}}?(?:{_QUANTITY_NOUNS})\b|"
                          rf"{_HOW_MUCH}|"
                          r"what (?:(?:is|was|are|were) the )?(?:percentage|percent|share|proportion|number|amount|"
                          r"fraction|size|population|distance|length|value|cost|price))\b", re.I)),
    ("date", re.compile(_LEAD + r"(?:when|what (?:year|date|century|decade|month|day|time|period)|"
                        # "what is the canal's expected completion date?", "what was the year of ...?"
                        r"what (?:is|was|are|were|will be|would be) (?:the )?(?:[\w’'-]+ ){0,6}?"
                        r"(?:date|year|deadline|timeline|timetable|time ?frame)s?(?= of| for|\?|$)|"
                        r"(?:in|on|during) (?:what|which) (?:year|date|century|decade|month|period)|"
                        r"which (?:year|century|decade|month))\b", re.I)),
    ("person", re.compile(_LEAD + r"(?:who|whom|whose)\b", re.I)),
    ("place", re.compile(_LEAD + r"(?:where|(?:in |to |from )?(?:what|which) (?:country|city|region|place|town|"
                         r"state|area|province|continent|river|island|nation))\b", re.I)),
    ("reason", re.compile(_LEAD + r"(?:why|what (?:drives|drove|causes|caused|motivates|pushes|is pushing|makes|"
                          r"made|led|leads|explains)|for what reason|how come)\b", re.I)),
    ("entity", re.compile(_LEAD + r"(?:which|what) (?:[a-z]+ )?(?:company|organi[sz]ation|group|party|"
                          r"agency|institution|body|team|firm|treaty|dynasty|empire|kingdom|language|religion|"
                          r"name|title|person|leader|king|ruler)\b", re.I)),
)

FEATURES = (
    "coverage",  # IDF-weighted share of the question's terms in the best sentence
    "window",  # ... in the sentence, its neighbours and its document title
    "rare_missing",  # IDF of the rarest question term missing from that window / max IDF
    "absent",  # IDF-weighted share of the question's terms found nowhere in the index
    "semantic",  # cosine(question, best sentence)
    "semantic_max",  # best cosine over every candidate sentence
    "names_missing",  # share of the question's own names and numbers missing from the window
    "names_missing_sentence",  # ... missing from the best sentence itself
    "names_unknown",  # 1 when one of the question's names is nowhere in the index ("TAPI", "GDP")
    "type_gap",  # asks for a number or a date and the best sentence supplies none new
    "negation_mismatch",  # one of question and sentence is negated, the other is not
    "margin",  # ranking score of the best sentence minus the runner-up's
    "alignment",  # how well the question's worst-matched words are matched, in context (relevance.TokenAligner)
    "alignment_mean",  # how well all its content words are matched, on average (a soft coverage)
    "type_gap_top",  # no sentence of the top SUPPLY_TOP supplies the asked-for kind (or role holder)
    "names_listed_only",  # the top SUPPLY_TOP sentences name the question's names only as items of lists
    "time_mismatch",  # the question dates what it asks about; the top SUPPLY_TOP sentences name only other times
)
SUPPLY_TOP = 2  # type_gap_top: the top sentences, any of which may supply the asked-for kind
# Kinds of answer whose absence a sentence shows reliably (a figure, a date). A question asking for
# one that none of the top sentences supplies is not answered: the sources cover the topic, not
# the detail asked ("partial"). Names are not in this list: answers to "who" and "where" are
# often lower-case ("the crowd", "at sea").
DETAIL_KINDS = ("number", "date")


def asks_for(question: str) -> str | None:
    """number / date / person / place / reason / entity, or None (what / how / describe ...)."""
    q = " ".join(question.strip().split())
    for kind, pattern in _KINDS:
        if pattern.match(q):
            return kind
    return None


def reason_opening(question: str) -> str:
    """The opening of a reason question ("What drives", "What explains"): it says what is asked, not
    what about. '' for other questions."""
    m = dict(_KINDS)["reason"].match(" ".join(question.strip().split()))
    return m.group() if m else ""


def _norm(word: str) -> str:
    return word.lower().strip("’'-").removesuffix("’s").removesuffix("'s")


def question_names(question: str) -> set[str]:
    """The question's own names and numbers: capitalised words after the first, and figures."""
    names = set()
    for m in _CAPITAL.finditer(question):
        w = _norm(m.group())
        if m.start() == 0 or w in _QUESTION_WORDS or w in STOPWORDS:
            continue
        names.add(w)
    names |= {m.group().lower() for m in re.finditer(r"\d+(?:[.,]\d+)*", question)}
    return names


def name_groups(question: str) -> list[str]:
    """The question's names as written, consecutive capitalised words together ("Soviet Union"),
    and its figures: a name counts as known when one of its words is in the index."""
    groups: list[list[str]] = []
    last_end = -2
    for m in _CAPITAL.finditer(question):
        w = _norm(m.group())
        if m.start() == 0 or w in _QUESTION_WORDS or w in STOPWORDS:
            last_end = -2
            continue
        if groups and question[last_end:m.start()].strip() == "":
            groups[-1].append(w)
        else:
            groups.append([w])
        last_end = m.end()
    return [" ".join(g) for g in groups] + [m.group().lower() for m in re.finditer(r"\d+(?:[.,]\d+)*", question)]


_UNITS = {  # what a "how long / far / old ..." answer is measured in
    "long": r"km|kilomet\w*|miles?|met(?:re|er)s?|feet|foot|inch\w*|yards?|years?|months?|weeks?|days?|hours?|"
            r"minutes?|seconds?|decades?|centur\w*",
    "far": r"km|kilomet\w*|miles?|met(?:re|er)s?|feet|foot|yards?|light|hours?|days?",
    "old": r"years?|months?|aged?|centur\w*|decades?|\d{3,4}",
    "tall": r"met(?:re|er)s?|feet|foot|inch\w*|cm|km|storeys?|stories",
    "high": r"met(?:re|er)s?|feet|foot|inch\w*|cm|km|per ?cent|%|degrees?",
    "percent": r"per ?cent|%|percentage|half|third|quarter|fifth|sixth|tenth|majority|most|fraction|share",
}
_QUESTION_STEMS = frozenset(tokenize("many much number amount total value"))
_AUX = r"(?:does|did|do|is|are|was|were|will|would|can|could|has|have|had)"
# "how many refugees", "how much wheat" (not "how much does it cost": that asks for money)
_HOW_MANY = re.compile(rf"how (?:many|much) (?!{_AUX}\b)([a-z][\w-]*)(?: ([a-z][\w-]*))?", re.I)
_MONEY_ASKED = re.compile(rf"how much (?:money\b|{_AUX}\b.*\b(?:cost|costs|pay|paid|earn|earns|earned|worth|spend|"
                          r"spent|charge|charged|sell|sold|invest|invested|fund|funded)\b)", re.I)
_MONEY = re.compile(r"[$€£¥]|\b(?:dollars?|euros?|pounds?|yen|yuan|rupees?|roubles?|rubles?|francs?|marks?|lira|"
                    r"tenge|som|somoni|manat|afghanis?|USD|EUR|GBP|budget)\b", re.I)
# "what is Kyrgyzstan's annual trade volume with ...", "what was the value of the aid ...": the
# quantity noun with the words before it (after any possessive) and up to four after "of"
_QUANTITY = re.compile(rf"^what (?:is|was|are|were) (?:the )?((?:[\w’'-]+ ){{0,4}}?)({_QUANTITY_NOUNS})\b"
                       rf"(?: of ((?:[\w’'-]+ ?){{1,4}}))?", re.I)
_HOW_UNIT = re.compile(r"how (long|far|old|tall|high)\b", re.I)
# A figure followed by a unit of length measures a length: "the 285-kilometre canal" says how long the
# canal is, not how much water it takes, so it answers only a question about a length or distance.
_LENGTH_AFTER = re.compile(r"[\s-]*(?:km|kilomet\w*|miles?|met(?:re|er)s?|feet|foot|yards?)\b", re.I)
_ASKS_LENGTH = re.compile(r"\b(?:long|far|length|distance|wide|width|kilomet\w*|km|miles?|met(?:re|er)s?|feet|foot|"
                          r"yards?)\b", re.I)
_PERCENT = re.compile(r"what (?:(?:is|was|are|were) the )?(?:percentage|percent|share|proportion|fraction)\b", re.I)


def _number_supplied(sentence: str, question: str) -> bool:
    """A figure the question does not already give, attached to what is asked: "how many
    refugees" needs a number next to "refugees"; "how long" needs a length or a duration."""
    asked = question.lower()
    numbers = [m for m in _NUMBER.finditer(sentence) if m.group().lower() not in asked]
    if not _ASKS_LENGTH.search(question):
        numbers = [m for m in numbers if not _LENGTH_AFTER.match(sentence, m.end())]
    if not numbers:
        return False
    text = sentence.lower()
    if _MONEY_ASKED.search(question):  # "how much does the canal cost?" needs an amount of money
        return bool(_MONEY.search(sentence))
    many = _HOW_MANY.search(question)
    quantity = None if many else _QUANTITY.match(" ".join(question.split()))
    if many or quantity:  # a number within eight words of the counted or measured thing (its stems)
        if many:
            words_asked = [w for w in many.groups() if w]
        else:
            words_asked = [w for w in " ".join(g for g in quantity.groups() if g).split()
                           if not w.lower().endswith(("’s", "'s"))]
        stems = {t for t in tokenize(" ".join(words_asked))}
        if many:  # the counted thing, or anything else the question names ("how many balls did
            # Norman intercept?" is answered by "Norman intercepted two passes")
            stems |= {t for t in tokenize(question) if t not in _QUESTION_STEMS}
        words = re.findall(r"[\w’'-]+", text)
        word_stems = [set(tokenize(w)) for w in words]
        spots = [i for i, st in enumerate(word_stems) if st & stems]
        for m in numbers:
            k = len(re.findall(r"[\w’'-]+", text[: m.start()]))
            if any(abs(k - i) <= 8 for i in spots):
                return True
        return False
    unit = _HOW_UNIT.search(question)
    key = unit.group(1).lower() if unit else ("percent" if _PERCENT.search(question) else None)
    if key:
        return bool(re.search(rf"(?:\d|\b)(?:{_UNITS[key]})(?!\w)", text))
    return True


# "Who is Turkmenistan's foreign minister?", "What is the name of the Taliban's ambassador?": the question
# asks who holds a role (its last word before a preposition, a relative word or a participle). Only in
# the present tense: that asks for a current office holder, whom a text names by the title ("Tajik
# President Emomali Rahmon"). A narrative in the past tense states a relation in many other ways: "Who
# was Emma's brother?" is answered by "Emma, sister of Duke Richard II" (on SQuAD 2.0 and XQuAD the
# past tense cost 10 answerable questions and refused none that were not; benchmarks/RESULTS.md).
_POSSESSOR = r"(?:[A-Z][\w-]*(?: [A-Z][\w-]*)*(?:’s|'s|s’|s') )"
_ROLE_END = r"(?= (?:of|for|in|at|on|to|from|with|by|who|that|when|during) \w|$)"
_ROLE = re.compile(rf"^(?:[Ww]ho|[Ww]hom) (?:is|are) (?:the {_POSSESSOR}?|{_POSSESSOR})"
                   rf"((?:[\w-]+ ){{0,3}}?)([\w-]+){_ROLE_END}"
                   rf"|^[Ww]hat (?:is|are) the names? of (?:the )?{_POSSESSOR}?((?:[\w-]+ ){{0,3}}?)([\w-]+)"
                   rf"(?:{_ROLE_END}| [a-z]+ed\b)")


def asked_role(question: str) -> str | None:
    """The stem of the role whose holder the question asks for ("minist"), or None."""
    q = " ".join(question.strip().rstrip("?").split())
    m = _ROLE.match(q)
    if not m:
        return None
    head = (m.group(2) or m.group(4)).lower()
    if head.endswith(("ed", "en", "ly", "ful")) or head in STOPWORDS or head in _QUESTION_WORDS:
        return None  # not a role: "Who is the report written for", "the name of the most widely used ..."
    stems = tokenize(head)
    return stems[0] if len(stems) == 1 else None


def role_supplied(sentence: str, question: str, role: str) -> bool:
    """The sentence names the role itself ("minister"; "ministry" is not a minister) and, for a
    "who" question, someone the question does not name (a capitalised word)."""
    if role not in tokenize(sentence):
        return False
    return not question.lstrip().lower().startswith("who") or supplies("person", sentence, question)


def supplies(kind: str | None, sentence: str, question: str) -> bool:
    """Does the sentence hold something of the asked kind that the question itself does not?"""
    if kind is None or kind == "reason":
        return True
    asked = question.lower()
    if kind == "number":
        return _number_supplied(sentence, question)
    if kind == "date":
        return any(m.group().lower() not in asked for m in _DATE.finditer(sentence))
    # person, place, entity: a capitalised word the question does not already name
    found = [_norm(m.group()) for m in _CAPITAL.finditer(sentence)]
    return any(w not in asked for w in found if w not in STOPWORDS and w not in _QUESTION_WORDS)


_CENTURY = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)(?:(?:,| and| or| to|-)\s*(?:the )?(\d{{1,2}})(?:st|nd|rd|th))?"
                      rf"\s+centur|\b({'|'.join(_ORDINALS)})\s+centur", re.I)
# a year (600-2099 with "s": "the 1060s", "the 900s"; else 1000-2099), not part of a larger figure ("1,160,000")
_YEAR = re.compile(r"(?<![\d,.$£€])\b(?:(1\d{3}|20\d{2})|([6-9]\d{2}(?=’?'?s\b)))’?'?(s)?\b(?![,.]\d)")
# "in 1107", "during the 10th century": when what the question asks about happened. Not a bound ("after
# 1066") nor a name ("the 2010 drought", "the 2021 takeover"): the answer may be dated otherwise.
_AT_TIME = re.compile(r"\b(?:in|during|around|circa|throughout)\s+(?:the\s+)?(?:(?:early|late|mid)-?\s*)?", re.I)


def times(text: str) -> list[tuple[int, int]]:
    """The years a text names, in order, as (first, last) year: "1072" (1072, 1072), "the 1060s" (1060,
    1069), "the 10th century" (900, 1000), "the 10th and 11th centuries" (900, 1100)."""
    found = []
    for m in _CENTURY.finditer(text):
        first = int(m.group(1)) if m.group(1) else _ORDINALS.index(m.group(3).lower()) + 1
        last = int(m.group(2)) if m.group(2) else first
        found.append((m.start(), ((first - 1) * 100, last * 100)))
    for m in _YEAR.finditer(text):
        year = int(m.group(1) or m.group(2))
        found.append((m.start(), (year, year + (99 if year % 100 == 0 else 9)) if m.group(3) else (year, year)))
    return [span for _, span in sorted(found)]


# the time right after _AT_TIME: "1107", "1060s", "10th century", "10th and 11th centuries", "eleventh century"
_TIME_AFTER = re.compile(r"(?:\d[\w’'-]*|[a-z]+(?:st|nd|rd|th|-first))(?:(?:,| and| or| to|-)\s*(?:the )?"
                         r"\d{1,2}(?:st|nd|rd|th))?(?:\s+centur(?:y|ies))?", re.I)


def _dated(question: str) -> list[tuple[str, tuple[int, int]]]:
    """(words, span of years) of each time that dates what the question asks about ("in the 10th
    century", ``_AT_TIME``)."""
    out = []
    for m in _AT_TIME.finditer(question):
        when = _TIME_AFTER.match(question, m.end())
        spans = times(when.group()) if when else []
        if spans:
            out.append((question[m.start():when.end()], spans[0]))
    return out


def asked_times(question: str) -> list[tuple[int, int]]:
    """The times the question says what it asks about happened in ("in the 10th century")."""
    return [span for _, span in _dated(question)]


def time_mismatch(asked: Sequence[tuple[int, int]], text: str) -> bool:
    """The question dates what it asks about (``asked``: ``asked_times``; "Who invaded Scotland in the
    10th century?") and ``text`` names only other times ("William invaded Scotland in 1072"): evidence
    about another occasion. False when either names no time."""
    found = times(text)
    return bool(asked and found) and not any(a <= d and c <= b for a, b in asked for c, d in found)


_HOW = re.compile(_LEAD + rf"({_HOW_MUCH})\b", re.I)


def missing(question: str, feats: dict[str, float]) -> str:
    """What a partial answer's lead says the sources do not say, from the rule that withheld the
    answer: "how long", "when", "the canal's annual volume", "who that is", "that in the 10th century;
    they give other dates"; else "exactly that" (issue 10: "The sources don't give the canal's
    annual volume. What they say: …")."""
    q = " ".join(question.strip().rstrip("?").split())
    if feats.get("type_gap_top"):
        if asked_role(q):
            return "who that is"
        if how := _HOW.match(q):
            return how.group(1).lower()
        if asks_for(q) == "date":
            return "when"
        if quantity := _QUANTITY.match(q):
            words, noun, of = quantity.groups()
            owner = words.split()[0].endswith(("’s", "'s")) if words else False
            return ("" if owner else "the ") + f"{words}{noun}" + (f" of {of.strip()}" if of else "")
        return "the figure asked for"
    if feats.get("time_mismatch") and (dated := _dated(q)):
        return f"that {dated[0][0]}; they give other dates"
    if feats.get("names_listed_only"):
        return "that: they name it only in a list"
    return "exactly that"


def _present(name: str, text_lower: str, stems: set[str]) -> bool:
    if name in text_lower:
        return True
    toks = tokenize(name)
    return bool(toks) and all(t in stems or any(s.startswith(t[:5]) for s in stems if len(t) >= 5) for t in toks)


_ITEM = r"[A-Z][\w’'.-]*(?: (?:of |the )?[A-Z][\w’'.-]*)*"  # a capitalised name of one or more words


def _list_of(commas: str) -> re.Pattern:
    """Names joined by commas and a last "and"/"or" (``commas``: how many ", name" before it), or three
    or more by commas alone."""
    return re.compile(rf"{_ITEM}(?:, {_ITEM}){commas},? (?:and|or) {_ITEM}|{_ITEM}(?:, {_ITEM}){{2,}}")


# a list of three or more names: "Turkmenistan, Uzbekistan, and Tajikistan", "Russia, China, Qatar"
_LIST = _list_of("+")
_LIST_OR_PAIR = _list_of("*")  # ... or two: "Kyrgyzstan and Turkmenistan"


def listed_only(groups: Sequence[str], texts: Sequence[str], pairs: bool = False) -> bool:
    """The names of ``groups`` (``name_groups``, not figures) occur in ``texts``, and every time as an
    item of a list of three or more names: the texts mention them, they say nothing about them.
    A pair ("Kyrgyzstan and Turkmenistan each have …") is a statement about both, except with
    ``pairs``, for a question about an actor's view or motive: it does not give Kyrgyzstan's view."""
    inside: list[bool] = []
    for text in texts:
        lists = [(m.start(), m.end()) for m in (_LIST_OR_PAIR if pairs else _LIST).finditer(text)]
        for g in groups:
            for m in re.finditer(rf"(?<!\w){re.escape(g.split()[0])}", text, re.I):
                inside.append(any(a <= m.start() < b for a, b in lists))
    return bool(inside) and all(inside)


def names_in(groups: Sequence[str], text: str) -> bool:
    """Each name of ``groups`` (``name_groups``: one of its words suffices) occurs in ``text``, a
    state also when named by its capital or demonym ("Uzbek", "Tashkent": Uzbekistan)."""
    from chatbot.extractive import canonical  # chatbot.extractive imports this module

    both = f"{text}\n{canonical(text)}"
    lower, stems = both.lower(), set(tokenize(both))
    return all(any(_present(w, lower, stems) or _present(canonical(w.title()).lower(), lower, stems)
                   for w in g.split()) for g in groups)


def features(question: str, profile, ranked: Sequence, window_of: Callable[[Any], str], index,
             alignment: tuple[float, float]) -> dict[str, float]:
    """The judge's inputs for the best candidate ``ranked[0]`` (``ranked``: scored, best first).
    ``window_of(candidate)``: its sentence with its neighbours and document title; ``index``: the
    ``ingest.lexical.LexicalIndex`` (IDF, vocabulary); ``alignment``:
    ``TokenAligner.alignment`` of the question and the best sentence.

    ``type_gap_top``: no top sentence supplies the asked-for number, date or role holder
    (``asked_role``) *about what the question names*: a sentence that gives one counts only when
    it, the sentence before it or the title names the question's names too
    (``window_of(c, after=False)``): "How many IS-K fighters are near the Uzbek border?" is not
    answered by a figure for the provinces bordering Tajikistan."""
    best = ranked[0]
    window_text = window_of(best)
    terms = profile.terms
    total = sum(terms.values()) or 1.0
    window_stems = set(tokenize(window_text))
    missing = [w for t, w in terms.items() if t not in window_stems]
    names = question_names(question)
    max_idf = index.idf("\u2205")
    groups = name_groups(question)
    unknown = [n for n in groups if (toks := tokenize(n)) and not any(index.contains(t) for t in toks)]
    lower = window_text.lower()
    names_missing = (sum(not _present(n, lower, window_stems) for n in names) / len(names)) if names else 0.0
    own_stems, own_lower = set(tokenize(best.text)), best.text.lower()
    names_missing_sentence = (sum(not _present(n, own_lower, own_stems) for n in names) / len(names)) if names else 0.0
    kind = asks_for(question)
    role = asked_role(question)
    named = [g for g in groups if not g[0].isdigit()]  # not figures: a year is often only in context
    q_neg = bool(_NEGATION.search(question))
    s_neg = bool(_NEGATION.search(best.text))
    second = ranked[1].score if len(ranked) > 1 else 0.0
    asked = asked_times(question)
    return {
        "coverage": best.coverage,
        "window": min(1.0, (total - sum(missing)) / total),
        "rare_missing": (max(missing) / max_idf) if missing and max_idf > 0 else 0.0,
        "absent": profile.absent,
        "semantic": best.semantic,
        "semantic_max": max(c.semantic for c in ranked),
        "names_missing": names_missing,
        "names_unknown": float(bool(unknown)),
        "names_missing_sentence": names_missing_sentence,
        "type_gap": float(kind in DETAIL_KINDS and not supplies(kind, best.text, question)),
        "negation_mismatch": float(q_neg != s_neg),
        "margin": best.score - second,
        "alignment": alignment[0],
        "alignment_mean": alignment[1],
        "type_gap_top": float((kind in DETAIL_KINDS or role is not None) and not any(
            (supplies(kind, c.text, question) if role is None else role_supplied(c.text, question, role))
            and names_in(named, window_of(c, after=False)) for c in ranked[:SUPPLY_TOP])),
        "names_listed_only": float(listed_only(named, [c.text for c in ranked[:SUPPLY_TOP]],
                                               pairs=kind == "reason" or profile.kind == "position")),
        "time_mismatch": float(bool(asked) and all(time_mismatch(asked, window_of(c, after=False))
                                                   for c in ranked[:SUPPLY_TOP])),
    }


@dataclass(frozen=True)
class Judge:
    """Logistic regression on standardised features: p = sigmoid(bias + sum(coef * (x - mean) / scale))."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    bias: float

    def probability(self, feats: dict[str, float]) -> float:
        z = self.bias
        for name, m, s, c in zip(self.names, self.mean, self.scale, self.coef):
            z += c * (feats[name] - m) / s
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    @classmethod
    def load(cls, path: Path = MODEL_FILE) -> "Judge":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        model = raw["model"]
        names = tuple(model["features"])
        return cls(names, tuple(model["mean"]), tuple(model["scale"]), tuple(model["coef"]), float(model["bias"]))

    def to_json(self) -> dict:
        return {"features": list(self.names), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "bias": self.bias}
