"""The Python API: audit a model object in memory, and audit it while it trains."""
