"""Timeline: dated events in order, each an exact clause of a document.

Dates are read from the text: full dates ("17 April 2023", "April 17, 2023"), months ("August
2021"), years ("in 2011", "a 2006 ruling"; a bare year only after a time word or where the NER
saw a date), decades ("the 1990s"), periods ("between 1991 and 2000"). Dates the text leaves
incomplete are resolved against the document's date (``published``) when it has one, and
marked ``resolved`` with the basis: a day or month without a year ("April 17", "in February")
takes the nearest such date to the document's; relative dates ("last year", "three weeks ago",
"on Monday") count back from it. In an undated document a date without a year cannot be
resolved: it is kept, marked ``year_stated: false``, and placed after the latest date the
document does give (news texts leave out the year of recent events). Relative dates in an
undated document are left out.

The event is the clause the date belongs to: the noun phrase it modifies ("a 2006 ruling by
..."), else the clause of the verb it attaches to, else the whole sentence.
"""
from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from chatbot.brief.nlp import Parsed

MONTHS = {name: i for i, name in enumerate(calendar.month_name) if name}
MONTHS.update({name + ".": i for i, name in enumerate(calendar.month_abbr) if name and name != "May"})
MONTHS["Sept."] = 9
_M = "(?P<m>" + "|".join(re.escape(m) for m in sorted(MONTHS, key=len, reverse=True)) + ")"
_D = r"(?P<d>[0-3]?\d)(?:st|nd|rd|th)?"
_Y = r"(?P<y>1[0-9]{3}|20[0-9]{2})"
_NUM_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())}
_WEEKDAYS = {name: i for i, name in enumerate(calendar.day_name)}
TIME_WORDS = r"(?:in|In|since|Since|by|until|till|from|From|to|between|Between|during|During|before|after|of|and|" \
             r"around|circa|c\.|early|late|mid-|the|The|by the end of|as of|As of)"
_B, _E = r"(?<![\w\-.,])", r"(?![\w\-]|,\d)"

PATTERNS = [  # (kind, regex); earlier patterns win where matches overlap
    ("period", re.compile(_B + r"(?:between|Between|from|From) (?P<y>1[0-9]{3}|20[0-9]{2}) (?:and|to|until) "
                          r"(?P<y2>1[0-9]{3}|20[0-9]{2})" + _E)),
    ("period", re.compile(_B + r"(?P<y>1[0-9]{3}|20[0-9]{2})[–-](?P<y2>1[0-9]{3}|20[0-9]{2})" + _E)),
    ("day", re.compile(_B + _D + r" (?:of )?" + _M + r",? " + _Y + _E)),
    ("day", re.compile(_B + _M + r" " + _D + r",? " + _Y + _E)),
    ("month", re.compile(_B + _M + r",? " + _Y + _E)),
    ("day?", re.compile(_B + _D + r" (?:of )?" + _M + _E)),
    ("day?", re.compile(_B + _M + r" " + _D + _E)),
    ("month?", re.compile(r"(?P<pre>\b(?:in|In|since|Since|by|until|till|during|of|early|late|last|this|next) |"
                          r"\bmid-)" + _M + _E)),
    ("decade", re.compile(_B + r"(?P<y>1[0-9]{2}0|20[0-9]0)s" + _E)),
    ("year", re.compile(_B + _Y + _E)),
    ("relative", re.compile(r"\b(?:yesterday|today|(?:last|this|next) (?:week|month|year)|earlier this (?:month|year)|"
                            r"(?P<n>\d+|" + "|".join(_NUM_WORDS) + r"|a) (?P<unit>day|week|month|year)s? ago|"
                            r"on (?P<wd>" + "|".join(_WEEKDAYS) + r"))\b", re.IGNORECASE)),
]


@dataclass(frozen=True)
class DateRef:
    start: int  # characters in the document
    end: int
    as_written: str
    year: int | None
    month: int | None = None
    day: int | None = None
    precision: str = "year"  # day, month, year, decade, period
    end_year: int | None = None  # periods
    resolved: bool = False  # completed from the document's date
    year_stated: bool = True  # False: no year given and none to resolve it from

    def label(self) -> str:
        if self.precision == "period":
            return f"{self.year}–{self.end_year}"
        if self.precision == "decade":
            return f"{self.year}s"
        parts = []
        if self.day:
            parts.append(str(self.day))
        if self.month:
            parts.append(calendar.month_name[self.month])
        if self.year_stated and self.year is not None:
            parts.append(str(self.year))
        return " ".join(parts)

    def iso(self) -> str | None:
        if not self.year_stated or self.year is None:
            return None
        if self.precision in ("year", "decade", "period"):
            return f"{self.year:04d}"
        return f"{self.year:04d}-{self.month:02d}" + (f"-{self.day:02d}" if self.day else "")


def document_date(meta: dict) -> tuple[date, str] | None:
    """The document's own date (``published``) and its precision ("day", "month", "year")."""
    value = str(meta.get("published") or "").strip()
    m = re.match(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?", value)
    if not m:
        return None
    y, mo, d = int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1)
    try:
        return date(y, mo, d), "day" if m.group(3) else "month" if m.group(2) else "year"
    except ValueError:
        return None


def find_dates(p: Parsed, start: int, end: int, doc_date: tuple[date, str] | None) -> list[DateRef]:
    """Dates written in ``p.text[start:end]``; incomplete ones resolved against ``doc_date``."""
    taken: list[tuple[int, int]] = []
    found = []
    date_ents = [p.chars(a, b) for a, b, lab in p.ents if lab == "DATE" and start <= p.starts[a] < end]
    for kind, pattern in PATTERNS:
        for m in pattern.finditer(p.text, start, end):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if kind == "year" and not _looks_like_year(p.text, m, date_ents):
                continue
            if kind == "period" and re.search(r"\((?:c\. ?)?$", p.text[max(0, m.start() - 4):m.start()]):
                continue  # a lifespan after a name: "Peter of Abano (1250–1316)"
            ref = _date(kind, m, doc_date)
            if ref is not None:
                taken.append((m.start(), m.end()))
                found.append(ref)
    return sorted(found, key=lambda r: r.start)


def _looks_like_year(text: str, m: re.Match, date_ents: list[tuple[int, int]]) -> bool:
    if any(s <= m.start() and m.end() <= e for s, e in date_ents):
        return True
    return re.search(TIME_WORDS + r"\s+$", text[max(0, m.start() - 20):m.start()]) is not None


def _date(kind: str, m: re.Match, doc_date: tuple[date, str] | None) -> DateRef | None:
    g = m.groupdict()
    y = int(g["y"]) if g.get("y") else None
    mo = MONTHS.get(g.get("m") or "")
    d = int(g["d"]) if g.get("d") else None
    base = dict(start=m.start("m") if g.get("pre") else m.start(), end=m.end(), as_written=m.group(0))
    if d is not None and not 1 <= d <= 31:
        return None
    if kind == "period":
        return DateRef(**base, year=y, precision="period", end_year=int(g["y2"])) if int(g["y2"]) > y else None
    if kind in ("day", "month", "year", "decade"):
        return DateRef(**base, year=y, month=mo, day=d, precision=kind)
    if kind in ("day?", "month?"):
        precision = kind[:-1]
        if doc_date is None or doc_date[1] == "year":
            return DateRef(**base, year=None, month=mo, day=d, precision=precision, year_stated=False)
        ref = doc_date[0]
        year = min((ref.year - 1, ref.year, ref.year + 1),
                   key=lambda yy: abs((date(yy, mo, min(d or 1, 28)) - ref).days))
        return DateRef(**base, year=year, month=mo, day=d, precision=precision, resolved=True)
    return _relative(m, base, doc_date)


def _relative(m: re.Match, base: dict, doc_date: tuple[date, str] | None) -> DateRef | None:
    if doc_date is None:
        return None
    ref, ref_precision = doc_date
    text = m.group(0).lower()
    g = m.groupdict()
    if g.get("wd"):
        if ref_precision != "day":
            return None
        back = (ref.weekday() - _WEEKDAYS[g["wd"].capitalize()]) % 7
        day = ref - timedelta(days=back)
        return DateRef(**base, year=day.year, month=day.month, day=day.day, precision="day", resolved=True)
    if g.get("unit"):
        n = 1 if g["n"].lower() == "a" else _NUM_WORDS.get(g["n"].lower()) or int(g["n"])
        unit = g["unit"].lower()
        if unit == "year":
            return DateRef(**base, year=ref.year - n, precision="year", resolved=True)
        if unit == "month":
            y, mo = divmod(ref.year * 12 + ref.month - 1 - n, 12)
            return DateRef(**base, year=y, month=mo + 1, precision="month", resolved=True)
        if ref_precision != "day":
            return None
        day = ref - timedelta(days=n * (7 if unit == "week" else 1))
        return DateRef(**base, year=day.year, month=day.month, day=day.day, precision="day", resolved=True)
    shift = -1 if text.startswith(("last", "yesterday")) else 1 if text.startswith("next") else 0
    if text.endswith("year"):
        return DateRef(**base, year=ref.year + shift, precision="year", resolved=True)
    if text.endswith("month") and ref_precision != "year":
        y, mo = divmod(ref.year * 12 + ref.month - 1 + shift, 12)
        return DateRef(**base, year=y, month=mo + 1, precision="month", resolved=True)
    if text in ("today", "yesterday") and ref_precision == "day":
        day = ref + timedelta(days=shift)
        return DateRef(**base, year=day.year, month=day.month, day=day.day, precision="day", resolved=True)
    return None  # "last week" and the like: too vague to place


def sort_key(ref: DateRef, latest_stated: tuple[int, int, int] | None) -> tuple:
    """Chronological key; a date with no year sorts after the latest date its document states."""
    if not ref.year_stated:
        y = latest_stated[0] if latest_stated else 9999
        return (y, 13, (ref.month or 0) * 32 + (ref.day or 0))
    return (ref.year, ref.month or 0, ref.day or 0)


def event_span(p: Parsed, ref: DateRef) -> tuple[int, int]:
    """Characters of the clause the date belongs to (see the module docstring)."""
    a = p.token_at(ref.start)
    b = max(a + 1, p.token_at(ref.end - 1) + 1)
    sa, sb = p.sent_of(a)
    r = p.root_of(a, b)
    h = p.heads[r]
    span = None
    if h != r and p.pos[h] in ("NOUN", "PROPN") and p.deps[r] in ("compound", "amod", "nummod", "nmod", "npadvmod") \
            and not a <= h < b:
        span = p.subtree(h)
    else:
        for v in [r, *p.ancestors(r)]:
            if p.pos[v] in ("VERB", "AUX") and v != r:
                if p.heads[v] != v:
                    span = p.subtree(v)
                break
    if span is None or span[1] - span[0] < 5:
        span = (sa, sb)
    lo, hi = max(span[0], sa), min(span[1], sb)
    while hi - lo > 1 and p.pos[hi - 1] in ("PUNCT", "CCONJ"):
        hi -= 1
    while hi - lo > 1 and p.pos[lo] in ("PUNCT", "CCONJ"):
        lo += 1
    return p.chars(lo, hi)
