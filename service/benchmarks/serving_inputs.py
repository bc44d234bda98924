"""What bench-serve can post, apart from service.benchmarks.serving so that the CLI can offer
the choices without importing the API app that the benchmark starts."""

BODIES = ("png", "raw")
"""A grey PNG, or the raw 8-bit buffer."""
STRIP_SOURCES = ("real", "synthetic")
"""The Severstal sample strips in ../shared/data, or the training generator's strips."""
