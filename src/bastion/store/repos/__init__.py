"""Repositories: one module per aggregate. Each function takes an open session."""
