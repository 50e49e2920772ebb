"""Figures: quantities with what they measure, who claims them, and where they conflict.

A figure is a quantity written in a sentence — a share ("46 per cent", "roughly a quarter of"),
money ("9.5 billion US dollars"), a measurement with a unit ("285-kilometre") or a count ("6,500
... fighters") — with:

- what it measures, read from the dependency parse: the thing it modifies or counts, the subject
  of its verb (a relative pronoun stands for its antecedent: "ethnic Tajiks—who he claims make
  up 46 per cent"), and its "of ..." and "in ..." phrases;
- its qualifier: "roughly"/"about" widen it, "less than"/"more than" make it a bound;
- an attribution when a reporting verb governs it ("he claims", "estimated that", "according
  to"): the figure is then a claim, with the claimant (a pronoun is the person named before it).

Two figures measure the same thing when they are of the same kind, their subjects agree and most
of the words describing them are shared (and, when both sentences give years, a year is shared).
They conflict when their ranges do not overlap (``chatbot/brief/conflicts.py``). Changes
("increased 32 per cent", "from 80 to 97") are figures but never conflicts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from chatbot.brief.nlp import Parsed

_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_WORD_NUMBERS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_WORD_NUMBERS.update({w: float(10 * i) for i, w in enumerate("_ _ _ thirty forty fifty sixty seventy eighty ninety".split())
                      if w != "_"})
_SCALES = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "trillion": 1e12, "bn": 1e9}
_FRACTIONS = {"half": 1 / 2, "third": 1 / 3, "quarter": 1 / 4, "fifth": 1 / 5, "sixth": 1 / 6, "seventh": 1 / 7,
              "eighth": 1 / 8, "ninth": 1 / 9, "tenth": 1 / 10}
_QUAL = (r"(?P<q>(?:roughly|about|around|approximately|some|nearly|almost|an estimated|estimated|just over|"
         r"just under|more than|over|above|at least|less than|fewer than|under|below|at most|up to) )?")
_APPROX = {"roughly", "about", "around", "approximately", "some", "nearly", "almost", "an estimated", "estimated"}
_UPPER = {"less than", "fewer than", "under", "below", "at most", "up to", "just under"}
_LOWER = {"more than", "over", "above", "at least", "just over"}
_CURRENCY_WORDS = {"dollar": "USD", "us dollar": "USD", "euro": "EUR", "pound": "GBP", "yuan": "CNY", "ruble": "RUB",
                   "rouble": "RUB", "rupee": "INR", "yen": "JPY", "franc": "CHF", "usd": "USD", "eur": "EUR"}
_CURRENCY_SIGNS = {"$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_UNITS = {  # unit -> (kind, factor to the base unit)
    "kilometre": ("length", 1e3), "kilometer": ("length", 1e3), "km": ("length", 1e3), "mile": ("length", 1609.34),
    "metre": ("length", 1.0), "meter": ("length", 1.0), "foot": ("length", 0.3048), "feet": ("length", 0.3048),
    "square kilometre": ("area", 1e6), "square kilometer": ("area", 1e6), "km2": ("area", 1e6),
    "sq mi": ("area", 2.59e6), "square mile": ("area", 2.59e6), "hectare": ("area", 1e4), "acre": ("area", 4046.86),
    "tonne": ("mass", 1e3), "ton": ("mass", 1e3), "kilogram": ("mass", 1.0), "kg": ("mass", 1.0),
    "megawatt": ("power", 1e6), "MW": ("power", 1e6), "gigawatt": ("power", 1e9), "GW": ("power", 1e9),
    "litre": ("volume", 1.0), "liter": ("volume", 1.0), "barrel": ("volume", 159.0), "cubic metre": ("volume", 1e3),
    "cubic kilometre": ("volume", 1e12),
}
_UNIT_RE = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_AMOUNT = rf"(?P<n>{_NUM}|{'|'.join(_WORD_NUMBERS)})(?: (?P<scale>{'|'.join(_SCALES)}))?"
_B, _E = r"(?<![\w\-.,–])", r"(?![\w]|[–-]\d)"  # not inside scores or ranges ("24–10")
PATTERNS = [
    ("share", re.compile(_B + _QUAL + _AMOUNT + r"[ -]?(?:%|per ?cent|percent)" + _E, re.IGNORECASE)),
    ("share", re.compile(_B + _QUAL + r"(?P<fn>a|one|two|three|four)[ -](?P<frac>" + "|".join(_FRACTIONS)
                         + r")s?(?= of\b)", re.IGNORECASE)),
    ("share", re.compile(_B + _QUAL + r"(?P<frac>half)(?= of\b)", re.IGNORECASE)),
    ("money", re.compile(_B + _QUAL + r"(?P<sign>US\$|\$|€|£|¥) ?" + _AMOUNT + _E)),
    ("money", re.compile(_B + _QUAL + _AMOUNT + r" (?P<cur>US dollars?|dollars?|euros?|pounds?|yuan|roubles?|rubles?|"
                         r"rupees?|yen|francs?|USD|EUR)" + _E)),
    ("unit", re.compile(_B + _QUAL + _AMOUNT + r"[ -](?P<unit>" + _UNIT_RE + r")(?:s|es)?" + _E)),
    ("count", re.compile(_B + _QUAL + rf"(?P<n>{_NUM})(?: (?P<scale>{'|'.join(_SCALES)}))?" + _E, re.IGNORECASE)),
]
REPORTING = {"claim", "say", "state", "estimate", "assert", "allege", "report", "suggest", "indicate", "believe",
             "argue", "insist", "maintain", "tell", "announce", "contend", "think", "put", "accord", "find",
             "calculate", "reckon", "expect", "predict", "show"}
CHANGE = {"increase", "rise", "climb", "grow", "fall", "drop", "decline", "double", "triple", "jump", "surge", "soar",
          "plunge", "shrink", "decrease", "reduce", "cut", "raise", "lose", "gain"}
_UNIT_NOUNS = {"cent", "percent", "%", "quarter", "half", "third", "fifth", "sixth", "seventh", "eighth", "ninth",
               "tenth", "dollar", "euro", "pound", "yuan", "rupee", "yen", "share", "proportion", "percentage",
               "number", "total", "figure", "amount", "some", "about", "one", "million", "billion", "thousand"}
_STOP = {"the", "a", "an", "its", "their", "his", "her", "this", "these", "those", "that", "which", "who", "whom",
         "it", "they", "he", "she", "we", "there", "such", "other", "more", "most", "many", "much", "each", "all",
         "both", "own", "same", "every", "some", "any", "roughly", "about", "around"}
_PRONOUN_SUBJECTS = {"he", "she", "they", "it", "we", "i", "you", "this", "that", "these", "those"}
_RELATIVE = {"who", "which", "that", "whom"}


@dataclass(frozen=True)
class Figure:
    doc: int
    start: int  # the quantity's characters in the document
    end: int
    text: str
    kind: str  # share, money:USD, length, area, mass, ..., count
    value: float
    low: float
    high: float
    qualifier: str  # exact, approximate, at most, at least
    measure: str  # what it measures, in the text's own words
    terms: frozenset[str] = field(default_factory=frozenset)
    head: str = ""
    years: frozenset[int] = field(default_factory=frozenset)
    change: bool = False
    claim_verb: str | None = None  # "claims", "estimated", "according to"
    claimant: str | None = None
    sentence: tuple[int, int] = (0, 0)  # characters of the sentence
    predicate: str = ""  # dates of events: the event's verb (or noun), which must agree too


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def _stem(word: str) -> str:
    return _stemmer().stemWord(word.lower().strip("’'"))


def _amount(g: dict) -> float | None:
    n = g.get("n")
    if n is None:
        return None
    value = _WORD_NUMBERS.get(n.lower())
    if value is None:
        value = float(n.replace(",", ""))
    return value * _SCALES.get((g.get("scale") or "").lower(), 1.0)


def quantities(text: str, start: int = 0, end: int | None = None) -> list[tuple[str, re.Match]]:
    """The quantities written in ``text[start:end]``, by pattern kind (share, money, unit, count),
    none overlapping (earlier patterns first), before any parse: a figure can only be one of these,
    and a bare number may still turn out to count nothing (``find_figures`` decides)."""
    taken: list[tuple[int, int]] = []
    out = []
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(text, start, len(text) if end is None else end):
            if kind == "count" and not _could_count(m):
                continue
            if not any(m.start() < e and s < m.end() for s, e in taken):
                taken.append((m.start(), m.end()))
                out.append((kind, m))
    return out


def rough_terms(text: str) -> set[str]:
    """Stems of the words of ``text``, without a parse: they include the terms (``Figure.terms``)
    of any figure read from it, irregular plurals aside. Two figures measure the same thing only
    if they share two terms (``conflicts.same_measure``), so texts sharing fewer words cannot
    hold a conflict."""
    return {_stem(w) for w in re.findall(r"[^\W\d_]+", text.lower()) if w not in _STOP}


def find_figures(p: Parsed, doc: int, start: int, end: int, person_before=None) -> list[Figure]:
    """Figures in ``p.text[start:end]`` (document ``doc``). ``person_before(doc, offset)`` names the
    person or organisation last named before ``offset`` (resolves "he claims")."""
    years_by_sent: dict[int, frozenset[int]] = {}
    figures = (_figure(p, doc, kind, m, years_by_sent, person_before) for kind, m in quantities(p.text, start, end))
    return sorted((f for f in figures if f is not None), key=lambda f: f.start)


def _figure(p: Parsed, doc: int, kind: str, m: re.Match, years_by_sent, person_before) -> Figure | None:
    g = {k: v for k, v in m.groupdict().items() if v}
    value = _amount(g)
    if "frac" in g:
        value = _FRACTIONS[g["frac"].lower()] * ({"a": 1, "one": 1, "two": 2, "three": 3, "four": 4}.get(
            (g.get("fn") or "a").lower(), 1))
    if value is None:
        return None
    if kind == "share" and "frac" not in g:
        value /= 100
    elif kind == "money":
        cur = _CURRENCY_SIGNS.get(g.get("sign", "")) or _CURRENCY_WORDS.get((g.get("cur") or "").lower().rstrip("s"))
        kind = f"money:{cur or 'other'}"
    elif kind == "unit":
        unit = g["unit"]
        unit_kind, factor = _UNITS.get(unit) or _UNITS.get(unit.lower()) or ("other", 1.0)
        kind, value = unit_kind, value * factor
    a = p.token_at(m.start())
    b = max(a + 1, p.token_at(m.end() - 1) + 1)
    sa, sb = p.sent_of(a)
    if kind == "count" and not _is_count(p, a, b):
        return None
    q = (g.get("q") or "").strip().lower()
    low, high = _interval(kind, value, q)
    sent_chars = p.chars(sa, sb)
    if sa not in years_by_sent:
        years_by_sent[sa] = frozenset(int(y) for y in re.findall(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)",
                                                                  p.text[sent_chars[0]:sent_chars[1]]))
    measure, terms, head, change = _measure(p, a, b)
    change = change or bool(re.search(r"\bfrom\s+\S+\s+to\b|\bto\s*$", p.text[max(sent_chars[0], m.start() - 30):m.start()]))
    verb, claimant = _attribution(p, a, b, doc, person_before)
    return Figure(doc, m.start(), m.end(), m.group(0), kind, value, low, high,
                  "approximate" if q in _APPROX else "at most" if q in _UPPER else "at least" if q in _LOWER else "exact",
                  measure, frozenset(terms), head, years_by_sent[sa], change, verb, claimant, sent_chars)


def _could_count(m: re.Match) -> bool:
    """What a bare number must be to count something, seen without a parse: not a year, at least 2."""
    if re.fullmatch(r"1[0-9]{3}|20[0-9]{2}", m.group("n")) and not m.groupdict().get("scale"):
        return False
    return (_amount(m.groupdict()) or 0.0) >= 2


def _is_count(p: Parsed, a: int, b: int) -> bool:
    """A bare number counts something when it modifies a noun and is not a year, a date or an index
    (``quantities`` has already dropped years and numbers below 2)."""
    r = p.root_of(a, b)
    h = p.heads[r]
    return p.deps[r] in ("nummod", "quantmod", "compound") and p.pos[h] == "NOUN" and not a <= h < b \
        and p.ents_label(h) not in ("DATE", "TIME", "ORDINAL")


def _interval(kind: str, value: float, q: str) -> tuple[float, float]:
    if q in _UPPER:
        return 0.0, value
    if q in _LOWER:
        return value, float("inf")
    if kind == "share":
        slack = 0.04 if q in _APPROX else 0.005
        return value - slack, value + slack
    slack = 0.1 if q in _APPROX else 0.01
    return value * (1 - slack), value * (1 + slack)


def _content(p: Parsed, lo: int, hi: int) -> list[str]:
    return [_stem(p.lemmas[i]) for i in range(lo, hi)
            if p.pos[i] in ("NOUN", "PROPN", "ADJ") and p.word(i).lower() not in _STOP and any(c.isalpha() for c in p.word(i))]


def _measure(p: Parsed, a: int, b: int) -> tuple[str, set[str], str, bool]:
    """What the quantity in tokens [a, b) measures: (description, terms, head term, is a change)."""
    r = p.root_of(a, b)
    n = r
    if p.deps[r] in ("nummod", "quantmod", "compound", "amod", "nmod") and p.pos[p.heads[r]] in ("NOUN", "PROPN") \
            and not a <= p.heads[r] < b:
        n = p.heads[r]
    parts: list[tuple[int, int]] = []
    terms: set[str] = set()
    head = ""
    if n != r:
        lo, hi = p.phrase(n)
        lo = max(lo, b) if lo < b <= n else lo
        parts.append((lo, n + 1))
        terms |= set(_content(p, lo, n + 1))
        head = _stem(p.lemmas[n])
    for holder in {n, r}:
        for c in p.children[holder]:
            if p.deps[c] == "prep" and p.lemmas[c].lower() in ("of", "in", "on", "at", "for", "among"):
                lo, hi = p.subtree(c)
                hi = min(hi, _clause_end(p, c, hi))
                parts.append((lo, hi))
                terms |= set(_content(p, lo, hi))
                if p.lemmas[c].lower() == "of" and not head:
                    objs = [x for x in p.children[c] if p.deps[x] == "pobj"]
                    head = _stem(p.lemmas[objs[0]]) if objs else head
    verb, subject = _governor(p, n)
    change = verb is not None and p.lemmas[verb].lower() in CHANGE
    if verb is not None and p.deps[n] in ("nsubj", "nsubjpass"):  # "300,000 farmers depend on the river"
        for c in p.children[verb]:
            if p.deps[c] == "prep" and p.lemmas[c].lower() != "according":
                lo, hi = p.subtree(c)
                parts.append((lo, min(hi, _clause_end(p, c, hi))))
                terms |= set(_content(p, lo, min(hi, _clause_end(p, c, hi))))
    if subject is not None:
        lo, hi = p.phrase(subject)
        parts.insert(0, (lo, hi))
        terms |= set(_content(p, lo, hi))
        head = _stem(p.lemmas[subject])
    terms -= {_stem(w) for w in _UNIT_NOUNS}
    description = "; ".join(p.span_text(lo, hi) for lo, hi in _merge(parts) if hi > lo)
    return description, terms, head, change


def _clause_end(p: Parsed, c: int, hi: int) -> int:
    """End a prepositional phrase before any clause hanging off it."""
    for i in range(c + 1, hi):
        if p.deps[i] in ("relcl", "acl", "punct", "cc", "conj") and p.heads[i] != c:
            return i
    return hi


def _merge(parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(set(parts)):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _governor(p: Parsed, n: int) -> tuple[int | None, int | None]:
    """The verb the measured phrase depends on and that verb's subject (if it is not ``n``)."""
    dep = p.deps[n]
    if dep == "pobj":
        prep = p.heads[n]
        owner = p.heads[prep]
        if p.pos[owner] in ("NOUN", "PROPN"):
            return None, owner  # "Brazil, with 60% of the rainforest"
        return owner if p.pos[owner] in ("VERB", "AUX") else None, _subject(p, owner)
    if dep in ("nsubj", "nsubjpass"):
        return p.heads[n], None
    if dep in ("dobj", "attr", "oprd", "npadvmod", "acomp", "advmod", "obj"):
        v = p.heads[n]
        return v, _subject(p, v)
    return None, None


def _subject(p: Parsed, v: int) -> int | None:
    for _ in range(4):
        if any(p.deps[c] == "expl" for c in p.children[v]):
            return None  # "there are 6,500 fighters"
        subs = [c for c in p.children[v] if p.deps[c] in ("nsubj", "nsubjpass")]
        rel = [c for c in subs if p.word(c).lower() in _RELATIVE]
        named = [c for c in subs if p.word(c).lower() not in _PRONOUN_SUBJECTS | _RELATIVE]
        if rel or (not named and p.deps[v] == "relcl"):
            x = v
            while p.deps[x] != "relcl" and p.heads[x] != x:
                x = p.heads[x]
            if p.deps[x] == "relcl":
                return p.heads[x]
        if named:
            return named[0]
        if p.deps[v] not in ("xcomp", "conj", "ccomp", "advcl", "relcl") or p.heads[v] == v:
            return None
        v = p.heads[v]
    return None


def _attribution(p: Parsed, a: int, b: int, doc: int, person_before) -> tuple[str | None, str | None]:
    sa, sb = p.sent_of(a)
    for i in range(sa, sb):  # "according to X"
        if p.word(i).lower() == "according" and i + 1 < sb and p.word(i + 1).lower() == "to":
            objs = [c for c in p.children[i + 1] if p.deps[c] == "pobj"] or [c for c in p.children[i] if p.deps[c] == "prep"]
            who = p.span_text(*p.phrase(objs[0])) if objs else None
            return "according to", who
    r = p.root_of(a, b)
    for v in p.ancestors(r):
        if p.lemmas[v].lower() in REPORTING and p.pos[v] == "VERB" and v != r:
            subs = [c for c in p.children[v] if p.deps[c] in ("nsubj", "nsubjpass") and p.word(c).lower() not in _RELATIVE]
            if not subs:
                return p.word(v), None
            s = subs[0]
            if p.word(s).lower() in _PRONOUN_SUBJECTS and person_before is not None:
                return p.word(v), person_before(doc, p.starts[s])
            return p.word(v), p.span_text(*p.phrase(s))
    return None, None


def event_dates(p: Parsed, doc: int, refs) -> list[Figure]:
    """Dates of events as figures (kind "date"), so that two documents dating the same event
    differently ("the canal was completed in 1958" / "in 1962") conflict like any figure."""
    out = []
    for ref in refs:
        if not ref.year_stated or ref.precision not in ("year", "month", "day"):
            continue
        a = p.token_at(ref.start)
        b = max(a + 1, p.token_at(ref.end - 1) + 1)
        r = p.root_of(a, b)
        event = next((v for v in p.ancestors(r) if p.pos[v] in ("VERB", "NOUN")), None)
        if event is None:
            continue
        parts = [(event, event + 1)]
        terms = {_stem(p.lemmas[event])}
        subject = p.heads[event] if p.deps[event] == "acl" else _subject(p, event) if p.pos[event] == "VERB" else None
        for holder in [x for x in (subject,) if x is not None] + [c for c in p.children[event] if p.deps[c] in
                                                                   ("dobj", "nsubjpass", "compound", "amod")]:
            lo, hi = p.phrase(holder)
            if not lo <= a < hi:
                parts.append((lo, hi))
                terms |= set(_content(p, lo, hi))
        if len(terms) < 2:
            continue
        m, d = ref.month or 0, ref.day or 0
        low = ref.year * 10000 + (m or 1) * 100 + (d or 1)
        high = ref.year * 10000 + (m or 12) * 100 + (d or 31)
        sa, sb = p.sent_of(a)
        out.append(Figure(doc, ref.start, ref.end, ref.as_written, "date", float(low), float(low), float(high),
                          "exact", "; ".join(p.span_text(lo, hi) for lo, hi in _merge(parts)), frozenset(terms),
                          _stem(p.lemmas[subject]) if subject is not None else "", frozenset(), False, None, None,
                          p.chars(sa, sb), _stem(p.lemmas[event])))
    return out
