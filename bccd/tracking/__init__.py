"""Open and click tracking of mail sent from bccd (SPEC §13), built so that a human open
means a human.

A layer beside ``auth``, ``linking`` and ``notify`` (it imports only the store and the
leaves); ``compose`` uses it to build the recipients' copy, ``web`` serves its public
endpoints, ``mailstore`` shows what it recorded:

- ``policy`` — what is tracked: the company's policy, the user's settings, the message's
  own choice; a ``links.Plan`` for a message about to be built;
- ``links`` — the recipients' HTML: each ``http(s)`` link through ``/t/c/<token>``, the
  hidden decoy link, the pixel ``/t/o/<token>`` (the user's own copy and the plain-text
  part are left as written);
- ``tokens`` — signed tokens naming the message and the link (``security.secret_key``,
  ``old_secret_keys`` verify too, ``tracking.ttl``), checked without the database;
- ``rules`` — the one table of rules telling machines from people, each with its reason;
- ``hits`` — recording a hit (one row read and written, one added), the message's record
  as it is sent, the ``message.opened`` / ``link.clicked`` webhooks of first human hits;
- ``summary`` — the message JSON's ``tracking`` object and the recent hits.
"""
