"""Sender checks: strict From parsing and the sender rule (sender.py), authenticity
(DKIM/SPF/DMARC/ARC, one DNS resolver) and Authentication-Results."""
