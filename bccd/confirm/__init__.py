"""Alternate-address confirmation (SPEC §6): tokens, the add/resend/confirm/remove flow, and
the emails it sends (the confirmation to the address, the quarantine notice to the user)."""
