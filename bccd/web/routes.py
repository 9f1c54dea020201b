"""The HTTP routes bccd serves beside ``/healthz``, gathered in one place.

A route factory takes the ``Services`` and returns Starlette routes; ``create_app``
mounts every factory in ``FACTORIES``. A new page or API module means one more line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bccd.web import (
    compose_pages,
    confirm,
    mailbox_pages,
    oauth_callback,
    ops,
    pages,
    signin,
    tracking,
)
from bccd.web.api import app as api_app

if TYPE_CHECKING:
    from bccd.runtime import Services

RouteFactory = Callable[["Services"], list[Any]]

# signin before pages: it extends /mail/login
FACTORIES: tuple[RouteFactory, ...] = (confirm.routes, api_app.routes, signin.routes, oauth_callback.routes,
                                       mailbox_pages.routes, pages.routes, compose_pages.routes,
                                       ops.routes, tracking.routes)
