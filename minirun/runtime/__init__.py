"""The container: its spec, the one start sequence, and its state on disk."""
