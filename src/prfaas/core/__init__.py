"""Stdlib-only building blocks shared by every capability: lifecycle, views, clock, metrics."""
