"""Logs (and, with the audit issue, metrics and traces)."""
