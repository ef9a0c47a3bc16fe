"""Admin routes under `/v1/admin/`, all behind `Authorization: Bearer <admin key>` (401 when
missing, 403 when wrong). Shapes and statuses follow Keysat's admin API: creates answer 200,
status changes `{ok: true, ...}`, the code list is under `codes`.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon.api.routes import (
    answer,
    answers_errors,
    check_admin,
    licensing_of,
    path_uuid,
    read,
    read_query,
)
from daemon.api.table import endpoint
from daemon.licensing import answers, models


class Products(msgspec.Struct):
    products: list[answers.Product]


class Policies(msgspec.Struct):
    policies: list[answers.Policy]


class Licenses(msgspec.Struct):
    licenses: list[answers.License]


class Codes(msgspec.Struct):
    codes: list[answers.Code]


class Machines(msgspec.Struct):
    machines: list[answers.Machine]


class Entries(msgspec.Struct):
    entries: list[answers.AuditEntry]


class CodeQuery(models.Request, kw_only=True):
    product_slug: models.Slug | None = None


def _admin(method: str, path: str, summary: str, **models_of: object):
    def wrap(handler):  # noqa: ANN001
        async def guarded(request: web.Request) -> web.StreamResponse:
            check_admin(request)
            return await handler(request)

        guarded.__name__ = handler.__name__
        return endpoint(method, path, tag="admin", summary=summary, **models_of)(
            answers_errors(guarded)
        )

    return wrap


# ----- products -----


@_admin(
    "POST",
    "/v1/admin/products",
    "Create a product",
    body=models.ProductCreate,
    answer=answers.Product,
)
async def create_product(request: web.Request) -> web.Response:
    body = await read(request, models.ProductCreate)
    return answer(await licensing_of(request).create_product(body))


@_admin("GET", "/v1/admin/products", "Every product", answer=Products)
async def list_products(request: web.Request) -> web.Response:
    return answer(Products(await licensing_of(request).admin_products()))


@_admin(
    "PATCH",
    "/v1/admin/products/{id}",
    "Edit a product (its entitlements catalog too)",
    body=models.ProductUpdate,
    answer=answers.Product,
)
async def update_product(request: web.Request) -> web.Response:
    product_id = path_uuid(request)
    body = await read(request, models.ProductUpdate)
    return answer(await licensing_of(request).update_product(product_id, body))


@_admin(
    "PATCH",
    "/v1/admin/products/{id}/active",
    "Sell a product, or stop",
    body=models.ActiveToggle,
    answer=answers.Product,
)
async def set_product_active(request: web.Request) -> web.Response:
    product_id = path_uuid(request)
    body = await read(request, models.ActiveToggle)
    return answer(await licensing_of(request).set_product_active(product_id, body.active))


@_admin(
    "DELETE",
    "/v1/admin/products/{id}",
    "Delete a product nothing was sold under",
    answer=answers.Deleted,
)
async def delete_product(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).delete_product(path_uuid(request)))


# ----- policies -----


@_admin(
    "POST",
    "/v1/admin/policies",
    "Create a policy (a tier of a product)",
    body=models.PolicyCreate,
    answer=answers.Policy,
)
async def create_policy(request: web.Request) -> web.Response:
    body = await read(request, models.PolicyCreate)
    return answer(await licensing_of(request).create_policy(body))


@_admin(
    "GET",
    "/v1/admin/policies",
    "Policies, of one product or all",
    query=models.ProductQuery,
    answer=Policies,
)
async def list_policies(request: web.Request) -> web.Response:
    query = read_query(request, models.ProductQuery)
    return answer(Policies(await licensing_of(request).admin_policies(query)))


@_admin(
    "PATCH",
    "/v1/admin/policies/{id}",
    "Edit a policy; is_public, active: false archives",
    body=models.PolicyUpdate,
    answer=answers.Policy,
)
async def update_policy(request: web.Request) -> web.Response:
    policy_id = path_uuid(request)
    body = await read(request, models.PolicyUpdate)
    return answer(await licensing_of(request).update_policy(policy_id, body))


@_admin(
    "PATCH",
    "/v1/admin/policies/{id}/active",
    "Archive a policy, or restore it",
    body=models.ActiveToggle,
    answer=answers.Policy,
)
async def set_policy_active(request: web.Request) -> web.Response:
    policy_id = path_uuid(request)
    body = await read(request, models.ActiveToggle)
    return answer(await licensing_of(request).set_policy_active(policy_id, body.active))


# ----- licenses -----


@_admin(
    "POST",
    "/v1/admin/licenses",
    "Issue a license (with per-license overrides)",
    body=models.LicenseIssue,
    answer=answers.Issued,
)
async def issue_license(request: web.Request) -> web.Response:
    body = await read(request, models.LicenseIssue)
    return answer(await licensing_of(request).issue_license(body))


@_admin(
    "GET",
    "/v1/admin/licenses",
    "Licenses, newest first",
    query=models.LicenseQuery,
    answer=Licenses,
)
async def list_licenses(request: web.Request) -> web.Response:
    query = read_query(request, models.LicenseQuery)
    return answer(Licenses(await licensing_of(request).list_licenses(query)))


@_admin(
    "GET",
    "/v1/admin/licenses/search",
    "Search by buyer_email, invoice_id or q; no filter: the 100 most recent",
    query=models.LicenseQuery,
    answer=Licenses,
)
async def search_licenses(request: web.Request) -> web.Response:
    query = read_query(request, models.LicenseQuery)
    return answer(Licenses(await licensing_of(request).list_licenses(query)))


@_admin(
    "GET",
    "/v1/admin/licenses/summary",
    "License counts by status",
    answer=answers.LicenseSummary,
)
async def license_summary(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).license_summary())


@_admin("GET", "/v1/admin/licenses/{id}", "One license", answer=answers.License)
async def get_license(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).get_license(path_uuid(request)))


@_admin(
    "POST",
    "/v1/admin/licenses/{id}/revoke",
    "Revoke a license (for good)",
    body=models.ReasonRequest,
    answer=answers.StatusChange,
)
async def revoke_license(request: web.Request) -> web.Response:
    license_id = path_uuid(request)
    body = await read(request, models.ReasonRequest)
    return answer(await licensing_of(request).revoke(license_id, body.reason))


@_admin(
    "POST",
    "/v1/admin/licenses/{id}/suspend",
    "Suspend an active license, with a reason",
    body=models.ReasonRequest,
    answer=answers.StatusChange,
)
async def suspend_license(request: web.Request) -> web.Response:
    license_id = path_uuid(request)
    body = await read(request, models.ReasonRequest)
    return answer(await licensing_of(request).suspend(license_id, body.reason))


@_admin(
    "POST",
    "/v1/admin/licenses/{id}/unsuspend",
    "Make a suspended license active again",
    answer=answers.StatusChange,
)
async def unsuspend_license(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).unsuspend(path_uuid(request)))


# ----- discount codes -----


@_admin(
    "POST",
    "/v1/admin/discount-codes",
    "Create a discount code (percent in basis points)",
    body=models.CodeCreate,
    answer=answers.Code,
)
async def create_code(request: web.Request) -> web.Response:
    body = await read(request, models.CodeCreate)
    return answer(await licensing_of(request).create_code(body))


@_admin(
    "GET",
    "/v1/admin/discount-codes",
    "Discount codes, of one product or all",
    query=CodeQuery,
    answer=Codes,
)
async def list_codes(request: web.Request) -> web.Response:
    query = read_query(request, CodeQuery)
    return answer(Codes(await licensing_of(request).list_codes(query.product_slug)))


@_admin(
    "POST",
    "/v1/admin/discount-codes/preview",
    "The price a code gives, without using it",
    body=models.CodePreview,
    answer=answers.CodePreviewAnswer,
)
async def preview_code(request: web.Request) -> web.Response:
    body = await read(request, models.CodePreview)
    return answer(await licensing_of(request).preview_code(body))


@_admin("GET", "/v1/admin/discount-codes/{id}", "One discount code", answer=answers.Code)
async def get_code(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).get_code(path_uuid(request)))


@_admin(
    "PATCH",
    "/v1/admin/discount-codes/{id}",
    "Edit a discount code",
    body=models.CodeUpdate,
    answer=answers.Code,
)
async def update_code(request: web.Request) -> web.Response:
    code_id = path_uuid(request)
    body = await read(request, models.CodeUpdate)
    return answer(await licensing_of(request).update_code(code_id, body))


@_admin(
    "PATCH",
    "/v1/admin/discount-codes/{id}/active",
    "Enable or disable a code",
    body=models.ActiveToggle,
    answer=answers.Code,
)
async def set_code_active(request: web.Request) -> web.Response:
    code_id = path_uuid(request)
    body = await read(request, models.ActiveToggle)
    return answer(await licensing_of(request).set_code_active(code_id, body.active))


@_admin(
    "DELETE",
    "/v1/admin/discount-codes/{id}",
    "Delete a code never used",
    answer=answers.Deleted,
)
async def delete_code(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).delete_code(path_uuid(request)))


# ----- machines and audit -----


@_admin(
    "GET",
    "/v1/admin/machines",
    "Machines, of one license or all",
    query=models.MachineQuery,
    answer=Machines,
)
async def list_machines(request: web.Request) -> web.Response:
    query = read_query(request, models.MachineQuery)
    return answer(Machines(await licensing_of(request).list_machines(query)))


@_admin(
    "POST",
    "/v1/admin/machines/{id}/deactivate",
    "Free a machine's seat",
    body=models.ReasonRequest,
    answer=answers.MachineDeactivated,
)
async def deactivate_machine(request: web.Request) -> web.Response:
    machine_id = path_uuid(request)
    body = await read(request, models.ReasonRequest)
    return answer(await licensing_of(request).admin_deactivate_machine(machine_id, body.reason))


@_admin(
    "GET", "/v1/admin/audit", "The audit log, newest first", query=models.AuditQuery, answer=Entries
)
async def list_audit(request: web.Request) -> web.Response:
    query = read_query(request, models.AuditQuery)
    return answer(Entries(await licensing_of(request).audit_entries(query)))
