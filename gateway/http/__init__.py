"""The thin HTTP layer: an app factory, route handlers and problem details."""
