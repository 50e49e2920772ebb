"""The analyst workspace: sessions, library (uploads, deletions), overview, source views, exports and
access to files, built on the Q&A core (``chatbot``); ``workspace.ui`` is its Gradio layer."""
