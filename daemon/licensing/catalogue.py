"""The catalogue: products and their policies, for buyers (public) and for the seller (admin)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import msgspec
from aiosqlite import Connection

from daemon.licensing import answers, events, models, outbox, rows, store
from daemon.licensing.core import Audit, now
from daemon.licensing.errors import BadRequest, Conflict, NotFound
from daemon.licensing.store import Row


class Catalogue:
    def __init__(self, pool: Any, *, write_lock: asyncio.Lock, audit: Audit) -> None:
        self._pool = pool
        self._write_lock = write_lock
        self._audit = audit

    # ----- public -----

    async def public_products(self) -> list[answers.Product]:
        async with self._pool.connection() as conn:
            found = await store.list_products(conn, active_only=True)
        return [rows.product(row) for row in found]

    async def public_product(self, slug: str) -> answers.Product:
        async with self._pool.connection() as conn:
            row = await store.product_by_slug(conn, slug)
        if row is None or not row["active"]:
            raise NotFound(f"product '{slug}'")
        return rows.product(row)

    async def public_policies(self, slug: str) -> answers.PublicPolicies:
        async with self._pool.connection() as conn:
            product = await store.product_by_slug(conn, slug)
            if product is None or not product["active"]:
                raise NotFound(f"product '{slug}'")
            found = await store.list_policies(conn, product["id"], public_only=True)
        return answers.PublicPolicies(
            product=rows.public_product(product),
            policies=[rows.public_policy(row) for row in found],
        )

    # ----- products -----

    async def create_product(self, request: models.ProductCreate) -> answers.Product:
        at = now()
        product = {
            "id": str(uuid.uuid4()),
            "slug": request.slug,
            "name": request.name,
            "description": request.description,
            "price_sats": request.price_sats,
            "metadata": json.dumps(request.metadata or {}, sort_keys=True),
            "entitlements_catalog": _catalog_json(request.entitlements_catalog or []),
            "price_currency": rows.stored_currency(request.price_currency),
            "price_minor": (
                request.price_sats if request.price_value is None else request.price_value
            ),
            "now": at,
        }
        async with self._write_lock, self._pool.transaction() as conn:
            if await store.product_by_slug(conn, request.slug) is not None:
                raise Conflict(f"a product with slug '{request.slug}' already exists")
            await store.insert_product(conn, product)
            await self._audit(
                conn, "product.create", f"product:{product['id']}", {"slug": request.slug}, at
            )
            created = rows.product(await store.product_by_id(conn, product["id"]))
            await outbox.emit(conn, "product.created", events.ProductCreated(product=created), at)
        return created

    async def admin_products(self) -> list[answers.Product]:
        async with self._pool.connection() as conn:
            found = await store.list_products(conn, active_only=False)
        return [rows.product(row) for row in found]

    async def update_product(
        self, product_id: str, request: models.ProductUpdate, action: str = "product.update"
    ) -> answers.Product:
        """Edit a product, its entitlements catalog included; absent fields stay as they are."""
        values: dict[str, Any] = _given(request, ("name", "description", "price_sats"))
        if request.metadata is not msgspec.UNSET:
            values["metadata"] = json.dumps(request.metadata or {}, sort_keys=True)
        if request.entitlements_catalog is not msgspec.UNSET:
            values["entitlements_catalog"] = _catalog_json(request.entitlements_catalog or [])
        values |= _stored_prices(request)
        if request.active is not None:
            values["active"] = int(request.active)
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            if not await store.update_row(conn, "products", product_id, values, at):
                raise NotFound(f"product {product_id}")
            detail = {"fields": sorted(values), "active": request.active}
            await self._audit(conn, action, f"product:{product_id}", detail, at)
            row = await store.product_by_id(conn, product_id)
        return rows.product(row)

    async def set_product_active(self, product_id: str, active: bool) -> answers.Product:
        request = models.ProductUpdate(active=active)
        return await self.update_product(product_id, request, "product.set_active")

    async def delete_product(self, product_id: str) -> answers.ProductDeleted:
        """Only a product nothing was sold under: its licenses and invoices keep it otherwise."""
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            product = await store.product_by_id(conn, product_id)
            if product is None:
                raise NotFound(f"product {product_id}")
            if await store.product_in_use(conn, product_id):
                raise Conflict(
                    f"product '{product['slug']}' has licenses, invoices or codes, so it was "
                    "not deleted; nothing was written. Set it inactive to stop selling it"
                )
            policies = await store.delete_policies_of(conn, product_id)
            await store.delete_row(conn, "products", product_id)
            detail = {"slug": product["slug"], "cascaded_policies": policies}
            await self._audit(conn, "product.delete", f"product:{product_id}", detail, at)
        return answers.ProductDeleted(deleted=product["slug"], cascaded_policies=policies)

    # ----- policies -----

    async def create_policy(self, request: models.PolicyCreate) -> answers.Policy:
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            product = await _product_of(conn, request.product_id, request.product_slug)
            if await store.policy_by_slug(conn, product["id"], request.slug) is not None:
                raise Conflict(f"product '{product['slug']}' already has a policy '{request.slug}'")
            _check_entitlements_in_catalog(product, request.entitlements or [])
            # No override: the policy follows the product's price (Keysat), read at each use;
            # the product's price now is kept in the row for a downgrade (0018's down).
            follows = request.price_sats_override is None and request.price_value is None
            price = product["price_sats"] if follows else request.price_sats_override
            if price is None:
                price = product["price_sats"]
            policy = {
                "id": str(uuid.uuid4()),
                "product_id": product["id"],
                "slug": request.slug,
                "name": request.name,
                "description": request.description or "",
                "price_sats": price,
                "price_currency": (
                    product["price_currency"]
                    if follows
                    else rows.stored_currency(request.price_currency)
                ),
                "price_minor": (
                    product["price_minor"]
                    if follows
                    else price
                    if request.price_value is None
                    else request.price_value
                ),
                "price_follows_product": int(follows),
                "entitlements": json.dumps(request.entitlements or []),
                "metadata": json.dumps(request.metadata or {}, sort_keys=True),
                "is_trial": int(bool(request.is_trial)),
                "is_public": int(request.public is not False),
                "highlighted": int(bool(request.highlighted)),
                "sort_order": request.sort_order or 0,
                "is_default": int(bool(request.is_default)),
                "grace_seconds": request.grace_seconds or 0,
                "duration_seconds": request.duration_seconds or None,
                **_seat_columns(request.max_machines if request.max_machines is not None else 1),
                "now": at,
            }
            if policy["is_default"]:
                await store.clear_default_policy(conn, product["id"])
            await store.insert_policy(conn, policy)
            await self._audit(
                conn,
                "policy.create",
                f"policy:{policy['id']}",
                {"product_id": product["id"], "slug": request.slug},
                at,
            )
            row = await store.policy_by_id(conn, policy["id"])
        return rows.policy(row)

    async def admin_policies(self, query: models.PolicyQuery) -> list[answers.Policy]:
        everything = query.include_inactive or query.include_archived
        async with self._pool.connection() as conn:
            product_id = None
            if query.product_id or query.product_slug:
                product_id = (await _product_of(conn, query.product_id, query.product_slug))["id"]
            found = await store.list_policies(
                conn, product_id, public_only=False, active_only=not everything
            )
        return [rows.policy(row) for row in found]

    async def update_policy(
        self, policy_id: str, request: models.PolicyUpdate, action: str = "policy.update"
    ) -> answers.Policy:
        """Edit a policy; `active: false` archives it (kept for its licenses, sold no more)."""
        values: dict[str, Any] = _given(
            request,
            ("name", "description", "grace_seconds", "sort_order"),
        )
        values |= _stored_prices(request)
        values |= _override_columns(request.price_sats_override)
        if request.duration_seconds is not None:
            values["duration_seconds"] = request.duration_seconds or None
        if request.max_machines is not None:
            values |= _seat_columns(request.max_machines)
        if request.entitlements is not None:
            values["entitlements"] = json.dumps(request.entitlements)
        if request.metadata is not None:
            values["metadata"] = json.dumps(request.metadata, sort_keys=True)
        if request.public is not None:
            values["is_public"] = int(request.public)
        for flag in ("is_trial", "highlighted", "is_default", "active"):
            if getattr(request, flag) is not None:
                values[flag] = int(getattr(request, flag))
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            before = await store.policy_by_id(conn, policy_id)
            if before is None:
                raise NotFound(f"policy {policy_id}")
            if request.entitlements is not None:
                product = await store.product_by_id(conn, before["product_id"])
                _check_entitlements_in_catalog(product, request.entitlements)
            if values.get("is_default"):
                await store.clear_default_policy(conn, before["product_id"])
            await store.update_row(
                conn, "policies", policy_id, values | _archived_at(before, request, at), at
            )
            await self._audit(conn, action, f"policy:{policy_id}", {"fields": sorted(values)}, at)
            row = await store.policy_by_id(conn, policy_id)
        return rows.policy(row)

    async def set_policy_active(self, policy_id: str, active: bool) -> answers.Policy:
        request = models.PolicyUpdate(active=active)
        return await self.update_policy(policy_id, request, "policy.set_active")

    async def set_policy_public(self, policy_id: str, public: bool) -> answers.PublicSet:
        request = models.PolicyUpdate(public=public)
        await self.update_policy(policy_id, request, "policy.set_public")
        return answers.PublicSet(public=public)

    async def set_policy_archived(self, policy_id: str, archived: bool) -> answers.ArchivedSet:
        """Keysmith has one flag for both: an archived policy is an inactive one (kept for
        its licenses, hidden from buyers, not sold)."""
        request = models.PolicyUpdate(active=not archived)
        await self.update_policy(
            policy_id, request, "policy.archive" if archived else "policy.unarchive"
        )
        return answers.ArchivedSet(archived=archived)

    async def delete_policy(self, policy_id: str) -> answers.PolicyDeleted:
        """Only a policy nothing was issued or sold under; archive it otherwise."""
        at = now()
        async with self._write_lock, self._pool.transaction() as conn:
            policy = await store.policy_by_id(conn, policy_id)
            if policy is None:
                raise NotFound(f"policy {policy_id}")
            if await store.policy_in_use(conn, policy_id):
                raise Conflict(
                    f"policy '{policy['slug']}' has licenses, invoices or codes, so it was not "
                    "deleted; nothing was written. Archive it ('archived': true) to stop selling it"
                )
            await store.delete_row(conn, "policies", policy_id)
            await self._audit(
                conn, "policy.delete", f"policy:{policy_id}", {"slug": policy["slug"]}, at
            )
        return answers.PolicyDeleted(deleted=policy["slug"])


def _given(request: models.Request, names: tuple[str, ...]) -> dict[str, Any]:
    """The named fields the request sets (None means "leave as it is")."""
    return {name: getattr(request, name) for name in names if getattr(request, name) is not None}


def _archived_at(before: Row, request: models.PolicyUpdate, at: int) -> dict[str, int | None]:
    """Keysat's archived_at: set when the policy is archived (made inactive), cleared when it
    is sold again; a repeated archive keeps the first time."""
    if request.active is None or request.active == bool(before["active"]):
        return {}
    return {"archived_at": None if request.active else at}


def _stored_prices(request: models.ProductUpdate | models.PolicyUpdate) -> dict[str, Any]:
    """An edit's price_currency and price_value in 0010's columns."""
    values: dict[str, Any] = {}
    if request.price_currency is not None:
        values["price_currency"] = rows.stored_currency(request.price_currency)
    if request.price_value is not None:
        values["price_minor"] = request.price_value
    return values


def _override_columns(override: int | msgspec.UnsetType | None) -> dict[str, int]:
    """Keysat's edit: a number sets the policy's own price, null follows the product's."""
    if override is msgspec.UNSET:
        return {}
    if override is None:
        return {"price_follows_product": 1}
    return {"price_sats": override, "price_follows_product": 0}


def _seat_columns(max_machines: int) -> dict[str, int]:
    """Keysat's 0 = unlimited, in 0013's columns (max_machines itself stays >= 1)."""
    return {"max_machines": max_machines or 1, "unlimited_machines": int(max_machines == 0)}


def _catalog_json(entries: list[models.CatalogEntry]) -> str:
    return json.dumps(
        [{"slug": e.slug, "name": e.name, "description": e.description} for e in entries]
    )


async def _product_of(conn: Connection, product_id: str | None, slug: str | None) -> Row:
    if product_id:
        product = await store.product_by_id(conn, str(uuid.UUID(product_id)))
        if product is None:
            raise NotFound(f"product {product_id}")
        return product
    if slug:
        product = await store.product_by_slug(conn, slug)
        if product is None:
            raise NotFound(f"product '{slug}'")
        return product
    raise BadRequest("name the product with 'product_slug' or 'product_id'")


def _check_entitlements_in_catalog(product: Row, entitlements: list[str]) -> None:
    catalog = {entry["slug"] for entry in rows.entitlements_catalog(product)}
    unknown = [slug for slug in entitlements if slug not in catalog]
    if catalog and unknown:
        raise BadRequest(
            f"'entitlements' {unknown} are not in product '{product['slug']}''s catalog "
            f"({sorted(catalog)})"
        )
