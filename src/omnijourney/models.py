"""Imports every domain's tables so ``Base.metadata`` is complete (Alembic, tests), and the services that
follow profile merges (``customers.hooks``), so a merge reaches them whatever entry point ingested it."""

from omnijourney.analytics import jobs as _analytics_jobs  # noqa: F401  (the analytics sync job)
from omnijourney.api import models as api_models  # noqa: F401
from omnijourney.auth import models as auth_models  # noqa: F401
from omnijourney.carts import models as cart_models  # noqa: F401
from omnijourney.carts import service as _carts_service  # noqa: F401  (registers its merge handler)
from omnijourney.catalog import models as catalog_models  # noqa: F401
from omnijourney.customers import models as customer_models  # noqa: F401
from omnijourney.db import Base
from omnijourney.inventory import models as inventory_models  # noqa: F401
from omnijourney.inventory import reservations as _reservations  # noqa: F401  (registers its expiry job)
from omnijourney.jobs import models as job_models  # noqa: F401
from omnijourney.orders import checkout as _checkout  # noqa: F401  (orders' tables and job handlers)
from omnijourney.payments import jobs as _payments_jobs  # noqa: F401  (payments' tables and job handlers)
from omnijourney.pricing import models as pricing_models  # noqa: F401
from omnijourney.tracking import models as tracking_models  # noqa: F401

metadata = Base.metadata
