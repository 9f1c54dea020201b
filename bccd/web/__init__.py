"""HTTP: the ASGI app (JSON API, confirmation page, Mail page, health, metrics)."""
