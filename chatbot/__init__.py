"""Chatbot: question (+history) -> retrieved chunks -> Answer with exact Citations."""
