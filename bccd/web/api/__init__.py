"""The JSON API under ``/api/v1`` (SPEC §9): the application is ``app.create_api``; one
module per group of routes; ``core`` holds what they share."""
