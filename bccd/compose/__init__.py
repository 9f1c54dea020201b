"""Writing mail in bccd and sending it through the user's own mailbox (SPEC §12).

A layer of its own between the fronts (``bccd.web``, ``bccd.cli``, and ``bccd.service``
which runs its outbox jobs) and ``bccd.ingest``, through which it files what it sent:

- ``recipients`` — the To/Cc/Bcc a person typed, parsed strictly (errors name the field);
- ``mime`` — the message itself: HTML through the sanitizer allowlist of displayed mail,
  ``data:`` images turned into ``multipart/related`` parts, the plain-text alternative
  (``inscriptis``), attachments, Message-ID at the sender's domain, reply and forward
  headers and quoting;
- ``fields`` — templates' smart fields: checked at save, rendered in a sandbox;
- ``context`` — what a message is written from: the reply's or forward's original, the
  entity and its person/organization, the mailbox that sends;
- ``templates`` — the user's and the company's templates;
- ``submit`` — one SMTP submission through the mailbox's server (password or OAuth 2.0);
- ``send`` — the whole of sending: idempotency, the first attempt while the client
  waits, filing through ``ingest``, the durable outbox for retries, the webhooks.
"""
