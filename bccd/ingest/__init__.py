"""Ingest: bounded parsing, the error taxonomy, and the one pipeline both fronts call."""
