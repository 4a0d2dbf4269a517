"""Service layer: plain functions over a session and a blob store. API and CLI both call these."""
