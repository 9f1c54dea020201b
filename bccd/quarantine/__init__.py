"""Quarantine (SPEC §4.4): authentic copies from an address that is not (yet) a
confirmed alternate of the user, kept for the user to review instead of refused.

``hold`` keeps a copy and tells the user about it; ``copies`` lists, loads, marks
released and purges what is kept. Filing a released copy is ingest's
(``bccd.ingest.holding``): this package never files mail itself.
"""
