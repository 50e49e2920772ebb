"""The Gradio layer of the workspace: it lays out, wires events and renders; behaviour is in ``workspace``."""
