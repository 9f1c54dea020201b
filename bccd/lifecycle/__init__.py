"""Data lifecycle: offboarding, erasure, retention, blob garbage collection, backup.

One module per job, each blocking (run it in the database threads from async code):

- ``offboard``  — ``user disable`` / ``user delete`` / ``company delete``;
- ``erase``     — the right to erasure of one address;
- ``retention`` — purging expired rejections and quarantined copies;
- ``blobgc``    — deleting attachment blobs nothing references (safe against ingest);
- ``backup``    — snapshot and restore of an embedded (SQLite) data directory;
- ``cascade``   — what a deletion removes, counted generically from the schema;
- ``worker``    — the periodic retention + GC worker of ``bccd serve``.

The CLI (``bccd.cli.user``, ``bccd.cli.company``, ``bccd.cli.lifecycle``) only parses
arguments and prints the summaries these modules return.
"""
