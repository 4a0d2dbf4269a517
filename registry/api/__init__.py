"""FastAPI server: create_app() builds everything; nothing happens at import time."""

from registry.api.app import create_app

__all__ = ["create_app"]
