"""Catalog use cases: channels, categories, products and variants, and the set-based SKU lookup.

Every function takes a ``Session``, flushes and never commits (the caller owns the transaction).
Channel functions live in ``catalog.channels`` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnijourney.catalog.barcodes import gtin_problem
from omnijourney.catalog.channels import create_channel as create_channel  # re-exported
from omnijourney.catalog.channels import get_channel
from omnijourney.catalog.channels import list_channels as list_channels
from omnijourney.catalog.channels import update_channel as update_channel
from omnijourney.catalog.models import Category, Channel, Product, ProductCategory, Publication, Variant
from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.ids import new_id
from omnijourney.core.time import utcnow

PRODUCT_STATUSES = ("draft", "active", "archived")
MAX_PAGE = 200


# ---------------------------------------------------------------- categories

def create_category(session: Session, *, code: str, name: str, parent: str | None = None) -> Category:
    """Add a node to the category tree (under ``parent``, or as a root)."""
    if session.get(Category, code) is not None:
        raise Conflict(f"a category with code {code!r} exists already", field="code")
    if parent is not None and session.get(Category, parent) is None:
        raise Invalid(f"no parent category {parent!r}", field="parent")
    category = Category(code=code, name=name.strip(), parent_code=parent, created_at=utcnow())
    session.add(category)
    _flush(session, "code", f"a category with code {code!r} exists already")
    return category


def list_categories(session: Session) -> list[Category]:
    return list(session.scalars(select(Category).order_by(Category.code)))


def _descendants(session: Session, code: str) -> list[str]:
    tree = select(Category.code).where(Category.code == code).cte("tree", recursive=True)
    tree = tree.union(select(Category.code).join(tree, Category.parent_code == tree.c.code))
    return list(session.scalars(select(tree.c.code)))


# ---------------------------------------------------------------- products and variants

@dataclass(slots=True)
class ProductView:
    """A product with its variants, category codes and the channels it is sold in."""

    product: Product
    variants: list[Variant]
    category_ids: list[str]
    channels: list[str]


def _flush(session: Session, field: str, message: str) -> None:
    # The pre-checks catch duplicates; this catches the one that a concurrent request inserted meanwhile.
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(message, field=field)


def _check_categories(session: Session, codes: Sequence[str]) -> list[str]:
    codes = sorted(set(codes))
    known = set(session.scalars(select(Category.code).where(Category.code.in_(codes)))) if codes else set()
    missing = [c for c in codes if c not in known]
    if missing:
        raise Invalid(f"unknown categories: {', '.join(missing)}", field="category_ids")
    return codes


def _check_channels(session: Session, codes: Sequence[str]) -> list[str]:
    codes = sorted(set(codes))
    known = set(session.scalars(select(Channel.code).where(Channel.code.in_(codes)))) if codes else set()
    missing = [c for c in codes if c not in known]
    if missing:
        raise Invalid(f"unknown channels: {', '.join(missing)}", field="channels")
    return codes


def _check_variant_fields(session: Session, *, sku: str | None, barcode: str | None,
                          exclude_sku: str | None = None) -> None:
    if sku is not None and session.get(Variant, sku) is not None:
        raise Conflict(f"SKU {sku!r} exists already", field="sku")
    if barcode is not None:
        problem = gtin_problem(barcode)
        if problem:
            raise Invalid(f"bad barcode {barcode!r}: {problem}", field="barcode")
        owner = session.scalar(select(Variant.sku).where(Variant.barcode == barcode))
        if owner is not None and owner != exclude_sku:
            raise Conflict(f"barcode {barcode} belongs to SKU {owner!r} already", field="barcode")


def _new_variant(product_id: str, position: int, spec: Mapping[str, Any]) -> Variant:
    now = utcnow()
    return Variant(sku=spec["sku"], product_id=product_id, title=spec.get("title") or "",
                   attributes=dict(spec.get("attributes") or {}), barcode=spec.get("barcode"),
                   image_urls=list(spec.get("image_urls") or []), position=position, active=True,
                   created_at=now, updated_at=now)


def create_product(session: Session, *, handle: str, title: str, description: str = "", brand: str | None = None,
                   attributes: Mapping[str, Any] | None = None, status: str = "active",
                   tax_class: str = "standard", category_ids: Sequence[str] = (), channels: Sequence[str] = (),
                   variants: Sequence[Mapping[str, Any]] = ()) -> ProductView:
    """Create a product with its variants (``sku``, ``title``, ``attributes``, ``barcode``, ``image_urls``),
    categories and the channels it is published in."""
    if status not in PRODUCT_STATUSES:
        raise Invalid(f"status must be one of {', '.join(PRODUCT_STATUSES)}", field="status")
    if session.scalar(select(Product.id).where(Product.handle == handle)) is not None:
        raise Conflict(f"a product with handle {handle!r} exists already", field="handle")
    cats = _check_categories(session, category_ids)
    chans = _check_channels(session, channels)
    seen_sku: set[str] = set()
    seen_barcode: set[str] = set()
    for spec in variants:
        if spec["sku"] in seen_sku:
            raise Conflict(f"SKU {spec['sku']!r} is given twice", field="sku")
        if spec.get("barcode") and spec["barcode"] in seen_barcode:
            raise Conflict(f"barcode {spec['barcode']} is given twice", field="barcode")
        seen_sku.add(spec["sku"])
        if spec.get("barcode"):
            seen_barcode.add(spec["barcode"])
        _check_variant_fields(session, sku=spec["sku"], barcode=spec.get("barcode"))
    now = utcnow()
    product = Product(id=new_id(), handle=handle, title=title.strip(), description=description, brand=brand,
                      attributes=dict(attributes or {}), status=status, tax_class=tax_class,
                      created_at=now, updated_at=now)
    session.add(product)
    session.flush()  # the product row first: the variants, categories and publications point at it
    rows = [_new_variant(product.id, i, spec) for i, spec in enumerate(variants)]
    session.add_all(rows)
    session.add_all(ProductCategory(product_id=product.id, category_code=c) for c in cats)
    session.add_all(Publication(product_id=product.id, channel_code=c, published_at=now) for c in chans)
    _flush(session, "sku", "a SKU, barcode or handle of this product exists already")
    return ProductView(product, rows, cats, chans)


def _product(session: Session, product_id: str) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}", field="product_id")
    return product


def _views(session: Session, products: Sequence[Product]) -> list[ProductView]:
    """Views of many products in three queries (variants, categories, channels), whatever their number."""
    ids = [p.id for p in products]
    if not ids:
        return []
    variants: dict[str, list[Variant]] = {i: [] for i in ids}
    for v in session.scalars(select(Variant).where(Variant.product_id.in_(ids))
                             .order_by(Variant.product_id, Variant.position, Variant.sku)):
        variants[v.product_id].append(v)
    cats: dict[str, list[str]] = {i: [] for i in ids}
    for pid, code in session.execute(select(ProductCategory.product_id, ProductCategory.category_code)
                                     .where(ProductCategory.product_id.in_(ids)).order_by(ProductCategory.category_code)):
        cats[pid].append(code)
    chans: dict[str, list[str]] = {i: [] for i in ids}
    for pid, code in session.execute(select(Publication.product_id, Publication.channel_code)
                                     .where(Publication.product_id.in_(ids)).order_by(Publication.channel_code)):
        chans[pid].append(code)
    return [ProductView(p, variants[p.id], cats[p.id], chans[p.id]) for p in products]


def get_product(session: Session, *, product_id: str) -> ProductView:
    return _views(session, [_product(session, product_id)])[0]


def get_product_by_handle(session: Session, *, handle: str) -> ProductView:
    product = session.scalar(select(Product).where(Product.handle == handle))
    if product is None:
        raise NotFound(f"no product with handle {handle!r}", field="handle")
    return _views(session, [product])[0]


_PRODUCT_FIELDS = ("handle", "title", "description", "brand", "attributes", "status", "tax_class")


def update_product(session: Session, *, product_id: str, changes: Mapping[str, Any]) -> ProductView:
    """Change the given fields; ``category_ids`` and ``channels`` replace the whole set when given."""
    product = _product(session, product_id)
    changes = dict(changes)
    if "status" in changes and changes["status"] not in PRODUCT_STATUSES:
        raise Invalid(f"status must be one of {', '.join(PRODUCT_STATUSES)}", field="status")
    handle = changes.get("handle")
    if handle is not None and handle != product.handle and \
            session.scalar(select(Product.id).where(Product.handle == handle)) is not None:
        raise Conflict(f"a product with handle {handle!r} exists already", field="handle")
    cats = _check_categories(session, changes.pop("category_ids")) if changes.get("category_ids") is not None \
        else None
    chans = _check_channels(session, changes.pop("channels")) if changes.get("channels") is not None else None
    for key, value in changes.items():
        if key not in _PRODUCT_FIELDS:
            raise Invalid(f"{key} cannot be changed", field=key)
        if value is None and key in ("handle", "title", "status", "tax_class", "attributes"):
            raise Invalid(f"{key} cannot be empty", field=key)
        setattr(product, key, value)
    product.updated_at = utcnow()
    if cats is not None:
        session.execute(delete(ProductCategory).where(ProductCategory.product_id == product.id))
        session.add_all(ProductCategory(product_id=product.id, category_code=c) for c in cats)
    if chans is not None:
        set_publications(session, product_id=product.id, channels=chans)
    _flush(session, "handle", f"a product with handle {handle!r} exists already")
    return get_product(session, product_id=product.id)


def set_publications(session: Session, *, product_id: str, channels: Sequence[str]) -> list[str]:
    """Publish the product in exactly ``channels`` (kept rows keep their publication time)."""
    _product(session, product_id)
    wanted = set(_check_channels(session, channels))
    current = set(session.scalars(select(Publication.channel_code).where(Publication.product_id == product_id)))
    if current - wanted:
        session.execute(delete(Publication).where(Publication.product_id == product_id,
                                                  Publication.channel_code.in_(current - wanted)))
    now = utcnow()
    session.add_all(Publication(product_id=product_id, channel_code=c, published_at=now)
                    for c in sorted(wanted - current))
    session.flush()
    return sorted(wanted)


def list_products(session: Session, *, category: str | None = None, channel: str | None = None,
                  search: str | None = None, status: str | None = None, limit: int = 50,
                  offset: int = 0) -> tuple[list[ProductView], int]:
    """A page of products (oldest first) and the total matching: ``category`` includes its sub-categories,
    ``channel`` keeps products published there, ``search`` matches the title (case-insensitive)."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    if offset < 0:
        raise Invalid("offset cannot be negative", field="offset")
    conds = []
    if category is not None:
        if session.get(Category, category) is None:
            raise NotFound(f"no category {category!r}", field="category")
        codes = _descendants(session, category)
        conds.append(Product.id.in_(select(ProductCategory.product_id)
                                    .where(ProductCategory.category_code.in_(codes))))
    if channel is not None:
        get_channel(session, code=channel)
        conds.append(Product.id.in_(select(Publication.product_id).where(Publication.channel_code == channel)))
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        conds.append(func.lower(Product.title).like(f"%{escaped}%", escape="\\"))
    if status is not None:
        conds.append(Product.status == status)
    where = and_(*conds) if conds else None
    count_q = select(func.count()).select_from(Product)
    page_q = select(Product).order_by(Product.id).limit(limit).offset(offset)
    if where is not None:
        count_q, page_q = count_q.where(where), page_q.where(where)
    total = session.scalar(count_q) or 0
    return _views(session, list(session.scalars(page_q))), total


def add_variant(session: Session, *, product_id: str, sku: str, title: str = "",
                attributes: Mapping[str, Any] | None = None, barcode: str | None = None,
                image_urls: Sequence[str] = ()) -> Variant:
    """Add one variant (SKU) to a product."""
    _product(session, product_id)
    _check_variant_fields(session, sku=sku, barcode=barcode)
    position = session.scalar(select(func.count()).where(Variant.product_id == product_id)) or 0
    variant = _new_variant(product_id, position, {"sku": sku, "title": title, "attributes": attributes,
                                                  "barcode": barcode, "image_urls": image_urls})
    session.add(variant)
    _flush(session, "sku", f"SKU {sku!r} or barcode {barcode} exists already")
    return variant


def get_variant(session: Session, *, sku: str) -> Variant:
    variant = session.get(Variant, sku)
    if variant is None:
        raise NotFound(f"unknown SKU {sku!r}", field="sku")
    return variant


def update_variant(session: Session, *, sku: str, changes: Mapping[str, Any]) -> Variant:
    """Change the given fields of a variant (its SKU is fixed)."""
    variant = get_variant(session, sku=sku)
    for key, value in changes.items():
        if key not in ("title", "attributes", "barcode", "image_urls", "active"):
            raise Invalid(f"{key} cannot be changed", field=key)
        if key == "barcode" and value is not None:
            _check_variant_fields(session, sku=None, barcode=value, exclude_sku=sku)
        setattr(variant, key, value if value is not None or key == "barcode" else getattr(variant, key))
    variant.updated_at = utcnow()
    _flush(session, "barcode", "this barcode belongs to another SKU already")
    return variant


# ---------------------------------------------------------------- the lookup pricing and carts use

@dataclass(frozen=True, slots=True)
class VariantInfo:
    """What pricing and carts need about one SKU in one channel.

    ``category_ids`` holds the product's categories and all their ancestors. ``sellable``: the variant is
    active, the product is active and published in the channel, and the channel is active.
    """

    sku: str
    product_id: str
    title: str
    tax_class: str
    category_ids: frozenset[str]
    sellable: bool


@cache
def _variant_statements() -> tuple[Select[Any], Select[Any]]:
    """The two statements of :func:`variants_for_skus`, built once (building them cost more than running them)."""
    pub = and_(Publication.product_id == Product.id, Publication.channel_code == bindparam("channel"))
    variants = (select(Variant.sku, Variant.title, Variant.active, Product.id, Product.title, Product.status,
                       Product.tax_class, Channel.active)
                .join(Product, Product.id == Variant.product_id)
                .outerjoin(Publication, pub)
                .outerjoin(Channel, Channel.code == Publication.channel_code)
                .where(Variant.sku.in_(bindparam("skus", expanding=True))))
    # the categories of each product and, walking up the tree, their ancestors (UNION stops on cycles)
    up = (select(ProductCategory.product_id, ProductCategory.category_code.label("code"))
          .where(ProductCategory.product_id.in_(bindparam("pids", expanding=True))).cte("up", recursive=True))
    up = up.union(select(up.c.product_id, Category.parent_code).join(Category, Category.code == up.c.code)
                  .where(Category.parent_code.is_not(None)))
    return variants, select(up.c.product_id, up.c.code)


def variants_for_skus(session: Session, skus: Iterable[str], channel_code: str) -> dict[str, VariantInfo]:
    """SKU -> ``VariantInfo`` for the known ones among ``skus`` (unknown SKUs are absent), in two queries.

    An unknown channel makes nothing sellable; callers that must reject it check it with ``get_channel``.
    """
    wanted = sorted(set(skus))
    if not wanted:
        return {}
    statements = _variant_statements()
    rows = session.execute(statements[0], {"skus": wanted, "channel": channel_code}).all()
    product_ids = sorted({r[3] for r in rows})
    cats: dict[str, set[str]] = {}
    if product_ids:
        for pid, code in session.execute(statements[1], {"pids": product_ids}):
            cats.setdefault(pid, set()).add(code)
    out: dict[str, VariantInfo] = {}
    for sku, v_title, v_active, pid, p_title, p_status, tax_class, channel_active in rows:
        title = f"{p_title} - {v_title}" if v_title else p_title
        sellable = bool(v_active and p_status == "active" and channel_active)
        out[sku] = VariantInfo(sku=sku, product_id=pid, title=title, tax_class=tax_class,
                               category_ids=frozenset(cats.get(pid, ())), sellable=sellable)
    return out


def is_sellable(session: Session, sku: str, channel_code: str) -> bool:
    """Whether ``sku`` can be sold in ``channel_code`` now (False for unknown SKUs and channels)."""
    info = variants_for_skus(session, [sku], channel_code).get(sku)
    return info is not None and info.sellable
