"""Promotions and vouchers: create, change, list, and redeem a voucher without ever overspending it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from omnijourney.core.errors import Conflict, Invalid, NotFound
from omnijourney.core.time import utcnow
from omnijourney.pricing import validate as v
from omnijourney.pricing.models import Promotion, Voucher, VoucherRedemption
from omnijourney.pricing.money import check_currency, from_minor
from omnijourney.pricing.rejections import window_problem
from omnijourney.pricing.rules import NEEDS_CURRENCY, RULE, TargetSpec, amounts

_PROMOTION_FIELDS = ("name", "rule", "target", "priority", "exclusive", "stacking_group", "valid_from", "valid_to",
                     "channel_codes", "channel_types", "segments", "currency", "min_basket", "needs_voucher", "active")


def _apply_promotion(row: Promotion, spec: Mapping[str, Any]) -> None:
    """Validate ``spec`` (every promotion field) as a whole and write it into ``row``."""
    try:
        rule = RULE.validate_python(spec["rule"])
    except ValidationError as exc:
        raise v.pydantic_error(exc, prefix="rule") from None
    try:
        target = TargetSpec.model_validate(spec.get("target") or {})
    except ValidationError as exc:
        raise v.pydantic_error(exc, prefix="target") from None
    currency = spec.get("currency")
    if currency is not None:
        check_currency(currency)
    elif rule.type in NEEDS_CURRENCY or spec.get("min_basket") is not None:
        raise Invalid(f"a {rule.type} promotion with amounts needs a currency", field="currency")
    for field, amount in amounts(rule):
        v.money_minor(amount, currency, field=field)  # type: ignore[arg-type]  # checked just above
    if rule.type == "bundle" and (len(rule.items) < 2 and rule.items[0].quantity < 2):  # type: ignore[union-attr]
        raise Invalid("a bundle needs at least two items", field="rule.items")
    min_basket = spec.get("min_basket")
    name = (spec.get("name") or "").strip()
    if not name or len(name) > 200:
        raise Invalid("a promotion needs a name of 1-200 characters", field="name")
    group = spec.get("stacking_group")
    row.name = name
    row.rule = rule.model_dump(mode="json")
    row.target = target.model_dump(mode="json")
    row.priority = int(spec.get("priority") or 0)
    row.exclusive = bool(spec.get("exclusive", False))
    row.stacking_group = v.code(group, field="stacking_group") if group else None
    row.valid_from, row.valid_to = v.window(spec.get("valid_from"), spec.get("valid_to"))
    row.channel_codes = v.names(spec.get("channel_codes") or (), field="channel_codes")
    row.channel_types = v.channel_types(spec.get("channel_types") or ())
    row.segments = v.names(spec.get("segments") or (), field="segments")
    row.currency = currency
    row.min_basket_minor = None if min_basket is None else v.money_minor(min_basket, currency, field="min_basket")
    row.needs_voucher = bool(spec.get("needs_voucher", False))
    row.active = bool(spec.get("active", True))
    row.updated_at = utcnow()


def create_promotion(session: Session, *, code: str, name: str, rule: Mapping[str, Any],
                     target: Mapping[str, Any] | None = None, priority: int = 0, exclusive: bool = False,
                     stacking_group: str | None = None, valid_from: datetime | None = None,
                     valid_to: datetime | None = None, channel_codes: Sequence[str] = (),
                     channel_types: Sequence[str] = (), segments: Sequence[str] = (), currency: str | None = None,
                     min_basket: Decimal | None = None, needs_voucher: bool = False) -> Promotion:
    """Create a promotion; ``rule`` is one of the shapes in ``pricing.rules``."""
    v.code(code)
    if session.get(Promotion, code) is not None:
        raise Conflict(f"a promotion with code {code!r} exists already", field="code")
    row = Promotion(code=code, created_at=utcnow())
    _apply_promotion(row, dict(name=name, rule=rule, target=target, priority=priority, exclusive=exclusive,
                               stacking_group=stacking_group, valid_from=valid_from, valid_to=valid_to,
                               channel_codes=channel_codes, channel_types=channel_types, segments=segments,
                               currency=currency, min_basket=min_basket, needs_voucher=needs_voucher))
    session.add(row)
    session.flush()
    return row


def get_promotion(session: Session, *, code: str, field: str = "code") -> Promotion:
    row = session.get(Promotion, code)
    if row is None:
        raise NotFound(f"no promotion {code!r}", field=field)
    return row


def promotion_spec(row: Promotion) -> dict[str, Any]:
    """Every field of a promotion, in the shape ``create_promotion`` takes."""
    spec = {f: getattr(row, f) for f in _PROMOTION_FIELDS if f != "min_basket"}
    spec["min_basket"] = None if row.min_basket_minor is None else from_minor(row.min_basket_minor, row.currency)
    return spec


def update_promotion(session: Session, *, code: str, changes: Mapping[str, Any]) -> Promotion:
    """Change some fields (``active=False`` retires it); the whole promotion is validated again."""
    row = get_promotion(session, code=code)
    unknown = sorted(set(changes) - set(_PROMOTION_FIELDS))
    if unknown:
        raise Invalid(f"unknown promotion field {unknown[0]!r}", field=unknown[0])
    _apply_promotion(row, {**promotion_spec(row), **changes})
    session.flush()
    return row


def list_promotions(session: Session, *, active: bool | None = None) -> list[Promotion]:
    stmt = select(Promotion).order_by(Promotion.priority.desc(), Promotion.code)
    if active is not None:
        stmt = stmt.where(Promotion.active.is_(active))
    return list(session.scalars(stmt))


def normalise_voucher(code: str) -> str:
    """Voucher codes are case-insensitive: stored and looked up upper-case, without surrounding blanks."""
    return code.strip().upper()


def create_voucher(session: Session, *, code: str, promotion: str, max_uses: int | None = None,
                   per_customer_limit: int | None = None, valid_from: datetime | None = None,
                   valid_to: datetime | None = None) -> Voucher:
    """A code for ``promotion``: ``max_uses=1`` single use, ``None`` unlimited; an optional per-customer limit."""
    voucher_code = v.code(normalise_voucher(code))
    promo = get_promotion(session, code=promotion, field="promotion")
    if not promo.needs_voucher:
        raise Invalid(f"promotion {promotion!r} does not need a voucher (set needs_voucher first)", field="promotion")
    for name, value in (("max_uses", max_uses), ("per_customer_limit", per_customer_limit)):
        if value is not None and value < 1:
            raise Invalid(f"{name} must be at least 1 (or absent for no limit)", field=name)
    if session.get(Voucher, voucher_code) is not None:
        raise Conflict(f"a voucher with code {voucher_code!r} exists already", field="code")
    start, end = v.window(valid_from, valid_to)
    row = Voucher(code=voucher_code, promotion_code=promotion, max_uses=max_uses, per_customer_limit=per_customer_limit,
                  used=0, valid_from=start, valid_to=end, active=True, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def get_voucher(session: Session, *, code: str, field: str = "code") -> Voucher:
    row = session.get(Voucher, normalise_voucher(code))
    if row is None:
        raise NotFound(f"no voucher {normalise_voucher(code)!r}", field=field, code="unknown_voucher")
    return row


def update_voucher(session: Session, *, code: str, changes: Mapping[str, Any]) -> Voucher:
    """Change ``active``, ``max_uses`` (never below what was used), ``per_customer_limit`` or the window."""
    row = get_voucher(session, code=code)
    allowed = ("active", "max_uses", "per_customer_limit", "valid_from", "valid_to")
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise Invalid(f"voucher field {unknown[0]!r} cannot be changed", field=unknown[0])
    merged = {f: getattr(row, f) for f in allowed} | dict(changes)
    for name in ("max_uses", "per_customer_limit"):
        if merged[name] is not None and merged[name] < 1:
            raise Invalid(f"{name} must be at least 1 (or absent for no limit)", field=name)
    if merged["max_uses"] is not None and merged["max_uses"] < row.used:
        raise Conflict(f"voucher {row.code} was used {row.used} times already", field="max_uses")
    row.valid_from, row.valid_to = v.window(merged["valid_from"], merged["valid_to"])
    row.active, row.max_uses, row.per_customer_limit = bool(merged["active"]), merged["max_uses"], \
        merged["per_customer_limit"]
    session.flush()
    return row


def list_vouchers(session: Session, *, promotion: str | None = None) -> list[Voucher]:
    stmt = select(Voucher).order_by(Voucher.code)
    if promotion is not None:
        stmt = stmt.where(Voucher.promotion_code == promotion)
    return list(session.scalars(stmt))


def redeem_voucher(session: Session, *, code: str, order_ref: str, customer_id: str | None = None,
                   at: datetime | None = None) -> VoucherRedemption:
    """Use the voucher once for ``order_ref`` (idempotent per order); ``Conflict`` when exhausted or over the limit.

    The count only moves by ``UPDATE ... SET used = used + 1 WHERE used < max_uses``, so concurrent orders
    can never overspend it. That UPDATE also locks the voucher row until the transaction ends, so the
    per-customer count read after it cannot race another redemption by the same customer (SQLite: one
    writer at a time). An anonymous redemption (no ``customer_id``) counts against ``max_uses`` only.
    """
    voucher = get_voucher(session, code=code)
    at = at or utcnow()
    done = session.scalar(select(VoucherRedemption).where(VoucherRedemption.voucher_code == voucher.code,
                                                          VoucherRedemption.order_ref == order_ref))
    if done is not None:
        return done
    if not voucher.active:
        raise Invalid(f"voucher {voucher.code} is disabled", field="code", code="voucher_inactive")
    problem = window_problem(voucher.valid_from, voucher.valid_to, at)
    if problem:
        raise Invalid(f"voucher {voucher.code} {problem}", field="code", code="voucher_expired")
    # a savepoint, so a refusal leaves the caller's transaction as it was even if the caller carries on
    with session.begin_nested():
        bumped = session.execute(
            update(Voucher).where(Voucher.code == voucher.code,
                                  or_(Voucher.max_uses.is_(None), Voucher.used < Voucher.max_uses))
            .values(used=Voucher.used + 1).execution_options(synchronize_session=False)
        ).rowcount
        if bumped != 1:
            raise Conflict(f"voucher {voucher.code} exhausted ({voucher.max_uses} uses)", field="code",
                           code="voucher_exhausted")
        if voucher.per_customer_limit is not None and customer_id is not None:
            mine = session.scalar(select(func.count()).select_from(VoucherRedemption).where(
                VoucherRedemption.voucher_code == voucher.code, VoucherRedemption.customer_id == customer_id))
            if mine >= voucher.per_customer_limit:
                raise Conflict(f"per-customer limit reached for voucher {voucher.code} "
                               f"({voucher.per_customer_limit})", field="code", code="voucher_customer_limit")
        row = VoucherRedemption(voucher_code=voucher.code, customer_id=customer_id, order_ref=order_ref, at=at)
        session.add(row)
        try:
            session.flush()
        except IntegrityError:
            raise Conflict(f"voucher {voucher.code} was redeemed for order {order_ref} concurrently",
                           field="order_ref") from None
    session.refresh(voucher)
    return row
