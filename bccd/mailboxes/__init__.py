"""Users' own mailboxes (SPEC §7): the account records — server settings, credentials
encrypted at rest, sync state and leases (``accounts``) — and the write-back jobs that
archiving or deleting a thread plans for them (``writeback``). The IMAP front
(``bccd.imap``) syncs and acts on the servers; this package only keeps the records.
"""
