"""Conflicts: groups of figures (``chatbot/brief/figures.py``) measuring the same thing that disagree.

Two figures measure the same thing when they are of the same kind, their subjects agree and most
of the words describing them are shared (and, when both sentences give years, a year is shared).
They conflict when their ranges do not overlap. Changes ("increased 32 per cent", "from 80 to
97") are figures but never conflicts. ``conflicts`` works on any list of figures — the
sentences of a whole collection, or only those an answer cites.
"""
from __future__ import annotations

from dataclasses import dataclass

from chatbot.brief.figures import Figure


@dataclass
class Conflict:
    measure: str
    kind: str
    versions: list[Figure]

    @property
    def across_documents(self) -> bool:
        return len({f.doc for f in self.versions}) > 1


def same_measure(f: Figure, g: Figure) -> bool:
    if f.kind != g.kind or f.change or g.change or not f.terms or not g.terms or f.predicate != g.predicate:
        return False
    if (f.doc, f.sentence) == (g.doc, g.sentence):
        return False  # two figures of one sentence are two facts ("5 sacks in 9 starts")
    if f.head and g.head and f.head != g.head and not (f.head in g.terms and g.head in f.terms):
        return False
    shared = f.terms & g.terms
    if len(shared) < 2 or len(shared) / min(len(f.terms), len(g.terms)) < 0.67:
        return False
    return not (f.years and g.years and not f.years & g.years)


def disagree(f: Figure, g: Figure) -> bool:
    return f.high < g.low or g.high < f.low


def conflicts(figures: list[Figure]) -> list[Conflict]:
    """Groups of figures measuring the same thing where at least two versions disagree."""
    parent = list(range(len(figures)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_term: dict[tuple[str, str], list[int]] = {}  # only figures sharing a word can measure the same thing
    for i, f in enumerate(figures):
        for term in f.terms:
            by_term.setdefault((f.kind, term), []).append(i)
    for i, f in enumerate(figures):
        others = {j for term in f.terms for j in by_term[(f.kind, term)] if j > i}
        for j in sorted(others):
            if same_measure(f, figures[j]):
                parent[find(i)] = find(j)
    groups: dict[int, list[Figure]] = {}
    for i, f in enumerate(figures):
        groups.setdefault(find(i), []).append(f)
    out = []
    for members in groups.values():
        if len(members) > 1 and any(disagree(x, y) for k, x in enumerate(members) for y in members[k + 1:]):
            best = max(members, key=lambda f: len(f.terms))
            out.append(Conflict(best.measure, best.kind, sorted(members, key=lambda f: (f.doc, f.start))))
    return out
