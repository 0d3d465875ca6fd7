"""Prefix caching: chained block hashes, the hybrid block pool and the global prefix index."""
