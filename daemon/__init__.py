"""Keysmith: a self-hosted software-licensing server with a self-healing sqlx-compatible migrator."""

__version__ = "0.1.0"
