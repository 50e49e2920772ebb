"""Checks every answer must pass, whatever the question."""
from __future__ import annotations

import re

from chatbot.types import Answer

MARKER = re.compile(r"\[(\d+)\]")


def assert_citation_invariants(answer: Answer, doc_text) -> None:
    """Quotes are exact document slices; the answer's [n] markers match its citations one to one."""
    for c in answer.citations + answer.evidence:
        text = doc_text(c.doc_id)
        assert text is not None, f"citation {c.n} points at unknown document {c.doc_id}"
        assert text[c.start:c.end] == c.quote, f"citation {c.n} is not an exact slice of {c.doc_id}"
        assert c.quote.strip() == c.quote and c.quote
    numbers = [c.n for c in answer.citations]
    assert numbers == list(range(1, len(numbers) + 1))
    markers = {int(m) for m in MARKER.findall(answer.text)}
    assert markers == set(numbers), (markers, numbers, answer.text)
    assert answer.supported == (answer.level == "answered")
    if answer.supported:
        assert answer.citations, "a supported answer must cite something"
    elif answer.level == "partial":  # what the sources do say, cited
        assert answer.citations and answer.text.startswith("The sources don't say")
    else:
        assert not answer.citations
        assert answer.text.startswith("The sources don't say")
