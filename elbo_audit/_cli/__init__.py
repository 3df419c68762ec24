"""cli layer (private)."""
