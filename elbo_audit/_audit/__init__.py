"""audit layer (private)."""
