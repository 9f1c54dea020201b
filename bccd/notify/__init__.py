"""Notifications leaving bccd: the durable outbox (``outbox``), outbound mail through the
configured relay (``outbound``) and the ``bccd serve`` workers that drive them (``worker``)."""
