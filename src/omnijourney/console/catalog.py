"""Catalog and prices: products and where each is published, a price quote with every line explained, and the
consistency report (each price difference between channels with the rule that explains it, or none)."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from omnijourney.api.deps import SessionDep
from omnijourney.auth.service import Principal
from omnijourney.catalog import service as catalog
from omnijourney.catalog.channels import list_channels
from omnijourney.catalog.models import Category, Publication
from omnijourney.console.web import PREFIX, Errors, query, render, text, viewer, whole
from omnijourney.core.errors import Invalid, NotFound, OmniError
from omnijourney.pricing import consistency, quoting

router = APIRouter(prefix=PREFIX, include_in_schema=False)
CatalogRead = Annotated[Principal, Depends(viewer("catalog:read"))]
PricingRead = Annotated[Principal, Depends(viewer("pricing:read"))]

PRODUCTS_PAGE = 50
QUOTE_ROWS = 5
FINDINGS_PAGE = 100
STATUSES = (("", "Any status"), ("active", "Active"), ("draft", "Draft"), ("archived", "Archived"))
FINDING_FILTERS = (("problems", "Unexplained and missing prices"), ("explained", "Explained by a channel rule"),
                   ("all", "All differences"))


@router.get("/catalog/products")
def products_page(request: Request, session: SessionDep, _: CatalogRead) -> Response:
    """Products (search by title, filter by channel and status) with their publication in every channel."""
    errors = Errors()
    channels = list_channels(session)
    rows: list[catalog.ProductView] = []
    total, page, status = 0, 1, 200
    search = channel = state = None
    try:
        search = query(request, "search")
        channel = query(request, "channel", max_len=64)
        state = query(request, "status", max_len=16)
        if state is not None and state not in dict(STATUSES):
            raise Invalid("choose a status from the list", field="status")
        page = whole(request.query_params.get("page") or "1", "page", high=100_000)
        rows, total = catalog.list_products(session, search=search, channel=channel, status=state,
                                            limit=PRODUCTS_PAGE, offset=(page - 1) * PRODUCTS_PAGE)
    except OmniError as exc:
        errors.add(exc, ("search", "channel", "status", "page"))
        status = exc.status
    params = {k: v for k, v in {"search": search, "channel": channel, "status": state}.items() if v}
    pages = max(1, -(-total // PRODUCTS_PAGE))
    next_url = f"{PREFIX}/catalog/products?{urlencode({**params, 'page': page + 1})}" if page < pages else None
    prev_url = f"{PREFIX}/catalog/products?{urlencode({**params, 'page': page - 1})}" if page > 1 else None
    return render(request, "products.html", status=status, title="Products", errors=errors, rows=rows, total=total,
                  page=page, pages=pages, next_url=next_url, prev_url=prev_url, channels=channels,
                  channel_options=[(c.code, f"{c.name} ({c.code})") for c in channels],
                  search=search or "", channel=channel or "", state=state or "", statuses=STATUSES)


@router.get("/catalog/products/{product_id}")
def product_page(product_id: str, request: Request, session: SessionDep, _: CatalogRead) -> Response:
    """A product: its variants, categories and its publication in each channel."""
    if len(product_id) > 64:
        raise NotFound("no such product", field="product_id")
    try:
        view = catalog.get_product(session, product_id=product_id)
    except NotFound:
        view = catalog.get_product_by_handle(session, handle=product_id)
    published = dict(session.execute(select(Publication.channel_code, Publication.published_at)
                                     .where(Publication.product_id == view.product.id)).all())
    names = dict(session.execute(select(Category.code, Category.name)
                                 .where(Category.code.in_(view.category_ids))).all()) if view.category_ids else {}
    return render(request, "product.html", title=view.product.title, view=view, p=view.product,
                  channels=list_channels(session), published=published, categories=names)


def _quote_form(request: Request) -> dict[str, Any]:
    params = request.query_params
    skus, qtys = params.getlist("sku"), params.getlist("qty")
    rows = []
    for i in range(max(QUOTE_ROWS, len(skus))):
        rows.append({"sku": (skus[i] if i < len(skus) else "").strip()[:64],
                     "qty": (qtys[i] if i < len(qtys) else "").strip()[:6]})
    return {"channel": (params.get("channel") or "").strip()[:64], "rows": rows[:quoting.MAX_LINES],
            "customer_id": (params.get("customer_id") or "").strip()[:64],
            "vouchers": (params.get("vouchers") or "").strip()[:500],
            "fulfilment": (params.get("fulfilment") or "").strip()[:16]}


@router.get("/pricing/quote")
def quote_page(request: Request, session: SessionDep, _: PricingRead) -> Response:
    """Price a basket in a channel, as every channel does, and explain each line, promotion and voucher."""
    form = _quote_form(request)
    errors = Errors()
    channels = [c for c in list_channels(session) if c.active]
    result = None
    status = 200
    wanted = [(i, r) for i, r in enumerate(form["rows"]) if r["sku"]]
    if wanted:
        row_of: list[int] = []
        lines: list[tuple[str, int]] = []
        for i, r in wanted:
            try:
                text(r["sku"], f"lines[{i}].sku", max_len=64)
                lines.append((r["sku"], whole(r["qty"] or "1", f"lines[{i}].quantity")))
                row_of.append(i)
            except Invalid as exc:
                errors[exc.field or "_"] = exc.message
        vouchers = [v.strip() for v in form["vouchers"].replace(";", ",").split(",") if v.strip()]
        if not form["channel"]:
            errors["channel"] = "Choose the channel to price in."
        if form["fulfilment"] not in ("", "delivery", "in_store"):
            errors["fulfilment"] = "Choose how the goods reach the customer from the list."
        if not errors:
            try:
                result = quoting.quote(session, channel_code=form["channel"], lines=lines,
                                       customer_id=form["customer_id"] or None, vouchers=vouchers,
                                       fulfilment=form["fulfilment"] or None)
            except OmniError as exc:
                field = exc.field or "_"
                if field.startswith("lines["):  # the basket's line i is the form's row row_of[i]
                    index, _, rest = field[6:].partition("]")
                    if index.isdigit() and int(index) < len(row_of):
                        field = f"lines[{row_of[int(index)]}]{rest}"
                elif field.startswith("vouchers"):
                    field = "vouchers"
                elif field not in ("channel", "customer_id", "fulfilment"):
                    field = "_"
                errors[field] = exc.message
        if errors:
            status = 422
    return render(request, "quote.html", status=status, title="Price quote", form=form, errors=errors,
                  channels=channels, q=result)


REPORT_TTL_S = 60.0  # promotions and price lists start and end with time: a report is never older than this
_reports: dict[str, tuple[float, tuple[Any, ...], consistency.Report]] = {}
_reports_lock = threading.Lock()


def _fingerprint(session: Session) -> tuple[Any, ...]:
    """What the report depends on, summed up in a few aggregate queries (about a millisecond on the demo): a change
    of a price, a list, a promotion, a channel, a tax rate, a publication or a variant changes it."""
    from omnijourney.catalog.models import Channel, Product, Variant
    from omnijourney.pricing.models import PriceEntry, PriceList, Promotion, TaxMarket, TaxRate

    parts: list[Any] = []
    for stamp in (PriceList.updated_at, Promotion.updated_at, Channel.updated_at, TaxMarket.updated_at,
                  Product.updated_at, Variant.updated_at):
        parts.extend(session.execute(select(func.count(), func.max(stamp))).one())
    parts.extend(session.execute(select(func.count(), func.sum(PriceEntry.amount_minor),
                                        func.sum(PriceEntry.amount_minor * func.length(PriceEntry.sku)))).one())
    parts.extend(session.execute(select(func.count(), func.sum(TaxRate.rate_ppm))).one())
    parts.extend(session.execute(select(func.count(), func.max(Publication.published_at))).one())
    return tuple(parts)


def cached_report(session: Session) -> consistency.Report:
    """The consistency report, computed again when what it depends on changed or after ``REPORT_TTL_S`` (checking
    every SKU in every channel takes seconds on a large catalog; a page must answer in milliseconds)."""
    key = str(session.get_bind().url)
    mark = _fingerprint(session)
    with _reports_lock:
        found = _reports.get(key)
        if found is not None and found[1] == mark and time.monotonic() - found[0] < REPORT_TTL_S:
            return found[2]
        report = consistency.check(session)
        _reports[key] = (time.monotonic(), mark, report)
        return report


@router.get("/pricing/consistency")
def consistency_page(request: Request, session: SessionDep, _: PricingRead) -> Response:
    """Every SKU whose price differs between channels: unexplained, missing a price, or explained by a rule."""
    errors = Errors()
    show = request.query_params.get("show") or "problems"
    status = 200
    if show not in dict(FINDING_FILTERS):
        errors["show"] = "Choose what to show from the list."
        show, status = "problems", 422
    page = 1
    try:
        page = whole(request.query_params.get("page") or "1", "page", high=100_000)
    except Invalid as exc:
        errors.add(exc)
        status = 422
    report = cached_report(session)
    counts = {"unexplained": 0, "missing_price": 0, "explained": 0}
    for f in report.findings:
        counts[f.status] += 1
    chosen = [f for f in report.findings
              if show == "all" or (f.status == "explained") == (show == "explained")]
    pages = max(1, -(-len(chosen) // FINDINGS_PAGE))
    shown = chosen[(page - 1) * FINDINGS_PAGE: page * FINDINGS_PAGE]
    next_url = f"{PREFIX}/pricing/consistency?{urlencode({'show': show, 'page': page + 1})}" if page < pages else None
    return render(request, "consistency.html", status=status, title="Price consistency", report=report,
                  counts=counts, findings=shown, show=show, filters=FINDING_FILTERS, errors=errors, page=page,
                  pages=pages, next_url=next_url)
