"""Background work: durable jobs enqueued with the change that causes them (see ``jobs.service``)."""

from omnijourney.jobs.service import after_commit, batch, cancel, enqueue, enqueue_on, handler, key

__all__ = ["after_commit", "batch", "cancel", "enqueue", "enqueue_on", "handler", "key"]
