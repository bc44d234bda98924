"""The HTTP layer: FastAPI app factory, dependencies, routes. No business logic, no torch."""

from service.api.app import create_app

__all__ = ["create_app"]
