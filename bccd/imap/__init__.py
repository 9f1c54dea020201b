"""Mailbox sync over IMAP (SPEC §7): accounts, connection, folder sync, poller, write-back.

Entry points wired by ``bccd serve`` and the CLI:

- :func:`bccd.imap.poller.run_poller` — keep every account in sync until stopped;
- :func:`bccd.imap.poller.sync_once` — one pass (``bccd imap sync --once``);
- :func:`bccd.imap.writeback.run_writeback` — archive/delete on the server when a thread
  is archived/deleted in bccd (the jobs are planned by ``bccd.mailboxes.writeback``);
- the account records themselves are ``bccd.mailboxes.accounts`` (``bccd imap add|list``).

Every message goes through the one ingest entry point (``Pipeline.ingest_imap``), typed
here as :class:`bccd.imap.sync.IngestSink`.
"""
