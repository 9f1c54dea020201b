"""The mail store as people see and change it — the CLI, the JSON API and the Mail page
all come here:

- ``read``: the one read model (which threads a user may see, filtered how; one thread);
- ``actions``: what a user does to a thread by hand (link, unlink, visibility, archive,
  delete), each with its side effects (events, mailbox write-back) in one place;
- ``shapes``: the JSON shapes of users, persons and items (SPEC §8);
- ``attachments``: attachment access by tenancy and visibility;
- ``sanitize``: the email HTML allowlist (remote content blocked).
"""
