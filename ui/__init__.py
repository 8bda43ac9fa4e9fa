"""The web interface: `rag ui` serves a Gradio chat over the index (see ui.app)."""
