"""Payments' tables and background work, registered by importing this module (``omnijourney.models`` does):
``payments.reconcile``, ``payments.capture``, ``payments.void``, ``payments.refund`` (see ``service``)."""

from omnijourney.payments import models, service

__all__ = ["models", "service"]  # imported for their tables and job handlers
