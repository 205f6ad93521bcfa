"""Payment fixtures: the providers configured for a test (the test provider's state in the test's folder, Stripe
pointed at a local fake), and the fake Stripe server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnijourney.config import PaymentSettings, Settings
from omnijourney.payments import providers
from tests.payments.fake_stripe import FakeStripe, Served

STRIPE_KEY = "sk_test_omnijourney"
STRIPE_SECRET = "whsec_fake_stripe_endpoint"


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[Served]:
    with Served(FakeStripe()) as served:
        yield served


@pytest.fixture
def payment_settings(tmp_path: Path, stripe_server: Served) -> Iterator[Settings]:
    """Providers for this test: the test provider's file in the test's folder, Stripe at the local fake."""
    conf = Settings(database_url="sqlite://", public_url="http://shop.test", payments=PaymentSettings(
        test_provider_path=str(tmp_path / "test-provider.db"), stripe_api_key=STRIPE_KEY,
        stripe_webhook_secrets=[STRIPE_SECRET], stripe_api_base=stripe_server.url))
    providers.configure(conf)
    yield conf
    providers.configure(None)
