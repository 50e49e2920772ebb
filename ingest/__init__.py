"""Ingest: articles -> cleaned text -> sentence-aware chunks -> embeddings -> Chroma (+ BM25)."""
