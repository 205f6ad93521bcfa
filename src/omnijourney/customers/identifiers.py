"""Which identifiers a message carries, normalised, with junk values blocked.

Identifier types: ``user_id``, ``anonymous_id``, ``device_id``, ``email`` (lower-cased), ``phone`` and
``whatsapp`` (E.164), ``loyalty_card``, ``social`` (``network:id``) and any custom type sent in
``context.externalIds``. ``previous_id`` (alias) is a placeholder the resolver turns into the
``user_id`` or ``anonymous_id`` it names.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import phonenumbers

from omnijourney.config import IdentitySettings

Identifier = tuple[str, str]

_SOCIAL = {"facebook", "facebook_id", "messenger", "messenger_psid", "psid", "instagram", "instagram_id",
           "twitter", "twitter_id", "x_id", "tiktok", "tiktok_id", "google_id", "apple_id", "social"}
_WHATSAPP = {"whatsapp", "whatsapp_id", "wa_id", "whatsapp_number"}
_LOYALTY = {"loyalty_card", "loyalty_card_number", "loyalty_id", "loyaltycard", "loyalty"}
_PHONE = {"phone", "phone_number", "mobile"}
_EMAIL = {"email", "email_address"}
MAX_VALUE_LEN = 320
_MEMO_SIZE = 200_000


# Characters no deliverable address holds outside a quoted local part (which nobody uses), whitespace included.
_NOT_IN_EMAIL = frozenset(' \t\r\n\x0b\x0c<>()[],;:\\"')


def normalise_email(value: str) -> str | None:
    """The address lower-cased, or None when it is not one: a single ``@`` between a local part and a domain
    of at least two non-empty labels, nothing an address cannot hold (spaces, brackets, commas...).

    Deliberately a shape check, not RFC 5322: what it refuses cannot be delivered to, and what it lets
    through is an identifier only, never mailed by this module.
    """
    v = value.strip().lower()
    local, at, domain = v.partition("@")
    if not at or not local or "@" in domain or len(local) > 64:
        return None
    labels = domain.split(".")
    if len(labels) < 2 or not all(labels) or not _NOT_IN_EMAIL.isdisjoint(v):
        return None
    return v


@lru_cache(maxsize=200_000)
def normalise_phone(value: str, region: str) -> str | None:
    """E.164, or None when the number cannot be one (phonenumbers is slow, hence the cache)."""
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise(id_type: str, raw: Any, region: str) -> Identifier | None:
    """Map a raw (type, value) onto our identifier types; None when the value is unusable."""
    if type(raw) is str:
        # a person's email, phone and card come back with every identify: remembered (tuples of strings only,
        # which the garbage collector does not track, unlike an lru_cache's entries)
        key = (id_type, raw, region)
        if key in _normalised:
            return _normalised[key]
        if len(_normalised) >= _MEMO_SIZE:
            _normalised.clear()
        found = _normalised[key] = _normalise(id_type, raw, region)
        return found
    if raw is None or isinstance(raw, (dict, list, bool)):
        return None
    return _normalise(id_type, str(raw), region)


_normalised: dict[tuple[str, str, str], Identifier | None] = {}


def _normalise(id_type: str, raw: str, region: str) -> Identifier | None:
    value = raw.strip()
    if not value or len(value) > MAX_VALUE_LEN:
        return None
    found = _normalise_value(id_type, value, region)
    # the identities column's width: lower() and upper() may lengthen a value ("ß" -> "SS"), and social ids
    # gain their network's prefix; a longer one would fail the whole batch's INSERT on PostgreSQL
    return found if found is None or len(found[1]) <= MAX_VALUE_LEN else None


def _normalise_value(id_type: str, value: str, region: str) -> Identifier | None:
    t = id_type.strip().lower().replace(" ", "_").replace("-", "_")
    if t in _EMAIL:
        v = normalise_email(value)
        return ("email", v) if v else None
    if t in _PHONE or t in _WHATSAPP:
        v = normalise_phone(value, region)
        return ("whatsapp" if t in _WHATSAPP else "phone", v) if v else None
    if t in _LOYALTY:
        return "loyalty_card", value.upper().replace(" ", "")
    if t in _SOCIAL:
        network = t.removesuffix("_id").removesuffix("_psid") if t != "social" else ""
        return ("social", f"{network}:{value}" if network and ":" not in value else value)
    if t in ("user_id", "userid"):
        return "user_id", value
    if t in ("anonymous_id", "anonymousid"):
        return "anonymous_id", value
    if t in ("device_id", "ios.id", "android.id", "ios_id", "android_id", "ios.idfv", "android.idfa"):
        return "device_id", value
    return t[:64], value


def invalid_contact_traits(traits: dict[str, Any] | None, context: dict[str, Any] | None,
                           region: str) -> list[tuple[str, str, Any]]:
    """The email and phone traits of a message that are not an email address or a phone number, as
    ``(field path, "email" or "phone", value)``: the ones :meth:`Extractor.extract` reads (an identify's
    ``traits``, ``context.traits``, and ``context.externalIds`` of those types) and skips. They stay traits;
    the tracking API shows them as warnings. Absent, null and empty values are not listed."""
    found: list[tuple[str, str, Any]] = []
    ctx = context or {}
    for path, source in (("traits", traits), ("context.traits", ctx.get("traits"))):
        if isinstance(source, dict):
            for key in ("email", "phone"):
                value = source.get(key)
                if _unusable(key, value, region):
                    found.append((f"{path}.{key}", key, value))
    external = ctx.get("externalIds") or ctx.get("externalId")
    if isinstance(external, list):
        name = "externalIds" if ctx.get("externalIds") else "externalId"
        for i, ext in enumerate(external):
            if isinstance(ext, dict) and isinstance(ext.get("type"), str):
                t = ext["type"].strip().lower().replace(" ", "_").replace("-", "_")
                what = "email" if t in _EMAIL else "phone" if t in _PHONE or t in _WHATSAPP else None
                if what and _unusable(t, ext.get("id"), region):
                    found.append((f"context.{name}[{i}].id", what, ext.get("id")))
    return found


def _unusable(id_type: str, value: Any, region: str) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return False  # absent: nothing to warn about
    return normalise(id_type, value, region) is None


def is_blocked(value: str, blocked: frozenset[str]) -> bool:
    """Junk values (``null``, ``anonymous``, ``-1``, all-zero ids, ...) never identify anybody."""
    low = value.lower()
    if low in blocked:
        return True
    return not low.strip("0-:.")  # all-zero uuids, "0000", "00:00:00:00:00:00"


class Extractor:
    """Pulls identifiers out of a tracked message, following the settings' rules and priorities."""

    def __init__(self, settings: IdentitySettings, region: str) -> None:
        self.settings = settings
        self.region = region
        self.blocked = frozenset(v.lower() for v in settings.blocked_values)
        self._priority = _Priorities(settings)
        # tuples of strings only: the garbage collector stops tracking them
        self._memo: dict[tuple[str | None, str | None, str | None], tuple[Identifier, ...]] = {}

    def priority(self, id_type: str) -> int:
        return self._priority[id_type]

    def extract(self, user_id: str | None, anonymous_id: str | None, previous_id: str | None,
                traits: dict[str, Any] | None, context: dict[str, Any] | None) -> list[Identifier]:
        """Identifiers of one message, best priority first, without duplicates or blocked values."""
        # Most messages are a known visitor's next page or click: the same user id, anonymous id and device,
        # nothing else. Those answers are remembered (bounded), which saves most of the work.
        if previous_id is None and not traits and (
                context is None or ("traits" not in context and "externalIds" not in context
                                    and "externalId" not in context)):
            device = context.get("device") if context else None
            device_id = device.get("id") if isinstance(device, dict) else None
            if device_id is None or isinstance(device_id, str):
                key = (user_id, anonymous_id, device_id)
                known = self._memo.get(key)
                if known is None:
                    known = tuple(self._extract(user_id, anonymous_id, None, None, context))
                    if len(self._memo) >= _MEMO_SIZE:
                        self._memo.clear()
                    self._memo[key] = known
                return list(known)
        return self._extract(user_id, anonymous_id, previous_id, traits, context)

    def _extract(self, user_id: str | None, anonymous_id: str | None, previous_id: str | None,
                 traits: dict[str, Any] | None, context: dict[str, Any] | None) -> list[Identifier]:
        found: list[Identifier] = []
        add = found.append
        if user_id:
            add(("user_id", user_id))
        if anonymous_id:
            add(("anonymous_id", anonymous_id))
        if previous_id:
            add(("previous_id", previous_id))
        ctx = context or {}
        for source in (traits, ctx.get("traits")):
            if isinstance(source, dict):
                for key in ("email", "phone", "loyalty_card", "loyaltyCard"):
                    if source.get(key) is not None:
                        ident = normalise("loyalty_card" if key == "loyaltyCard" else key, source[key], self.region)
                        if ident:
                            add(ident)
        device = ctx.get("device")
        if isinstance(device, dict) and device.get("id"):
            ident = normalise("device_id", device["id"], self.region)
            if ident:
                add(ident)
        external = ctx.get("externalIds") or ctx.get("externalId")  # RudderStack names it in the singular
        if isinstance(external, list):
            for ext in external:
                if isinstance(ext, dict) and ext.get("type") and ext.get("id") is not None:
                    ident = normalise(str(ext["type"]), ext["id"], self.region)
                    if ident:
                        add(ident)
                        if ident[0] == "whatsapp":
                            add(("phone", ident[1]))  # a WhatsApp number is the person's phone number
        blocked = self.blocked
        if len(found) == 1:
            return [] if is_blocked(found[0][1], blocked) else found
        seen: set[Identifier] = set()
        result = []
        for ident in found:
            if ident in seen or is_blocked(ident[1], blocked):
                continue
            seen.add(ident)
            result.append(ident)
        priority = self._priority.__getitem__
        result.sort(key=lambda i: priority(i[0]))
        return result


class _Priorities(dict[str, int]):
    """Identifier type -> priority, read from the settings once per type (pydantic access is slow)."""

    def __init__(self, settings: IdentitySettings) -> None:
        super().__init__()
        self.settings = settings

    def __missing__(self, id_type: str) -> int:
        # an alias's previousId stands for a user id
        p = self[id_type] = self.settings.rule("user_id" if id_type == "previous_id" else id_type).priority
        return p
