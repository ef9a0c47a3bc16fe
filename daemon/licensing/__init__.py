"""Licensing: keys (Ed25519, LIC1 format), the SQL store, and the service the API calls."""
