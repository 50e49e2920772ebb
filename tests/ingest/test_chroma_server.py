"""QA_CHROMA_URL: the same ingest against a `chroma run` server started by the fixture."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import COMPLETE, IndexStore
from ingest.types import IngestError
from tests.ingest.helpers import APPEAL, SEED_MD, FakeEmbedder, last_json, run_ingest

pytestmark = pytest.mark.slow

ANSWER = "Rahmon has offered sanctuary to Ahmad Massoud"


def test_ingest_into_a_chroma_server(chroma_server, seed_corpus, tmp_path, real_embedder, monkeypatch):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    monkeypatch.setenv("QA_CHROMA_URL", chroma_server)
    monkeypatch.setenv("QA_INDEX_DIR", str(tmp_path / "local"))  # only the BM25 cache lives here
    settings = Settings.from_env()
    assert settings.chroma_url == chroma_server

    report = Ingestor(settings, embedder=real_embedder, progress=False).run([seed_corpus])
    assert report.added == 1 and report.chunks > 0 and not report.failed
    assert not (tmp_path / "local" / "chroma.sqlite3").exists()  # nothing embedded locally

    # The chunks are on the server, seen by an independent HTTP client.
    url = urlparse(chroma_server)
    client = chromadb.HttpClient(host=url.hostname, port=url.port, settings=ChromaSettings(anonymized_telemetry=False))
    names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
    assert {"qa_chunks", "qa_docs"} <= names
    chunks = client.get_collection("qa_chunks")
    assert chunks.count() == report.chunks
    assert chunks.metadata["embedding_model"] == real_embedder.model_id
    stored = chunks.get(include=["documents", "metadatas"])
    assert any(ANSWER in text for text in stored["documents"])
    assert not any(APPEAL in text for text in stored["documents"])
    docs = client.get_collection("qa_docs").get(include=["documents", "metadatas"])
    assert len(docs["ids"]) == 1 and docs["metadatas"][0]["status"] == COMPLETE
    doc_text = docs["documents"][0]
    for text, meta in zip(stored["documents"], stored["metadatas"]):
        assert doc_text[meta["start"] : meta["end"]] == text

    # Query through the store, as the app will.
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension).open(create=False)
    hits = store.query(real_embedder.embed_query("Who offered sanctuary to Ahmad Massoud?"), k=1)
    assert ANSWER in hits[0].chunk.text

    # Second run: unchanged, nothing embedded.
    fake = FakeEmbedder(model_id=real_embedder.model_id, dimension=real_embedder.dimension)
    again = Ingestor(settings, embedder=fake, progress=False).run([seed_corpus])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)
    assert fake.document_calls == 0 and again.chunks == report.chunks

    # The CLI picks the server up from QA_CHROMA_URL as well (and loads no model: nothing changed).
    result = run_ingest(str(seed_corpus), "--json", env={"QA_CHROMA_URL": chroma_server, "QA_INDEX_DIR": str(tmp_path / "cli")})
    assert result.returncode == 0, result.stderr
    data = last_json(result.stdout)
    assert (data["added"], data["updated"], data["unchanged"], data["chunks"]) == (0, 0, 1, report.chunks)
    assert not (tmp_path / "cli" / "chroma.sqlite3").exists()

    # A changed file is replaced on the server too.
    path = seed_corpus / SEED_MD.name
    text = path.read_text(encoding="utf-8").replace(ANSWER, "A sentence added for the server test. " + ANSWER)
    path.write_text(text, encoding="utf-8")
    third = Ingestor(settings, embedder=real_embedder, progress=False).run([seed_corpus])
    assert third.updated == 1
    assert len(client.get_collection("qa_docs").get()["ids"]) == 1
    texts = client.get_collection("qa_chunks").get(include=["documents"])["documents"]
    assert any("added for the server test" in t for t in texts)


def test_unreachable_server_is_a_clear_error(tmp_path, seed_corpus):
    from tests.servers import free_port

    settings = Settings(index_dir=tmp_path / "local", chroma_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(IngestError, match="127.0.0.1"):
        Ingestor(settings, embedder=FakeEmbedder(), progress=False).run([seed_corpus])


def test_bad_chroma_url_is_rejected():
    with pytest.raises(IngestError, match="QA_CHROMA_URL"):
        Settings.from_env({"QA_CHROMA_URL": "localhost:8000"})
