"""The SMTP/LMTP front: listener, thin handler hooks, the reply catalogue."""
