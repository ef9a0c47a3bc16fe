"""Discount codes (Keysat's shapes: `max_uses`, `description`, `referrer_label`, `policy_slugs`,
a percent `amount` in basis points) and their redemption: a free-license code at POST
/v1/redeem, any code at purchase (`purchase.py`).

0009 forbids altering discount_codes, so Keysat's terms live beside it in discount_code_terms
(0016): the exact basis points, the label and a scope of several policies. The whole-percent
column keeps a value within its CHECK for an older version (`_stored_amount`).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from aiosqlite import Connection

from daemon.licensing import answers, models, rows, store, store_sales
from daemon.licensing.answers import PreviewRefusal
from daemon.licensing.core import Audit, now
from daemon.licensing.errors import BadRequest, Conflict, NotFound
from daemon.licensing.state import iso_time
from daemon.licensing.store import Row

if TYPE_CHECKING:  # purchase reads codes with this module's functions
    from daemon.licensing.purchase import Purchases

DISCOUNT_KINDS = ("percent", "fixed_sats", "free_license", "set_price")
FULL_PERCENT_BPS = 10_000
# The console's and the actions' forms ask for a whole percent; a code's amount is basis points.
BASIS_POINTS_PER_PERCENT = 100


# A generated code: 12 characters from 30 that cannot be mistaken for one another (no 0/O,
# 1/I/L, U), in groups of 4: 30^12 = 5.3 x 10^17 possibilities, centuries at any rate.
STRONG_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
STRONG_GROUPS = 3
# A percent code taking at least this much off is "high value", like a free license.
HIGH_VALUE_BPS = 5_000
MINUTES_PER_DAY = 1_440


def strong_code() -> str:
    """A code no guesser finds: what the console and the action offer the seller."""
    group = range(4)
    return "-".join(
        "".join(secrets.choice(STRONG_ALPHABET) for _ in group) for _ in range(STRONG_GROUPS)
    )


def guess_space(text: str) -> int:
    """How many codes of this shape exist (a guesser who knows which places hold digits and
    which letters; codes match any case). Assumes random characters: a word is weaker."""
    space = 1
    for char in text:
        space *= 10 if char.isdigit() else 26 if char.isalpha() else 2
    return space


def valuable(code: Row, product_price: int | None) -> bool:
    """Whether a code gives a license free or at least half off (HIGH_VALUE_BPS). A fixed
    amount off or a set price is judged against its product's price; a set price of 0 is a
    free license whatever the product costs."""
    kind, amount = code["kind"], code["amount"]
    if kind == "free_license" or (kind == "set_price" and amount == 0):
        return True
    if kind == "percent":
        return amount >= HIGH_VALUE_BPS
    if not product_price:
        return False
    off = product_price - price_after(code, product_price)
    return off * FULL_PERCENT_BPS >= product_price * HIGH_VALUE_BPS


def weakness(code: Row, product_price: int | None, wrong_per_minute: int, days: int) -> str | None:
    """Why a free or high-value code could be guessed within `days`, or None."""
    if days == 0 or not valuable(code, product_price):
        return None
    text = code["code"]
    advice = f"Use a long random code, e.g. {strong_code()}"
    if wrong_per_minute == 0:
        return (
            f"code '{text}' is valuable and wrong codes are not limited in total on this server "
            f"(KEYSMITH_WRONG_CODES_PER_MINUTE=0), so many addresses may guess it. {advice}"
        )
    expected_days = guess_space(text) / 2 / (wrong_per_minute * MINUTES_PER_DAY)
    if expected_days >= days:
        return None
    return (
        f"code '{text}' is weak: at this server's limit of {wrong_per_minute} wrong codes a "
        f"minute, a guesser finds a code of its shape in {expected_days:,.1f} days on average "
        f"(the warning is for less than {days} days, KEYSMITH_WEAK_CODE_DAYS). {advice}"
    )


def price_after(code: Row | None, base: int) -> int:
    """The price once `code` (a stored row) applies to `base` sats."""
    if code is None:
        return base
    kind, amount = code["kind"], code["amount"]
    if kind == "free_license":
        return 0
    if kind == "percent":
        return base - base * amount // FULL_PERCENT_BPS
    if kind == "fixed_sats":
        return max(0, base - amount)
    return min(base, amount)  # set_price


def allowed_policy_ids(code: Row) -> list[str]:
    """The policies a code is limited to (Keysat's several, else its one); empty: any."""
    several: list[str] = json.loads(code["policy_ids"])
    if several:
        return several
    return [] if code["policy_id"] is None else [code["policy_id"]]


def scoped_policy_id(code: Row) -> str | None:
    """The policy a license bought or redeemed with the code gets when none is chosen."""
    allowed = allowed_policy_ids(code)
    return allowed[0] if allowed else None


@dataclass(frozen=True, slots=True)
class Unusable:
    """Why a code cannot be used now: Keysat's preview reason and a sentence for a person."""

    reason: PreviewRefusal
    message: str


def unusable(code: Row, product: Row, policy_id: str | None, at: int) -> Unusable | None:
    """Why `code` cannot be used for this product (and policy) now, or None."""
    name = code["code"]
    if code["disabled"]:
        return Unusable("disabled", f"code '{name}' has been disabled by the seller")
    if code["expires_at"] is not None and at >= code["expires_at"]:
        return Unusable("expired", f"code '{name}' expired at {iso_time(code['expires_at'])}")
    if code["product_id"] is not None and code["product_id"] != product["id"]:
        return Unusable(
            "wrong_product", f"code '{name}' is not valid for product '{product['slug']}'"
        )
    allowed = allowed_policy_ids(code)
    if allowed and policy_id is not None and policy_id not in allowed:
        return Unusable("wrong_tier", f"code '{name}' is not valid for this policy")
    if code["max_redemptions"] is not None and code["redemptions"] >= code["max_redemptions"]:
        return Unusable(
            "exhausted",
            f"code '{name}' has already been used {code['redemptions']} time(s), its limit; "
            "no license was issued",
        )
    return None


class Codes:
    def __init__(
        self,
        pool: Any,
        *,
        write_lock: asyncio.Lock,
        audit: Audit,
        purchases: Purchases,
        wrong_codes_per_minute: int,
        weak_code_days: int,
    ) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit
        # Settles a redemption as a free purchase.
        self._purchases = purchases
        # Where a code is called weak to the seller (`weakness`).
        self._wrong_codes_per_minute = wrong_codes_per_minute
        self._weak_code_days = weak_code_days

    async def create_code(self, request: models.CodeCreate) -> answers.Code:
        at = now()
        expires_at = request.expires_at
        if expires_at is not None and expires_at <= at:  # type: ignore[operator]
            raise BadRequest("'expires_at' must be in the future")
        amount = _stored_amount(request.kind, request.amount)
        # Keysat: `policy_slugs` supersedes `policy_slug`; both need `product_slug`.
        slugs = request.policy_slugs
        if slugs is None and request.policy_slug is not None:
            slugs = [request.policy_slug]
        async with self._write_lock, self._pool.transaction() as conn:
            product_id = None
            if request.product_slug:
                product = await store.product_by_slug(conn, request.product_slug)
                if product is None:
                    raise NotFound(f"product '{request.product_slug}'")
                product_id = product["id"]
            elif slugs:
                field = "policy_slugs" if request.policy_slugs is not None else "policy_slug"
                raise BadRequest(f"'{field}' needs 'product_slug' too")
            scope = await _policy_scope(conn, product_id, slugs or [])
            if await store_sales.code_by_text(conn, request.code) is not None:
                raise Conflict(f"a discount code '{request.code}' already exists")
            code = {
                "id": str(uuid.uuid4()),
                "code": request.code,
                "product_id": product_id,
                "kind": request.kind,
                **amount,
                **scope,
                "max_redemptions": request.max_uses,
                "expires_at": expires_at,
                "note": request.description or "",
                "referrer_label": request.referrer_label,
                "now": at,
            }
            await store_sales.insert_code(conn, code)
            await self._audit(
                conn,
                "discount_code.create",
                f"discount_code:{code['id']}",
                {"kind": request.kind, "product_id": product_id},
                at,
            )
            row = await store_sales.code_by_id(conn, code["id"])
        return self._shown(row)

    def _shown(self, row: Row) -> answers.Code:
        """The code as answered, with the seller's warning when it is guessable."""
        code = rows.code(row)
        weak = weakness(
            row, row["product_price_sats"], self._wrong_codes_per_minute, self._weak_code_days
        )
        if weak is None:
            return code
        return answers.WeakCode(**msgspec.structs.asdict(code), weak=weak)

    async def list_codes(self, query: models.CodeQuery) -> list[answers.Code]:
        product_slug = query.product_slug
        async with self._pool.connection() as conn:
            product_id = None
            if product_slug is not None:
                product = await store.product_by_slug(conn, product_slug)
                if product is None:
                    raise NotFound(f"product '{product_slug}'")
                product_id = product["id"]
            found = await store_sales.list_codes(
                conn, product_id=product_id, include_inactive=query.include_inactive
            )
        return [self._shown(row) for row in found]

    async def get_code(self, code_id: str) -> answers.CodeWithRedemptions:
        async with self._pool.connection() as conn:
            row = await store_sales.code_by_id(conn, code_id)
            if row is None:
                raise NotFound(f"discount code {code_id}")
            used = await store_sales.redemptions_of(conn, code_id)
        return answers.CodeWithRedemptions(
            code=self._shown(row), redemptions=[rows.redemption(r) for r in used]
        )

    async def update_code(
        self, code_id: str, request: models.CodeUpdate, action: str = "discount_code.update"
    ) -> answers.Code:
        at = now()
        values: dict[str, Any] = {}
        if request.description is not None:
            values["note"] = request.description
        if request.max_uses is not msgspec.UNSET:
            values["max_redemptions"] = request.max_uses
        if request.expires_at is not msgspec.UNSET:
            values["expires_at"] = request.expires_at
        if request.active is not None:
            values["disabled"] = int(not request.active)
        async with self._write_lock, self._pool.transaction() as conn:
            before = await store_sales.code_by_id(conn, code_id)
            if before is None:
                raise NotFound(f"discount code {code_id}")
            terms = {
                "id": code_id,
                "now": at,
                "percent_bps": before["amount"] if before["kind"] == "percent" else None,
                "referrer_label": before["referrer_label"],
                "policy_ids": before["policy_ids"],
            }
            if request.amount is not None:
                stored = _stored_amount(before["kind"], request.amount)
                values["amount"] = stored.pop("amount")
                terms.update(stored)
            if request.referrer_label is not msgspec.UNSET:
                terms["referrer_label"] = request.referrer_label
            if request.policy_slugs is not None:
                if before["product_id"] is None and request.policy_slugs:
                    raise BadRequest(
                        f"'policy_slugs': code '{before['code']}' is not limited to a product, "
                        "so it cannot be limited to policies; nothing was written"
                    )
                scope = await _policy_scope(conn, before["product_id"], request.policy_slugs)
                values["policy_id"] = scope.pop("policy_id")
                terms.update(scope)
            await store.update_row(conn, "discount_codes", code_id, values)
            await store_sales.put_code_terms(conn, terms)
            changed = {"note": "description", "disabled": "active", "max_redemptions": "max_uses"}
            fields = {changed.get(f, f) for f in values}
            if request.referrer_label is not msgspec.UNSET:
                fields.add("referrer_label")
            if request.policy_slugs is not None:
                fields.add("policy_slugs")
            await self._audit(
                conn, action, f"discount_code:{code_id}", {"fields": sorted(fields)}, at
            )
            row = await store_sales.code_by_id(conn, code_id)
        return self._shown(row)

    async def set_code_active(self, code_id: str, active: bool) -> answers.Code:
        request = models.CodeUpdate(active=active)
        return await self.update_code(code_id, request, "discount_code.set_active")

    async def delete_code(self, code_id: str) -> answers.Deleted:
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            row = await store_sales.code_by_id(conn, code_id)
            if row is None:
                raise NotFound(f"discount code {code_id}")
            if not await store_sales.delete_code(conn, code_id):
                raise Conflict(
                    f"code '{row['code']}' has been used {row['redemptions']} time(s), so it "
                    "was kept for its redemptions' record; nothing was written. Set it "
                    "inactive ('active': false) to stop it"
                )
            await self._audit(
                conn, "discount_code.delete", f"discount_code:{code_id}", {"code": row["code"]}, at
            )
        return answers.Deleted(deleted=row["code"])

    async def code_exists(self, text: str) -> bool:
        """Whether a code with this text exists, usable or not (the API's guessing guard)."""
        async with self._pool.connection() as conn:
            return await store_sales.code_by_text(conn, text) is not None

    async def preview_code(self, query: models.CodePreview) -> answers.CodePreviewAnswer:
        """What a buyer would pay with this code (Keysat's public preview); uses nothing up."""
        async with self._pool.connection() as conn:
            product, policy = await product_and_policy(conn, query.product, query.policy_slug)
            code = await store_sales.code_by_text(conn, query.code)
        base = (policy or product)["price_sats"]
        if code is None:
            return answers.CodePreviewAnswer(
                valid=False, reason="unknown_code", message="Code not found.", base_price_sats=base
            )
        problem = unusable(code, product, None if policy is None else policy["id"], now())
        if problem is not None:
            return answers.CodePreviewAnswer(
                valid=False, reason=problem.reason, message=problem.message, base_price_sats=base
            )
        final = price_after(code, base)
        percent = code["amount"] / 100 if code["kind"] == "percent" else None
        return answers.CodePreviewAnswer(
            valid=True,
            message=f"{base - final} sats off: {final} sats to pay.",
            base_price_sats=base,
            code=code["code"],
            kind=code["kind"],
            is_free=final == 0,
            discount_applied_sats=base - final,
            final_price_sats=final,
            amount_pct=percent,
        )

    async def redeem(self, request: models.RedeemRequest) -> answers.Redeemed:
        """Keysat: an unknown product or tier is 404; every refusal of the code 400, an
        unknown code included. The license is issued under the tier named, else the one
        the code is limited to, else the product's default."""
        async with self._write_lock:
            at = now()
            async with self._pool.transaction() as conn:
                product, chosen = await product_and_policy(
                    conn, request.product, request.policy_slug
                )
                code = await store_sales.code_by_text(conn, request.code)
                if code is None:
                    raise BadRequest(f"there is no discount code '{request.code}'")
                if code["kind"] != "free_license":
                    raise BadRequest(
                        f"code '{code['code']}' is a {code['kind']} discount for purchases, "
                        "not a free-license code; use it with POST /v1/purchase"
                    )
                policy_id = scoped_policy_id(code)
                if request.policy_slug is not None and chosen is not None:
                    if not chosen["is_public"]:  # as Keysat: only a tier buyers are shown
                        raise BadRequest(
                            f"policy '{request.policy_slug}' is not offered to buyers; "
                            "no license was issued"
                        )
                    policy, policy_id = chosen, chosen["id"]
                else:
                    policy = await policy_of(conn, product, policy_id)
                problem = unusable(code, product, policy_id, at)
                if problem is not None:
                    raise BadRequest(problem.message)
                terms = models.LicenseIssue(
                    product_slug=product["slug"],
                    note=f"redeemed code {code['code']}",
                    buyer_email=request.buyer_email,
                )
                issued = await self._purchases._settle_free(
                    conn, product, policy, code, terms, request.buyer_note, at, "license.redeem"
                )
        return answers.Redeemed(
            license_id=issued["license_id"],
            license_key=issued["license_key"],
            invoice_id=issued["invoice_id"],
            redemption_id=issued["redemption_id"],
        )


def _stored_amount(kind: str, amount: int) -> dict[str, int | None]:
    """discount_codes.amount and the terms' percent_bps for a code's `amount`.

    A percent is Keysat's basis points, kept exactly in percent_bps; the whole-percent column
    gets it rounded down (at least 1, its CHECK) for an older version, and 0016's down disables
    a code whose percent that column cannot say.
    """
    if kind != "percent":
        return {"amount": amount, "percent_bps": None}
    if amount > FULL_PERCENT_BPS:
        raise BadRequest(
            f"'amount' of a percent code is in basis points, 0 to 10000 (100%); got {amount}"
        )
    return {"amount": max(1, amount // 100), "percent_bps": amount}


async def _policy_scope(
    conn: Connection, product_id: str | None, slugs: list[str]
) -> dict[str, str | None]:
    """Keysat's policy scope: one policy in discount_codes.policy_id, several in the terms."""
    ids = []
    for slug in dict.fromkeys(slugs):
        policy = None if product_id is None else await store.policy_by_slug(conn, product_id, slug)
        if policy is None:
            raise NotFound(f"policy '{slug}' of the code's product")
        ids.append(policy["id"])
    return {
        "policy_id": ids[0] if len(ids) == 1 else None,
        "policy_ids": json.dumps(ids if len(ids) > 1 else []),
    }


async def policy_of(conn: Connection, product: Row, policy_id: str | None) -> Row | None:
    if policy_id is not None:
        return await store.policy_by_id(conn, policy_id)
    return await store.default_policy(conn, product["id"])


async def product_and_policy(
    conn: Connection, product_slug: str, policy_slug: str | None
) -> tuple[Row, Row | None]:
    """An active product and the named policy (active), or its default policy."""
    product = await store.product_by_slug(conn, product_slug)
    if product is None or not product["active"]:
        raise NotFound(f"product '{product_slug}'")
    if policy_slug is None:
        return product, await store.default_policy(conn, product["id"])
    policy = await store.policy_by_slug(conn, product["id"], policy_slug)
    if policy is None or not policy["active"]:
        raise NotFound(f"policy '{policy_slug}' of product '{product_slug}'")
    return product, policy
