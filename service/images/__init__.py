"""Received strips kept on disk for a while, and the overlay pictures drawn from them."""

from service.images.archive import ImageArchive, KeptImage
from service.images.overlay import render_overlay

__all__ = ["ImageArchive", "KeptImage", "render_overlay"]
