"""report layer (private)."""
