"""The provider interface and the registry of providers by name.

A provider holds the money: a card processor (the built-in ``test`` provider, ``stripe``), our own gift cards
(``gift_card``) or a till (``cash``). Every operation takes an idempotency key that the service derives from its
payment id, so a retry after a crash or a lost answer is the same request to the provider and never charges twice.
Amounts are ``Decimal`` in currency units; adapters convert to the minor units their API wants.

Errors: :class:`ProviderError` is a definite refusal (capture above what was authorised, refund above what was
captured, an unknown payment method): the same request would be refused again. :class:`ProviderUnavailable` means
the outcome is unknown (network, timeout, 5xx, 429): retry later with the same idempotency key. A declined
authorisation is not an error but a result (``status="declined"`` with the provider's code and reason).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import make_url

from omnijourney.core.errors import Invalid

if TYPE_CHECKING:
    from omnijourney.config import Settings
    from omnijourney.db import Database


@dataclass(frozen=True, slots=True)
class Method:
    """What the shopper pays with, as the provider knows it (never card data): ``kind`` is card, gift_card or cash;
    ``token`` the provider's payment-method id or token (``pm_card_visa``), or a gift card's code."""

    kind: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Authorisation:
    """An authorisation's outcome. ``status``: ``authorised`` (money held), ``pending`` (the shopper must act, e.g.
    3-D Secure at ``next_action_url``; a webhook tells the end), ``declined`` (``decline_code``, a human
    ``decline_reason``) or ``captured`` (methods that settle at once: cash)."""

    status: str
    provider_ref: str | None
    amount: Decimal = Decimal(0)
    next_action_url: str | None = None
    decline_code: str | None = None
    decline_reason: str | None = None
    brand: str | None = None
    last4: str | None = None


@dataclass(frozen=True, slots=True)
class Captured:
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Refunded:
    """A refund the provider accepted (``succeeded``, or ``pending`` while it settles)."""

    refund_ref: str | None
    amount: Decimal
    status: str = "succeeded"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified provider event, normalised. ``status`` is the payment's new state as our statuses name it
    (authorised, pending, declined, captured, voided), ``refund_failed`` for a refund that failed after the provider
    accepted it (``refund_ref``, ``amount``, the reason in ``decline_code``/``decline_reason``), or None for events
    that do not change one."""

    id: str
    type: str
    provider_ref: str | None
    payment_id: str | None = None  # ours, from the metadata sent with the authorisation
    status: str | None = None
    amount: Decimal | None = None
    decline_code: str | None = None
    decline_reason: str | None = None
    next_action_url: str | None = None
    refund_ref: str | None = None  # status ``refund_failed``: the provider's refund that failed after it was made
    raw: dict[str, object] = field(default_factory=dict, repr=False)


class ProviderError(Exception):
    """The provider refused the request; the same request would be refused again."""

    retryable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class ProviderUnavailable(ProviderError):
    """The outcome is unknown (network, timeout, 5xx, rate limit): retry later with the same idempotency key."""

    retryable = True


class WebhookInvalid(Exception):
    """An incoming webhook that cannot be trusted (bad or missing signature, too old, not JSON): answered 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PaymentProvider(Protocol):
    """What every provider does. Calls are made outside any transaction of ours, with idempotency keys."""

    name: str

    def authorise(self, *, amount: Decimal, currency: str, method: Method, idempotency_key: str,
                  metadata: Mapping[str, str]) -> Authorisation:
        """Hold ``amount`` (or settle it, for cash)."""
        ...

    def capture(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str) -> Captured:
        """Take ``amount`` (at most what was authorised; the rest is released)."""
        ...

    def void(self, *, ref: str, idempotency_key: str) -> None:
        """Release an authorisation (or a pending one) without taking anything."""
        ...

    def refund(self, *, ref: str, amount: Decimal, currency: str, idempotency_key: str,
               reason: str | None = None) -> Refunded:
        """Give back ``amount``; all refunds together at most what was captured."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Verify an incoming webhook (raw body, headers) and normalise it, or raise :class:`WebhookInvalid`."""
        ...


# ---------------------------------------------------------------- the registry

Factory = Callable[["Database"], PaymentProvider]
_factories: dict[str, Factory] = {}
_settings: Settings | None = None
_cache: dict[tuple[str, str], PaymentProvider] = {}


def configure(settings: Settings | None = None) -> None:
    """Use ``settings`` (default: the process's, from ``OMNI_*``) for the built-in providers from now on."""
    global _settings
    _settings = settings
    _cache.clear()


def settings() -> Settings:
    if _settings is None:
        from omnijourney.config import get_settings

        return get_settings()
    return _settings


def register(name: str, factory: Factory) -> None:
    """Make ``factory(db)`` the provider called ``name`` (another processor's adapter; a test's fake)."""
    _factories[name] = factory
    _cache.pop((name, ""), None)


def unregister(name: str) -> None:
    _factories.pop(name, None)


def available(name: str) -> bool:
    """Whether a provider called ``name`` can be used (registered, built in, or configured)."""
    if name in _factories or name in ("gift_card", "cash"):
        return True
    conf = settings().payments
    return (name == "test" and conf.test_provider) or (name == "stripe" and bool(conf.stripe_api_key))


def get(name: str, db: Database) -> PaymentProvider:
    """The provider called ``name`` for ``db`` (gift cards live in the application database); ``Invalid`` naming
    ``provider`` when there is none or it is not configured."""
    if name in _factories:
        return _factories[name](db)
    if name == "gift_card":
        from omnijourney.payments.giftcards import GiftCardProvider

        return GiftCardProvider(db)
    if name == "cash":
        from omnijourney.payments.cash import CashProvider

        return CashProvider()
    conf = settings()
    if name == "test" and conf.payments.test_provider:
        path = simulator_path(conf, db)
        key = ("test", path)
        if key not in _cache:
            from omnijourney.payments.simulator import TestProvider

            _cache[key] = TestProvider(path, webhook_secret=conf.payments.test_webhook_secret,
                                       public_url=conf.public_url, tolerance_s=conf.payments.webhook_tolerance_s,
                                       latency_s=conf.payments.test_provider_latency_s)
        return _cache[key]
    if name == "stripe" and conf.payments.stripe_api_key:
        key = ("stripe", "")
        if key not in _cache:
            from omnijourney.payments.stripe import StripeProvider

            p = conf.payments
            _cache[key] = StripeProvider(api_key=p.stripe_api_key, webhook_secrets=p.stripe_webhook_secrets,
                                         api_base=p.stripe_api_base, tolerance_s=p.webhook_tolerance_s,
                                         return_url=p.stripe_return_url or (conf.public_url or "").rstrip("/") + "/")
        return _cache[key]
    hint = " (OMNI_PAYMENTS__STRIPE_API_KEY is not set)" if name == "stripe" else ""
    raise Invalid(f"no payment provider {name!r}{hint}", field="provider", code="unknown_provider")


def simulator_path(conf: Settings, db: Database) -> str:
    """Where the test provider keeps its state: ``OMNI_PAYMENTS__TEST_PROVIDER_PATH``, else beside an SQLite
    database file (``omni.db`` -> ``omni.test-provider.db``), else in the temp directory, one file per database."""
    if conf.payments.test_provider_path:
        return conf.payments.test_provider_path
    url = make_url(db.url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            path = Path(url.database)
            return str(path.with_name(f"{path.stem}.test-provider.db"))
        return ":memory:"
    return str(Path(tempfile.gettempdir()) / f"omni-test-provider-{url.host or 'local'}-{url.database}.db")
