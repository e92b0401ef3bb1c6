"""Bulutfon's webhooks: calls in the warehouse within a minute of hanging up.

* :mod:`.events` parses a post (JSON or form) into a :class:`WebhookEvent`;
* :mod:`.inbox` makes it durable in a SQLite file before the receiver answers 200;
* :mod:`.app` and :mod:`.server` are the receiver (``bulutfon-pipeline webhook``);
* :mod:`.load` loads the pushed calls through the detail load (plain Python);
* :mod:`.sensor` is the Dagster sensor and job that run it for new hangups.

This ``__init__`` imports nothing heavy: the receiver starts without dagster or pandas.
"""
