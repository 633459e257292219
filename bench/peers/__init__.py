"""Benchmark harness: Ostraca against its peers and the physical limits (``python -m bench``)."""
