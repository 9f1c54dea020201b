"""The tracking tests (SPEC §13) run in the compose world (``tests.support.compose_world``):
a tracked message is really sent through the Postfix submission service, and what the
recipient received is fetched with real HTTP clients from a real ``bccd serve``."""

from __future__ import annotations

from tests.integration.compose.conftest import alice, any_world, world

__all__ = ["alice", "any_world", "world"]
