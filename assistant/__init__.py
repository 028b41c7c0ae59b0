"""assistant: a voice assistant daemon that answers from an organisation's own knowledge base."""

__version__ = "0.1.0"
