"""Exact, vectorised, bounds-constrained power allocation (pure numpy/scipy)."""
