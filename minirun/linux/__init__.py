"""Thin wrappers over kernel interfaces. No container policy lives here:
callers decide *what* to isolate; these functions only know *how*."""
