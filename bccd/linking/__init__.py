"""The linking layer (SPEC §5.2–5.8), shared by the SMTP and IMAP paths.

``engine`` is what ``ingest.filing`` calls for each copy; it composes ``participants``
(who the counterparts are), ``blocklist`` (§5.2), ``persons`` (§5.5) and ``deals``
(§5.6, deals/leads/projects). ``threading`` (§5.4) places a message in a thread;
``retro`` (§5.7) re-links stored mail after CRM changes; ``manual`` is what a user does
by hand (``mail link|unlink|set|archive|delete``); ``visibility`` (§1, §5.8) is the one
rule every listing goes through.
"""
