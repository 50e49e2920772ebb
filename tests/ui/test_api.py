"""The chat endpoint through gradio_client, as a script would call it."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_respond_endpoint_returns_the_answer_with_citations(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False, download_files=False)
    result = client.predict("Who offered sanctuary to Ahmad Massoud?", "extractive", 8, [], [], "", "",
                            api_name="/respond")
    answer = next(x for x in result if isinstance(x, dict) and "citations" in x)
    assert answer["supported"] is True
    assert "Rahmon has offered sanctuary to Ahmad Massoud" in answer["answer"]
    quotes = {c["n"]: c for c in answer["citations"]}
    assert any("Rahmon has offered sanctuary to Ahmad Massoud" in c["quote"] for c in quotes.values())
    for c in quotes.values():
        assert f"[{c['n']}]" in answer["answer"] and c["end"] > c["start"] >= 0 and c["doc_id"] and c["title"]


def test_bad_settings_are_reported_not_crashed(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False, download_files=False)
    result = client.predict("Who offered sanctuary to Ahmad Massoud?", "extractive", 8, [], [], "last spring", "",
                            api_name="/respond")
    assert any(isinstance(x, str) and "From date must look like" in x for x in result)
