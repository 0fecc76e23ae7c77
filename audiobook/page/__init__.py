"""The Gradio page, one module per tab or panel; ``app.py`` composes them.

Every tab talks only to the ``backend.Backend`` handed to it (the package never imports ``backend.py``).
Handlers are plain module-level functions taking the backend first, so tests call them directly.
"""
