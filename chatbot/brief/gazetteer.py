"""Which state a name, capital or demonym refers to (data: ``data/states.tsv``).

Case-sensitive, longest match first, on word boundaries; names that merely contain a state's
name (``data/not_states.txt``: "New Mexico", "Indian Ocean") are matched too and mean no state.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

_IRREGULAR_PLURAL_END = ("ese", "sh", "ch", "ss", "s", "x", "z", "men", "i", "Swiss")


@dataclass(frozen=True)
class StateHit:
    start: int
    end: int
    state: str
    form: str  # "name", "capital" or "demonym"


def _plural(demonym: str) -> str | None:
    return None if demonym.endswith(_IRREGULAR_PLURAL_END) else demonym + "s"


class Gazetteer:
    def __init__(self, rows: list[tuple[str, list[str], list[str], list[str]]], blocked: list[str]) -> None:
        self.forms: dict[str, tuple[str, str]] = {}  # surface form -> (state, kind); the first row wins
        for name, others, capitals, demonyms in rows:
            for form, kind in ([(name, "name")] + [(o, "name") for o in others] + [(c, "capital") for c in capitals]
                               + [(d, "demonym") for d in demonyms] + [(_plural(d), "demonym") for d in demonyms]):
                if form and form not in self.forms:
                    self.forms[form] = (name, kind)
        self.states = tuple(r[0] for r in rows)
        self.blocked = {b for b in blocked if b not in self.forms}
        alternatives = sorted(set(self.forms) | self.blocked, key=len, reverse=True)
        self._pattern = re.compile(r"(?<![\w\-.])(?:" + "|".join(re.escape(a) for a in alternatives) + r")(?![\w\-])")

    def find(self, text: str, start: int = 0, end: int | None = None) -> list[StateHit]:
        hits = []
        for m in self._pattern.finditer(text, start, len(text) if end is None else end):
            form = m.group(0)
            if form in self.forms:
                state, kind = self.forms[form]
                hits.append(StateHit(m.start(), m.end(), state, kind))
        return hits

    def state_of(self, name: str) -> str | None:
        """The state ``name`` (a whole name, e.g. an entity's text) refers to, if any."""
        found = self.forms.get(name)
        return found[0] if found else None


@lru_cache(maxsize=1)
def default_gazetteer() -> Gazetteer:
    data = files("chatbot.brief") / "data"
    rows = []
    for line in (data / "states.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = (line.split("\t") + ["", "", ""])[:4]
        rows.append((cols[0].strip(), *[[x.strip() for x in c.split(";") if x.strip()] for c in cols[1:]]))
    blocked = [b.strip() for b in (data / "not_states.txt").read_text(encoding="utf-8").splitlines()
               if b.strip() and not b.startswith("#")]
    return Gazetteer(rows, blocked)
