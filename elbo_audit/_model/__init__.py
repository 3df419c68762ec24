"""model layer (private)."""
