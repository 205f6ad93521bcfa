"""Settings, read from ``OMNI_*`` environment variables (nested with ``__``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from omnijourney.analytics.settings import AnalyticsSettings


class IdentityRule(BaseModel):
    """Guard rail for one identifier type: at most ``limit`` values on a profile.

    With ``window_days`` the limit counts only values linked to the profile within that many days
    (e.g. at most 100 anonymous ids a week), otherwise ever. Lower ``priority`` numbers win: when a
    merge would break a limit, the event's identifier with the highest number is dropped first.
    """

    limit: int = Field(ge=1)
    priority: int = Field(ge=1)
    window_days: int | None = Field(default=None, ge=1)


DEFAULT_IDENTITY_RULES: dict[str, IdentityRule] = {
    "user_id": IdentityRule(limit=1, priority=1),
    "loyalty_card": IdentityRule(limit=3, priority=2),
    "email": IdentityRule(limit=5, priority=3),
    "phone": IdentityRule(limit=5, priority=4),
    "whatsapp": IdentityRule(limit=3, priority=5),
    "social": IdentityRule(limit=10, priority=6),
    "device_id": IdentityRule(limit=20, priority=8),
    "anonymous_id": IdentityRule(limit=100, priority=9, window_days=7),
}

DEFAULT_BLOCKED_VALUES = [
    "", "null", "none", "nil", "undefined", "anonymous", "unknown", "n/a", "na", "nan",
    "0", "-1", "guest", "test", "[object object]", "00000000-0000-0000-0000-000000000000",
]


class IdentitySettings(BaseModel):
    """Identity-resolution rules (Segment-style limits, priorities, blocked values, merge cap)."""

    rules: dict[str, IdentityRule] = Field(default_factory=lambda: dict(DEFAULT_IDENTITY_RULES))
    # Limit and priority for custom identifier types from ``context.externalIds`` not named in rules.
    custom_rule: IdentityRule = IdentityRule(limit=5, priority=7)
    blocked_values: list[str] = Field(default_factory=lambda: list(DEFAULT_BLOCKED_VALUES))
    max_merges_per_profile: int = Field(default=50, ge=0)
    default_region: str = "US"  # for phone numbers written without a country code

    def rule(self, id_type: str) -> IdentityRule:
        return self.rules.get(id_type, self.custom_rule)


class JobSettings(BaseModel):
    """Background work (``omnijourney.jobs``): ``OMNI_JOBS__EMBEDDED=false`` when ``omni worker`` processes run it."""

    embedded: bool = True  # a worker thread inside ``omni serve`` / ``omni demo``
    poll_s: float = Field(default=0.5, gt=0)  # how often an idle worker looks for due jobs
    lease_s: float = Field(default=60.0, ge=5)  # a running job whose worker is silent this long runs again


class PaymentSettings(BaseModel):
    """Payments (``omnijourney.payments``): providers and their secrets, ``OMNI_PAYMENTS__...``."""

    card_provider: str = "test"  # the provider of a card tender that names none
    reconcile_after_s: float = Field(default=900.0, gt=0)  # an authorisation without its order is voided then
    test_provider: bool = True  # the built-in test provider and its bank page (switch off in production)
    test_provider_path: str | None = None  # its own state; default beside an SQLite database, else in the temp dir
    test_webhook_secret: str = "whsec_omnijourney_test_provider"
    test_provider_latency_s: float = Field(default=0.0, ge=0)  # the test provider answers authorisations this late
    test_webhook_url: str | None = None  # where it delivers events; default <public_url or the page's base URL>
    stripe_api_key: str | None = None  # sk_live_... / sk_test_...
    stripe_webhook_secrets: list[str] = Field(default_factory=list)  # whsec_...; several during a rotation
    stripe_api_base: str = "https://api.stripe.com"
    stripe_return_url: str | None = None  # where 3-D Secure sends the shopper back (default <public_url>/)
    webhook_tolerance_s: int = Field(default=300, ge=1)  # signed events older than this are refused


class OrderSettings(BaseModel):
    """Checkout (``omnijourney.orders.checkout``), ``OMNI_ORDERS__...``: how long it holds units, when it recovers."""

    reserve_ttl_s: float = Field(default=900.0, ge=1)  # a checkout's units go back if it is not done by then
    pending_ttl_s: float = Field(default=900.0, ge=1)  # an order waiting for the shopper (3-D Secure) holds them
    finish_after_s: float = Field(default=60.0, gt=0)  # the recovery job finishes a checkout left without an answer


class InventorySettings(BaseModel):
    """Stock (``omnijourney.inventory``), ``OMNI_INVENTORY__...``: how a hot level spreads its reservations."""

    pool_slots: int = Field(default=32, ge=0, le=256)  # at most this many pool rows per level; 0: no pools
    pool_block: int = Field(default=32, ge=1)  # at most this many units handed to a pool row at a time ...
    pool_share: int = Field(default=4, ge=1)  # ... and at most 1/(slots x share) of the free units


class StaffSettings(BaseModel):
    """Staff logins (``omnijourney.auth.sessions``), ``OMNI_STAFF__...``: how long a session lasts, lockouts."""

    session_ttl_s: float = Field(default=12 * 3600.0, gt=0)  # a session ends this long after the login, whatever
    idle_timeout_s: float = Field(default=1800.0, gt=0)  # ... or after this long without a request
    max_failed_logins: int = Field(default=5, ge=1)  # wrong passwords in a row that lock the account ...
    lockout_s: float = Field(default=900.0, gt=0)  # ... for this long


class Settings(BaseSettings):
    """Runtime settings. ``OMNI_DATABASE_URL`` picks the database (SQLite file by default)."""

    model_config = SettingsConfigDict(env_prefix="OMNI_", env_nested_delimiter="__", extra="ignore")

    database_url: str = "sqlite:///omni.db"
    public_url: str | None = None  # how channels reach the tracking API (analytics.js settings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    payments: PaymentSettings = Field(default_factory=PaymentSettings)
    orders: OrderSettings = Field(default_factory=OrderSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)  # OMNI_ANALYTICS__...
    staff: StaffSettings = Field(default_factory=StaffSettings)
    # Backpressure: ingestion requests waiting for the database beyond this answer 429.
    ingest_max_inflight: int = 64
    ingest_retry_after_s: int = 2


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
