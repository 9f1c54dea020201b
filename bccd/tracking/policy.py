"""Who decides what is tracked (SPEC §13): the company's policy, the user's settings, the
message's own choice — in that order.

- A company's ``tracking`` is ``allowed`` (the default) or ``off``. ``set_company(s,
  company, value)`` changes it, and with it every tracking record of the company
  (``Tracking.active``): ``off`` stops recording hits at once, also on messages already
  sent — their links keep redirecting —; ``allowed`` again resumes them.
- A user's ``tracking_opens`` and ``tracking_clicks`` (default off) are the default of each
  message they send (``set_user``); turning one on is refused while the company's policy is
  ``off``.
- A message's ``track_opens``/``track_clicks`` (the API's, the compose form's) override
  the user's settings for that message. ``plan(settings, user, …)`` decides, for a message
  about to be built, → a ``links.Plan`` or None (nothing tracked). Only HTML can carry a
  pixel and tracked links: a plain-text message is never tracked, and asking for it
  explicitly is refused (naming the field), as is asking while the company's policy is
  ``off``.

Only mail sent from bccd is ever tracked: a copy that reaches bccd by Bcc or by mailbox
sync is filed as it came, and nothing of it is rewritten.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import update
from sqlalchemy.orm import Session

from bccd.config import Settings
from bccd.errors import Conflict, Invalid
from bccd.store.models import Company, User
from bccd.store.models_tracking import Tracking
from bccd.tracking import tokens
from bccd.tracking.links import Plan

POLICIES = ("allowed", "off")


def allowed(company: Company) -> bool:
    return company.tracking == "allowed"


def set_company(s: Session, company: Company, value: str) -> None:
    if value not in POLICIES:
        raise Invalid("tracking must be allowed or off")
    company.tracking = value
    s.execute(update(Tracking).where(Tracking.company_id == company.id)
              .values(active=value == "allowed"))
    s.flush()


def set_user(user: User, *, opens: bool | None = None, clicks: bool | None = None) -> None:
    for name, value in (("tracking_opens", opens), ("tracking_clicks", clicks)):
        if value and not allowed(user.company):
            raise Conflict(f"{name}: your company does not allow open and click tracking")
    if opens is not None:
        user.tracking_opens = opens
    if clicks is not None:
        user.tracking_clicks = clicks


def plan(settings: Settings, user: User, *, opens: bool | None, clicks: bool | None,
         html: bool, now: float | None = None) -> Plan | None:
    """What to track in a message ``user`` is about to send (None: nothing); ``opens``
    and ``clicks`` are the message's own choice (None: the user's setting)."""
    asked = (("track_opens", opens), ("track_clicks", clicks))
    if not allowed(user.company):
        for name, value in asked:
            if value:
                raise Conflict(f"{name}: your company does not allow open and click tracking")
        return None
    if not html:
        for name, value in asked:
            if value:
                raise Invalid(f"{name}: only HTML mail can be tracked; this message is "
                              f"plain text")
        return None
    track_opens = user.tracking_opens if opens is None else opens
    track_clicks = user.tracking_clicks if clicks is None else clicks
    if not (track_opens or track_clicks):
        return None
    return Plan(tracking_id=secrets.randbits(63) or 1, opens=track_opens, clicks=track_clicks,
                issued=int(now if now is not None else time.time()),
                base_url=settings.http.base_url.rstrip("/"),
                key=tokens.derive(settings.security.secret_key))
