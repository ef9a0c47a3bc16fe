"""Keysmith: a self-hosted licensing server with a self-healing sqlx-compatible migrator."""

__version__ = "0.2.0"
