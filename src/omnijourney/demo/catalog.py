"""The demo retailer's catalog, channels, price lists, taxes and running promotions (a German fashion retailer).

Everything goes through the catalog and pricing services, so the demo data obeys the same rules as data
entered over the API. Deterministic for a seed: products, SKUs, EANs and prices come from
``random.Random(ctx.seed + 1)``, service timestamps read :func:`demo_clock` instead of the wall clock, and
product ids come from the step's seeded ids (``build.reproducible``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any

from omnijourney.catalog import service as catalog
from omnijourney.catalog.barcodes import check_digit
from omnijourney.core.time import clock
from omnijourney.pricing import service as pricing

if TYPE_CHECKING:
    from omnijourney.demo.build import Advance, DemoContext

BASE_LIST, MARKETPLACE_LIST, VIP_LIST, MARKDOWN_LIST = "EUR-BASE", "EUR-MARKETPLACE", "EUR-VIP", "EUR-MARKDOWN"
MARKETPLACE = "marketplace"
ONLINE = ("web", "app", "call-center")
# store code -> address and coordinates (the codes and names are build.STORES, which the POS sources use)
STORE_SITES = {
    "S01": ("Rosenthaler Straße 40, 10178 Berlin", 52.52621, 13.40214),
    "S02": ("Jungfernstieg 16, 20354 Hamburg", 53.55295, 9.99304),
    "S03": ("Kaufingerstraße 9, 80331 München", 48.13742, 11.57359),
    "S04": ("Schildergasse 65, 50667 Köln", 50.93634, 6.95377),
    "S05": ("Zeil 90, 60313 Frankfurt am Main", 50.11456, 8.68318),
}
CATEGORIES = [
    ("women", "Women", None), ("women-shirts", "Shirts & blouses", "women"), ("women-dresses", "Dresses", "women"),
    ("women-jeans", "Jeans", "women"), ("women-jackets", "Jackets & coats", "women"),
    ("women-sneakers", "Sneakers", "women"),
    ("men", "Men", None), ("men-shirts", "Shirts & T-shirts", "men"), ("men-jeans", "Jeans", "men"),
    ("men-jackets", "Jackets & coats", "men"), ("men-sneakers", "Sneakers", "men"),
    ("accessories", "Accessories", None), ("socks", "Socks", "accessories"), ("belts", "Belts", "accessories"),
    ("scarves", "Scarves", "accessories"), ("bags", "Bags", "accessories"), ("caps", "Caps & hats", "accessories"),
    ("lifestyle", "Lifestyle", None), ("books", "Books & magazines", "lifestyle"),
]
LETTERS = ("XS", "S", "M", "L", "XL")
MEN_LETTERS = ("S", "M", "L", "XL", "XXL")


@dataclass(frozen=True, slots=True)
class Family:
    """A kind of product: its category, SKU prefix, how many, the words of its titles, sizes, colours and prices."""

    category: str
    prefix: str
    count: int
    nouns: tuple[str, ...]
    styles: tuple[str, ...]
    sizes: tuple[str, ...]
    colours: tuple[str, ...]
    price: tuple[int, int]  # whole euros; prices end in .95
    material: str
    tax_class: str = "standard"


WARDROBE = ("black", "white", "navy", "grey melange", "beige", "olive", "burgundy", "sky blue", "camel", "rose")
DENIM = ("indigo", "light blue wash", "black denim", "stone wash")
FAMILIES = (
    Family("women-shirts", "WSH", 35, ("blouse", "shirt", "tunic", "button-down shirt"),
           ("Linen", "Cotton poplin", "Oversized", "Silk-touch", "Striped", "Oxford", "Ruffled"), LETTERS, WARDROBE,
           (25, 69), "100% cotton"),
    Family("women-dresses", "WDR", 40, ("midi dress", "maxi dress", "wrap dress", "shirt dress", "slip dress",
                                        "knit dress"),
           ("Floral", "Satin", "Jersey", "Linen", "Pleated", "Polka-dot", "Ribbed"), LETTERS, WARDROBE, (45, 129),
           "viscose blend"),
    Family("women-jeans", "WJN", 25, ("skinny jeans", "mom jeans", "wide-leg jeans", "straight jeans", "flared jeans"),
           ("High-rise", "Stretch", "Organic cotton", "Vintage wash", "Cropped"), ("W26", "W27", "W28", "W29", "W30",
                                                                                  "W31", "W32"),
           DENIM, (59, 109), "98% cotton, 2% elastane"),
    Family("women-jackets", "WJK", 25, ("trench coat", "puffer jacket", "denim jacket", "blazer", "wool coat",
                                        "rain jacket"),
           ("Classic", "Cropped", "Double-breasted", "Recycled", "Quilted", "Belted"), LETTERS, WARDROBE, (79, 249),
           "recycled polyester"),
    Family("women-sneakers", "WSN", 20, ("low-top sneakers", "platform sneakers", "running sneakers",
                                         "canvas sneakers"),
           ("Leather", "Suede", "Knit", "Retro", "Minimal"), ("36", "37", "38", "39", "40", "41"), WARDROBE[:6],
           (59, 139), "leather upper, rubber sole"),
    Family("men-shirts", "MSH", 35, ("Oxford shirt", "flannel shirt", "polo shirt", "linen shirt", "T-shirt",
                                     "henley"),
           ("Slim-fit", "Regular-fit", "Organic", "Heavyweight", "Washed", "Striped", "Pique"), MEN_LETTERS, WARDROBE,
           (19, 69), "100% cotton"),
    Family("men-jeans", "MJN", 25, ("slim jeans", "straight jeans", "tapered jeans", "relaxed jeans"),
           ("Selvedge", "Stretch", "Organic cotton", "Rinsed", "Distressed"),
           ("W30", "W31", "W32", "W33", "W34", "W36", "W38"), DENIM, (59, 119), "99% cotton, 1% elastane"),
    Family("men-jackets", "MJK", 25, ("bomber jacket", "parka", "field jacket", "puffer jacket", "overcoat",
                                      "rain jacket", "denim jacket"),
           ("Classic", "Padded", "Recycled", "Waxed", "Wool-blend", "Technical"), MEN_LETTERS, WARDROBE, (89, 279),
           "recycled polyester"),
    Family("men-sneakers", "MSN", 20, ("low-top sneakers", "high-top sneakers", "running sneakers", "court sneakers"),
           ("Leather", "Suede", "Knit", "Retro", "Trail"), ("40", "41", "42", "43", "44", "45", "46"), WARDROBE[:6],
           (59, 149), "leather upper, rubber sole"),
    Family("socks", "SOC", 20, ("ankle socks", "crew socks", "sneaker socks", "wool socks", "sports socks"),
           ("Organic", "Striped", "Cushioned", "Merino", "Rib-knit"), ("35-38", "39-42", "43-46"), WARDROBE,
           (4, 12), "organic cotton"),
    Family("belts", "BLT", 12, ("leather belt", "braided belt", "canvas belt", "reversible belt"),
           ("Classic", "Slim", "Vintage", "Western"), ("85", "90", "95", "100", "105"), ("black", "cognac", "brown"),
           (24, 59), "full-grain leather"),
    Family("scarves", "SCF", 12, ("scarf", "shawl", "bandana"), ("Wool", "Cashmere-blend", "Silk", "Checked"),
           ("one size",), WARDROBE, (19, 69), "wool blend"),
    Family("bags", "BAG", 15, ("tote bag", "crossbody bag", "backpack", "weekender", "belt bag"),
           ("Leather", "Canvas", "Recycled nylon", "Mini"), ("one size",), ("black", "cognac", "navy", "olive"),
           (39, 179), "leather"),
    Family("caps", "CAP", 10, ("baseball cap", "beanie", "bucket hat"), ("Washed", "Rib-knit", "Corduroy"),
           ("one size",), WARDROBE, (14, 34), "cotton twill"),
    # printed matter is taxed at the reduced 7 % in Germany
    Family("books", "BOK", 6, ("lookbook", "style guide", "magazine"), ("Street Style", "Capsule Wardrobe",
                                                                      "Sustainable Fashion"),
           ("one size",), ("print",), (9, 39), "paper", tax_class="reduced"),
)
BRANDS = ("Omni Basics", "Nordlicht", "Urban Fjord", "Lumen & Co", "Kieler Denim", "Isar Studio")
IMAGE_CDN = "https://cdn.omnijourney-demo.example/products"


@dataclass(slots=True)
class ProductSpec:
    """One product as ``catalog.service.create_product`` takes it, plus its base price and where it is sold."""

    family: Family
    handle: str
    title: str
    brand: str
    reach: str  # everywhere | online | stores
    price: Decimal
    variants: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class CatalogFacts:
    """What later steps (journeys, carts) and tests need to know about the catalog that was built."""

    channels: list[str]
    stores: list[str]
    skus_by_reach: dict[str, list[str]]
    skus_by_category: dict[str, list[str]]
    bundle: list[str]
    prices: dict[str, Decimal]


# ---------------------------------------------------------------- a clock for the services


@dataclass(slots=True)
class DemoClock:
    """The moment the services think it is; the steps move it forward as their story goes."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def demo_clock(start: datetime) -> Iterator[DemoClock]:
    """Make the services stamp rows and events (and quote) at ``clock.now`` instead of the wall clock.

    Without this the same seed would give different data each day, and the carts would happen at build
    time rather than before ``ctx.now``.
    """
    demo = DemoClock(start)
    with clock(demo):
        yield demo


# ---------------------------------------------------------------- the catalog, generated


def ean13(n: int) -> str:
    """The n-th EAN-13 of the demo brand: German GS1 prefix 40, company 61234, item reference, check digit."""
    body = f"4061234{n:05d}"
    return body + str(check_digit(body))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("ß", "ss")).strip("-")


COLOUR_CODES = {"black": "BLK", "white": "WHT", "navy": "NVY", "grey melange": "GRM", "beige": "BGE", "olive": "OLV",
                "burgundy": "BRG", "sky blue": "SKY", "camel": "CML", "rose": "RSE", "indigo": "IND",
                "light blue wash": "LBW", "black denim": "BKD", "stone wash": "STW", "cognac": "CGN", "brown": "BRN",
                "print": "PRT"}


def products(seed: int) -> list[ProductSpec]:
    """The whole assortment, deterministic for ``seed`` (no database)."""
    rng = random.Random(seed + 1)
    out: list[ProductSpec] = []
    barcode = 0
    for fam in FAMILIES:
        titles = [f"{s} {n}" for s in fam.styles for n in fam.nouns]
        rng.shuffle(titles)
        for i in range(fam.count):
            title = titles[i % len(titles)]
            style = f"{fam.prefix}{i + 1:03d}"
            handle = f"{_slug(title)}-{style.lower()}"
            colours = rng.sample(fam.colours, min(len(fam.colours), rng.choice((1, 2, 2, 3))))
            roll = rng.random()
            reach = "online" if roll < 0.05 and fam.category != "books" else \
                "stores" if roll < 0.09 and fam.category != "books" else "everywhere"
            price = Decimal(rng.randrange(fam.price[0], fam.price[1] + 1, 5 if fam.price[1] > 40 else 1)) \
                + Decimal("0.95")
            spec = ProductSpec(fam, handle, title[0].upper() + title[1:], rng.choice(BRANDS), reach, price)
            for colour in colours:
                images = [f"{IMAGE_CDN}/{handle}/{_slug(colour)}-{k}.jpg" for k in (1, 2, 3)]
                for size in fam.sizes:
                    barcode += 1
                    code = f"{style}-{COLOUR_CODES[colour]}" + ("" if size == "one size" else f"-{size}")
                    attrs = {"colour": colour} if size == "one size" else {"size": size, "colour": colour}
                    spec.variants.append({"sku": code, "title": " / ".join(attrs.values()), "attributes": attrs,
                                          "barcode": ean13(barcode), "image_urls": images})
            out.append(spec)
    return out


def _publish(spec: ProductSpec, rng: random.Random, stores: list[str]) -> list[str]:
    if spec.reach == "online":
        return [*ONLINE, MARKETPLACE]
    if spec.reach == "stores":
        return list(stores)
    # most of the range is on the marketplace too; new and premium lines stay in our own channels
    return [*ONLINE, *stores, *([MARKETPLACE] if rng.random() < 0.85 else [])]


def _round95(amount: Decimal, rounding: str) -> Decimal:
    """To the nearest price ending in .95 above (ceiling) or below (floor)."""
    return (amount + Decimal("0.05")).quantize(Decimal(1), rounding=rounding) - Decimal("0.05")


def catalog_size(ctx: DemoContext) -> int:
    return sum(f.count for f in FAMILIES) + 2  # products, then channels, then prices and promotions


def build_catalog(ctx: DemoContext, advance: Advance) -> None:
    """Channels, the category tree, products with variants, taxes, price lists and promotions."""
    from omnijourney.demo.build import STORES

    stores = [code for code, _ in STORES]
    specs = products(ctx.seed)
    rng = random.Random(ctx.seed + 2)
    stamp = ctx.now - timedelta(days=120)  # the catalog was set up well before the journeys begin
    with demo_clock(stamp), ctx.db.transaction() as s:
        _channels(s, STORES)
        for code, name, parent in CATEGORIES:
            catalog.create_category(s, code=code, name=name, parent=parent)
        advance(1)
    reach: dict[str, list[str]] = {"everywhere": [], "online": [], "stores": [], MARKETPLACE: []}
    by_category: dict[str, list[str]] = {}
    chunk = 60
    for i in range(0, len(specs), chunk):
        with demo_clock(stamp), ctx.db.transaction() as s:
            for spec in specs[i:i + chunk]:
                fam = spec.family
                published = _publish(spec, rng, stores)
                catalog.create_product(
                    s, handle=spec.handle, title=spec.title, brand=spec.brand, tax_class=fam.tax_class,
                    description=f"{spec.title} by {spec.brand}, in {fam.material}.",
                    attributes={"material": fam.material, "line": fam.category.split("-")[0]},
                    category_ids=[fam.category], channels=published, variants=spec.variants)
                skus = [v["sku"] for v in spec.variants]
                reach[spec.reach] += skus
                if MARKETPLACE in published:
                    reach[MARKETPLACE] += skus
                by_category.setdefault(fam.category, []).extend(skus)
        advance(min(chunk, len(specs) - i))
    prices = {v["sku"]: spec.price for spec in specs for v in spec.variants}
    bundle = _bundle(specs)
    with demo_clock(ctx.now - timedelta(days=30)), ctx.db.transaction() as s:
        _prices(s, ctx, specs, prices, set(reach[MARKETPLACE]))
        _promotions(s, ctx, bundle, prices)
    advance(1)
    # the journeys browse and buy what the web shop, the app and the stores all sell
    ctx.skus = list(reach["everywhere"])
    ctx.extra["catalog"] = CatalogFacts([*ONLINE, MARKETPLACE, *stores], stores, reach, by_category, bundle, prices)


def _bundle(specs: list[ProductSpec]) -> list[str]:
    """A pair for the bundle price: the first jeans in W32 and the first leather belt in 95 sold everywhere."""
    def first(category: str, word: str, size: str) -> str:
        spec = next(p for p in specs if p.family.category == category and p.reach == "everywhere"
                    and word in p.title.lower())
        return next(v["sku"] for v in spec.variants if v["attributes"].get("size") == size)

    return [first("men-jeans", "jeans", "W32"), first("belts", "leather", "95")]


def _channels(s: Any, stores: list[tuple[str, str]]) -> None:
    common = {"currency": "EUR", "market": "DE", "default_price_list": BASE_LIST}
    catalog.create_channel(s, code="web", name="Web shop", type="web", **common)
    catalog.create_channel(s, code="app", name="Mobile app", type="app", **common)
    catalog.create_channel(s, code="call-center", name="Call center", type="call_center", **common)
    catalog.create_channel(s, code=MARKETPLACE, name="Modemarkt marketplace", type="marketplace", **common)
    for code, name in stores:
        address, lat, lon = STORE_SITES[code]
        catalog.create_channel(s, code=code, name=name, type="store", address=address, latitude=lat, longitude=lon,
                               **common)


def _prices(s: Any, ctx: DemoContext, specs: list[ProductSpec], prices: dict[str, Decimal],
            on_marketplace: set[str]) -> None:
    # German prices include VAT: 19 % standard, 7 % reduced (books); shipping 4.95 EUR
    pricing.set_market(s, market="DE", taxes_included=True, tax_rates={"standard": "0.19", "reduced": "0.07"},
                       shipping_fees={"EUR": "4.95"})
    pricing.create_price_list(s, code=BASE_LIST, name="Germany, EUR", currency="EUR")
    pricing.create_price_list(s, code=MARKETPLACE_LIST, name="Marketplace (covers its commission)", currency="EUR",
                              kind="channel", channel_codes=[MARKETPLACE], priority=10)
    pricing.create_price_list(s, code=VIP_LIST, name="VIP customers", currency="EUR", kind="segment",
                              segments=["vip"], priority=5)
    # end-of-season markdowns in our own channels, for a limited time
    pricing.create_price_list(s, code=MARKDOWN_LIST, name="End-of-season markdowns", currency="EUR", kind="channel",
                              channel_types=["web", "app", "store", "call_center"], priority=20,
                              valid_from=ctx.now - timedelta(days=10), valid_to=ctx.now + timedelta(days=61))
    pricing.set_prices(s, price_list=BASE_LIST, prices=prices)
    pricing.set_prices(s, price_list=MARKETPLACE_LIST, prices={
        sku: _round95(p * Decimal("1.12"), ROUND_CEILING) for sku, p in prices.items() if sku in on_marketplace})
    # books have fixed prices by law (Buchpreisbindung): no VIP price, no markdown
    pricing.set_prices(s, price_list=VIP_LIST, prices={
        sku: max(Decimal("0.95"), _round95(p * Decimal("0.9"), ROUND_FLOOR)) for sku, p in prices.items()
        if not sku.startswith("BOK")})
    rng = random.Random(ctx.seed + 3)
    summer = [p for p in specs if p.family.category in ("women-dresses", "women-shirts", "men-shirts")
              and p.title.split()[0] in ("Linen", "Floral", "Striped", "Jersey")]
    marked = rng.sample(summer, min(len(summer), 25))
    pricing.set_prices(s, price_list=MARKDOWN_LIST, prices={
        v["sku"]: _round95(p.price * Decimal("0.7"), ROUND_FLOOR) for p in marked for v in p.variants})


def _promotions(s: Any, ctx: DemoContext, bundle: list[str], prices: dict[str, Decimal]) -> None:
    # running before the carts' fortnight and for two months after ctx.now, so they show when the demo is browsed
    start = ctx.now - timedelta(days=21)
    pricing.create_promotion(s, code="JACKETS-20", name="Mid-season sale: 20% off jackets and coats",
                             rule={"type": "percent_off", "percent": "20"},
                             target={"category_ids": ["women-jackets", "men-jackets"]}, priority=10,
                             valid_from=start, valid_to=ctx.now + timedelta(days=61))
    pricing.create_promotion(s, code="SOCKS-3-GET-1", name="Socks: buy 3, get 1 free",
                             rule={"type": "buy_x_get_y", "buy": 3, "get": 1}, target={"category_ids": ["socks"]},
                             priority=20, valid_from=start)
    bundle_price = (sum(prices[sku] for sku in bundle) * Decimal("0.8")).quantize(Decimal(1), ROUND_FLOOR)
    bundle_price = bundle_price.quantize(Decimal("0.01"))
    pricing.create_promotion(s, code="JEANS-BELT", name=f"Jeans and leather belt together for {bundle_price} EUR",
                             rule={"type": "bundle", "items": [{"sku": sku, "quantity": 1} for sku in bundle],
                                   "price": str(bundle_price)}, currency="EUR", priority=30, valid_from=start)
    pricing.create_promotion(s, code="FREE-SHIPPING-50", name="Free shipping from 50 EUR",
                             rule={"type": "free_shipping"}, currency="EUR", min_basket=Decimal(50),
                             valid_from=ctx.now - timedelta(days=90))
    pricing.create_promotion(s, code="WELCOME10", name="Welcome: 10% off your first order",
                             rule={"type": "percent_off", "percent": "10"}, priority=5, needs_voucher=True,
                             valid_from=ctx.now - timedelta(days=90))
    # single use per customer, any number of customers
    pricing.create_voucher(s, code="WELCOME10", promotion="WELCOME10", per_customer_limit=1)
    pricing.create_promotion(s, code="STORE-ACCESSORIES-15", name="In store only: 15% off accessories",
                             rule={"type": "percent_off", "percent": "15"}, target={"category_ids": ["accessories"]},
                             channel_types=["store"], priority=10,
                             valid_from=ctx.now - timedelta(days=21), valid_to=ctx.now + timedelta(days=61))
