"""Data-quality queries: the facts accepted although inconsistent with the history so far."""
