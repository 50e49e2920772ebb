"""Score answers against a QA file in the dev_qa.jsonl format (see ../shared/eval/README.md).

Metrics:
- ``evidence``: answerable questions whose every evidence group has a string inside the quotes.
- ``answer_terms``: answerable questions answered as supported whose every answer-term group has a
  string inside the answer text.
- ``supported_correct``: all questions where ``supported`` equals ``answerable`` (the decision
  accuracy); ``answered_answerable`` / ``refused_unanswerable`` split it by kind of question.
- ``verbatim``: citations whose quote equals the stored document text at [start:end].
- ``quoted_chars``: mean characters quoted per supported answer.
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

_FOLD = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-",
                       "‐": "-", "‑": "-", "−": "-", "\u00a0": " "})


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).lower()
    return re.sub(r"\s+", " ", text).strip()


def groups_found(groups: list[list[str]], haystack: str) -> bool:
    hay = fold(haystack)
    return all(any(fold(alt) in hay for alt in group) for group in groups)


@dataclass
class Item:
    id: str
    question: str
    answerable: bool
    evidence: list[list[str]]
    answer_terms: list[list[str]]


def load_items(path: Path) -> list[Item]:
    items = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(Item(str(raw.get("id", line_no)), raw["question"], bool(raw.get("answerable", True)),
                              raw.get("evidence") or [], raw.get("answer_terms") or []))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}, line {line_no}: not a QA record ({exc})") from None
    return items


def score(items: Iterable[Item], answers: Iterable[dict], doc_text: Callable[[str], str | None]) -> dict:
    """``answers`` are Answer.to_json() dicts in the same order as ``items``."""
    rows = []
    n_ans = ev_hits = term_hits = term_total = sup_right = n = answered = refused = 0
    levels: dict[str, int] = {}
    quotes = verbatim = 0
    chars: list[int] = []
    for item, ans in zip(items, answers):
        n += 1
        cites = ans.get("citations", [])
        quoted = "\n".join(c["quote"] for c in cites)
        for c in cites:
            quotes += 1
            text = doc_text(c["doc_id"])
            verbatim += int(text is not None and text[c["start"]:c["end"]] == c["quote"])
        row = {"id": item.id, "question": item.question, "answerable": item.answerable,
               "supported": ans["supported"]}
        sup_right += int(ans["supported"] == item.answerable)
        level = ans.get("support_level") or ("answered" if ans["supported"] else "none")
        row["support_level"] = level
        levels[level] = levels.get(level, 0) + 1
        if not item.answerable:
            refused += int(not ans["supported"])
        if ans["supported"]:
            chars.append(sum(len(c["quote"]) for c in cites))
        if item.answerable:
            n_ans += 1
            answered += int(ans["supported"])
            row["evidence"] = groups_found(item.evidence, quoted) if item.evidence else True
            ev_hits += int(row["evidence"])
            if ans["supported"]:
                term_total += 1
                row["terms"] = groups_found(item.answer_terms, ans["answer"])
                term_hits += int(row["terms"])
        rows.append(row)
    return {
        "questions": n,
        "answerable": n_ans,
        "evidence": ev_hits / n_ans if n_ans else None,
        "answer_terms": term_hits / n_ans if n_ans else None,
        "answer_terms_when_supported": term_hits / term_total if term_total else None,
        "supported_correct": sup_right / n if n else None,
        "answered_answerable": answered / n_ans if n_ans else None,
        "refused_unanswerable": refused / (n - n_ans) if n > n_ans else None,
        "support_levels": levels,
        "verbatim": verbatim / quotes if quotes else 1.0,
        "quoted_chars": sum(chars) / len(chars) if chars else 0.0,
        "rows": rows,
    }


def table(result: dict) -> str:
    def pct(x):
        return "  n/a" if x is None else f"{x:6.3f}"

    lines = [
        f"questions           {result['questions']:6d}  (answerable {result['answerable']})",
        f"evidence in quotes  {pct(result['evidence'])}",
        f"answer terms        {pct(result['answer_terms'])}",
        f"supported correct   {pct(result['supported_correct'])}",
        f"  answered (answerable)   {pct(result['answered_answerable'])}",
        f"  refused (unanswerable)  {pct(result['refused_unanswerable'])}",
        f"quotes verbatim     {pct(result['verbatim'])}",
        f"quoted chars/answer {result['quoted_chars']:6.0f}",
    ]
    misses = [r for r in result["rows"] if (r["answerable"] and not (r.get("evidence") and r.get("terms", False)))
              or (r["answerable"] != r["supported"])]
    if misses:
        lines.append("misses:")
        for r in misses:
            flags = []
            if r["answerable"] != r["supported"]:
                flags.append("supported=" + str(r["supported"]).lower())
            if r["answerable"] and not r.get("evidence"):
                flags.append("evidence missing")
            if r["answerable"] and r["supported"] and not r.get("terms"):
                flags.append("terms missing")
            lines.append(f"  {r['id']}: {r['question']}  [{', '.join(flags)}]")
    return "\n".join(lines)
