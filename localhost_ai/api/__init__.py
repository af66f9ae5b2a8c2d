"""HTTP only: the app factory, middlewares and one module per endpoint family."""

from localhost_ai.api.app import create_app

__all__ = ["create_app"]
