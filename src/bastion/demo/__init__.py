"""Bundled demo origins."""
