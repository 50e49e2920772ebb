"""Themes: which sentences speak to which concern, matched by meaning with the embedding model.

A theme is a name and a one-sentence description. Every sentence of a collection on one topic
is somewhat close to some themes (in a corpus about the Taliban, everything sounds a bit like
"security"), so each theme's similarities are first centred on the theme's mean over the
candidate sentences; a sentence then belongs to the theme it stands out for most, and to any
other it stands out for nearly as much (``margin``) — one sentence can sit under two themes ("a
trade liaison office" and "an embassy") — provided the plain cosine similarity is at least
``min_similarity``. Themes are a setting: ``--themes FILE`` (JSON or YAML,
``{name: description}`` or a list of ``{name, description}``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Theme:
    name: str
    description: str


DEFAULT_THEMES = (
    Theme("security", "Security threats: terrorism, militant and extremist groups, armed conflict, border "
                      "security and drug trafficking."),
    Theme("trade and transport", "Trade and transport: markets, exports and imports, investment, trade offices, "
                                 "railways, roads and transit routes."),
    Theme("water", "Water: rivers, canals, dams, irrigation and sharing water resources."),
    Theme("humanitarian", "Humanitarian concerns: aid, poverty, hunger, refugees, women's rights and human rights."),
    Theme("diplomacy and recognition", "Diplomacy and recognition: embassies, envoys, diplomatic talks and "
                                       "whether to recognise a government."),
)


class ThemeError(ValueError):
    """A themes file is unreadable or malformed; the message names the problem."""


def load_themes(path: Path) -> tuple[Theme, ...]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ThemeError(f"cannot read the themes file {path}: {exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            import yaml

            data = yaml.safe_load(raw)
    except Exception as exc:
        raise ThemeError(f"the themes file {path} is not valid {path.suffix.lstrip('.').upper() or 'YAML'} ({exc}).") \
            from None
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list) and all(isinstance(x, dict) for x in data):
        items = [(x.get("name"), x.get("description")) for x in data]
    else:
        raise ThemeError(f"the themes file {path} must map each theme's name to a description.")
    themes = []
    for name, description in items:
        if not isinstance(name, str) or not name.strip() or not isinstance(description, str) or not description.strip():
            raise ThemeError(f"the themes file {path} has a theme without a name or a description ({name!r}).")
        themes.append(Theme(name.strip(), description.strip()))
    if not themes:
        raise ThemeError(f"the themes file {path} defines no themes.")
    if len({t.name for t in themes}) != len(themes):
        raise ThemeError(f"the themes file {path} names a theme twice.")
    return tuple(themes)


MIN_FOR_CENTRING = 8  # fewer candidate sentences give no stable mean: plain similarities are used


def match_themes(sentences: Sequence[str], themes: Sequence[Theme], embedder, min_similarity: float = 0.2,
                 margin: float = 0.03, known: dict[str, np.ndarray] | None = None) -> list[list[tuple[int, float]]]:
    """For each sentence, the themes it belongs to as (theme index, centred score), best first.
    ``known``: vectors already computed, by text (only the others are embedded)."""
    if not sentences:
        return []
    known = dict(known or {})
    texts = [t.description for t in themes] + list(sentences)
    missing = list(dict.fromkeys(t for t in texts if t not in known))
    if missing:
        known.update(zip(missing, embedder.embed_documents(missing)))
    vectors = np.array([known[t] for t in texts])
    theme_vecs, sent_vecs = vectors[: len(themes)], vectors[len(themes):]
    sims = np.asarray(sent_vecs @ theme_vecs.T, dtype=np.float64)
    centred = sims - sims.mean(axis=0) if len(sentences) >= MIN_FOR_CENTRING else sims
    out = []
    for raw, row in zip(sims, centred):
        best = float(row.max())
        out.append(sorted(((j, float(c)) for j, c in enumerate(row) if c >= best - margin and raw[j] >= min_similarity),
                          key=lambda x: -x[1]))
    return out
