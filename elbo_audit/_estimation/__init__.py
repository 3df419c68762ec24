"""estimation layer (private)."""
