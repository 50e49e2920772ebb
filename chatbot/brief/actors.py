"""Actors: the states, organisations and people the documents discuss, with aliases merged.

- States come from the gazetteer (names, capitals and demonyms: Tashkent/Uzbek -> Uzbekistan),
  found in the text whatever label the NER gave them ("Tajikistan" is sometimes NORP), except
  inside a person's name or a place that is not the state ("New Mexico").
- Organisations and people come from spaCy's NER (ORG, PERSON). Names are merged when they
  differ only by "the"/possessive, when one is the acronym of the other ("the Collective
  Security Treaty Organisation (CSTO)", "UN" = "United Nations"), and a surname alone is the
  person it ends ("Rahmon" = "Emomali Rahmon"); a surname the NER missed elsewhere is counted,
  and a first name before it completes the full name.
- Links: a person's descriptor (an appositive or a title before the name: "Tajikistan's
  president, Emomali Rahmon", "Uzbek President Shavkat Mirziyoyev") or an organisation's own name
  ("Kazakh foreign ministry") naming a state ties them to that state; the state lists them with
  the sentence that says so.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from chatbot.brief.gazetteer import Gazetteer
from chatbot.brief.nlp import Parsed

ACTOR_LABELS = {"PERSON": "person", "ORG": "organisation"}
# Entities inside which a state's name is not a mention of the state.
_NOT_STATE_CONTEXT = {"PERSON", "WORK_OF_ART", "EVENT", "LAW", "PRODUCT", "LANGUAGE", "GPE", "LOC", "FAC"}
_STOP_INITIAL = {"of", "the", "and", "for", "on", "in", "&"}

SentKey = tuple[int, int]  # (document index, first token of the sentence)


@dataclass
class Mention:
    doc: int
    start: int  # characters
    end: int
    sent: SentKey
    surface: str


@dataclass
class Link:
    """``member`` belongs to ``owner`` (a person or organisation to a state), as ``role`` says."""

    member: str
    owner: str
    role: str
    doc: int
    start: int
    end: int  # the span of the sentence that says so


@dataclass
class Actor:
    name: str
    kind: str  # "state", "organisation" or "person"
    mentions: list[Mention] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.mentions)

    def aliases(self) -> dict[str, int]:
        return dict(Counter(m.surface for m in self.mentions).most_common())

    def docs(self) -> list[int]:
        return sorted({m.doc for m in self.mentions})

    def sentences(self) -> set[SentKey]:
        return {m.sent for m in self.mentions}


def clean_name(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" ,.;:–—-\"“”'")
    text = re.sub(r"^(the|The|a|A|an|An)\s+", "", text)
    return re.sub(r"[’']s$", "", text).strip()


def acronym(name: str) -> str:
    words = [w for w in re.split(r"[\s\-]+", name) if w and w.lower() not in _STOP_INITIAL]
    return "".join(w[0] for w in words if w[0].isupper()) if len(words) > 1 else ""


def find_actors(docs: list[Parsed], gazetteer: Gazetteer) -> tuple[list[Actor], list[Link]]:
    states: dict[str, Actor] = {}
    named: dict[str, list[tuple[Mention, str]]] = defaultdict(list)  # clean name -> (mention, label)
    state_spans: list[list[tuple[int, int, str]]] = []
    for d, p in enumerate(docs):
        spans = []
        ents = [(p.starts[a], p.ends[b - 1], label) for a, b, label in p.ents]
        for hit in gazetteer.find(p.text):
            around = [(s, e, lab) for s, e, lab in ents if s <= hit.start and hit.end <= e]
            if any(lab in _NOT_STATE_CONTEXT and clean_name(p.text[s:e]) != p.text[hit.start:hit.end]
                   for s, e, lab in around):
                continue
            m = Mention(d, hit.start, hit.end, _sent_key(p, d, hit.start), p.text[hit.start:hit.end])
            states.setdefault(hit.state, Actor(hit.state, "state")).mentions.append(m)
            spans.append((hit.start, hit.end, hit.state))
        state_spans.append(spans)
        for a, b, label in p.ents:
            s, e = p.chars(a, b)
            name = clean_name(p.text[s:e])
            if len(name) < 2 or not any(ch.isalpha() for ch in name) or gazetteer.state_of(name):
                continue
            lead = p.text.find(name, s, e)
            named[name].append((Mention(d, lead, lead + len(name), _sent_key(p, d, s), name), label))
    people, orgs = _merge_named(named)
    people = {n: a for n, a in people.items() if not _names_a_thing(a, docs)}
    _count_missed_surnames(people, docs, gazetteer)
    links = _links(docs, people, orgs, state_spans)
    actors = list(states.values()) + list(orgs.values()) + list(people.values())
    return actors, links


def _sent_key(p: Parsed, d: int, offset: int) -> SentKey:
    return d, p.sent_of(p.token_at(offset))[0]


def _merge_named(named: dict[str, list[tuple[Mention, str]]]):
    kinds: dict[str, str] = {}
    for name, items in named.items():
        votes = Counter(ACTOR_LABELS[lab] for _, lab in items if lab in ACTOR_LABELS)
        if votes:
            kinds[name] = votes.most_common(1)[0][0]
    target: dict[str, str] = {n: n for n in kinds}
    # Acronyms: "CSTO" -> "Collective Security Treaty Organisation" (unique full name only).
    long_orgs = [n for n, k in kinds.items() if k == "organisation" and " " in n]
    for name, kind in kinds.items():
        if kind == "organisation" and name.isupper() and 2 <= len(name) <= 8:
            full = [n for n in long_orgs if acronym(n) == name.replace(".", "")]
            if len(full) == 1:
                target[name] = full[0]
    # Plurals: "Huguenots" -> "Huguenot".
    for name in kinds:
        if name.endswith("s") and name[:-1] in kinds:
            target[name] = name[:-1]
    # Surnames: "Rahmon" -> "Emomali Rahmon" (unique full name only; whatever the NER called it).
    full_names = [n for n, k in kinds.items() if k == "person" and " " in n]
    for name, kind in kinds.items():
        if " " not in name:
            full = [n for n in full_names if n.split()[-1] == name]
            if len(full) == 1:
                target[name] = full[0]
    people: dict[str, Actor] = {}
    orgs: dict[str, Actor] = {}
    for name, kind in kinds.items():
        final = target[name]
        bucket = people if kinds[final] == "person" else orgs
        actor = bucket.setdefault(final, Actor(final, kinds[final]))
        actor.mentions.extend(m for m, _ in named[name])
    return people, orgs


def _names_a_thing(actor: Actor, docs: list[Parsed]) -> bool:
    """A one-word "person" mostly used to name a thing ("the Chu river", "Chu valley") is a
    mislabelled place or object, not a person."""
    if " " in actor.name:
        return False
    as_modifier = 0
    for m in actor.mentions:
        p = docs[m.doc]
        i = p.token_at(m.start)
        if p.deps[i] == "compound" and p.pos[p.heads[i]] == "NOUN":
            as_modifier += 1
    return as_modifier * 2 >= len(actor.mentions)


def _count_missed_surnames(people: dict[str, Actor], docs: list[Parsed], gazetteer: Gazetteer) -> None:
    """Count a person's surname where the NER missed it, in the documents that name the person
    (outside other entities); capitalised words just before a lone surname complete the name
    ("Anatoly Sidorov" when only "Sidorov" was recognised)."""
    for name in list(people):
        actor = people[name]
        surname = name.split()[-1]
        if len(surname) < 3 or not surname[0].isupper() or gazetteer.state_of(surname):
            continue
        seen = {(m.doc, m.start) for m in actor.mentions} | {(m.doc, m.end - len(surname)) for m in actor.mentions}
        pattern = re.compile(rf"(?<![\w\-]){re.escape(surname)}(?![\w\-])")
        full = None
        for d in actor.docs():
            p = docs[d]
            others = [p.chars(a, b) for a, b, lab in p.ents if lab != "PERSON"]
            for m in pattern.finditer(p.text):
                if (d, m.start()) in seen or any(s <= m.start() < e for s, e in others):
                    continue
                start = m.start()
                i = p.token_at(start)
                j = i
                while j > 0 and p.pos[j - 1] == "PROPN" and p.word(j - 1)[:1].isupper() and i - j < 2 \
                        and p.sent_of(j - 1) == p.sent_of(i):
                    j -= 1
                if " " not in name and j < i:
                    start = p.starts[j]
                    full = p.text[start:m.end()]
                actor.mentions.append(Mention(d, start, m.end(), _sent_key(p, d, start), p.text[start:m.end()]))
        if full and full not in people:
            actor.name = full
            people[full] = people.pop(name)


def _links(docs: list[Parsed], people: dict[str, Actor], orgs: dict[str, Actor],
           state_spans: list[list[tuple[int, int, str]]]) -> list[Link]:
    links = []
    for actor in orgs.values():
        for m in actor.mentions:
            inside = [st for s, e, st in state_spans[m.doc] if m.start <= s and e <= m.end]
            if inside:
                links.append(_link(docs, actor.name, inside[0], actor.name, m))
                break
    for actor in people.values():
        for m in actor.mentions:
            p = docs[m.doc]
            a = p.token_at(m.start)
            b = max(a + 1, p.token_at(m.end - 1) + 1)
            for lo, hi in _descriptors(p, a, b):
                s, e = p.chars(lo, hi)
                inside = [st for ss, ee, st in state_spans[m.doc] if s <= ss and ee <= e]
                if inside:
                    links.append(_link(docs, actor.name, inside[0], p.text[s:e].strip(" ,"), m))
                    break
    return links


def _link(docs: list[Parsed], member: str, owner: str, role: str, m: Mention) -> Link:
    p = docs[m.doc]
    s, e = p.chars(*p.sent_of(m.sent[1]))
    return Link(member, owner, role, m.doc, s, e)


def _descriptors(p: Parsed, a: int, b: int) -> list[tuple[int, int]]:
    """Token ranges that describe the name in [a, b): titles before it, appositives."""
    h = p.root_of(a, b)
    out = []
    mods = [c for c in p.children[h] if not a <= c < b and p.deps[c] in ("compound", "amod", "nmod", "poss")
            and c < a]
    if mods:
        out.append((min(p.subtree(c)[0] for c in mods), a))
    for c in p.children[h]:
        if p.deps[c] == "appos":
            out.append(p.phrase(c))
    if p.deps[h] == "appos":
        head = p.heads[h]
        out.append((p.phrase(head)[0], head + 1))
    return [(lo, hi) for lo, hi in out if hi > lo]

