"""kernels layer (private)."""
