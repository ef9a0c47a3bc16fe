"""Admin routes under `/v1/admin/` for licenses, discount codes, machines and the audit log
(products and policies: `admin_catalogue`), all behind `Authorization: Bearer <admin key>` (401 when
missing, 403 when wrong). Shapes and statuses follow Keysat's admin API: creates answer 200,
status changes `{ok: true, ...}`, the code list is under `codes`.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from daemon.api.routes import (
    admin_endpoint,
    answer,
    licensing_of,
    path_uuid,
)
from daemon.licensing import answers, models
from daemon.licensing.access import MASTER


class Licenses(msgspec.Struct):
    licenses: list[answers.License]


class Codes(msgspec.Struct):
    codes: list[answers.Code]


class Machines(msgspec.Struct):
    machines: list[answers.Machine]


class Entries(msgspec.Struct):
    entries: list[answers.AuditEntry]


# ----- licenses -----


@admin_endpoint(
    "POST",
    "/v1/admin/licenses",
    "Issue a license (with per-license overrides)",
    body=models.LicenseIssue,
    answer=answers.Issued,
)
async def issue_license(request: web.Request, body: models.LicenseIssue) -> web.Response:
    return answer(await licensing_of(request).licenses.issue_license(body))


@admin_endpoint(
    "GET",
    "/v1/admin/licenses",
    "Licenses, newest first",
    query=models.LicenseQuery,
    answer=Licenses,
)
async def list_licenses(request: web.Request, query: models.LicenseQuery) -> web.Response:
    return answer(Licenses(await licensing_of(request).licenses.list_licenses(query)))


@admin_endpoint(
    "GET",
    "/v1/admin/licenses/search",
    "Search by buyer_email, invoice_id or q; no filter: the 100 most recent",
    query=models.LicenseQuery,
    answer=Licenses,
)
async def search_licenses(request: web.Request, query: models.LicenseQuery) -> web.Response:
    return answer(Licenses(await licensing_of(request).licenses.list_licenses(query)))


@admin_endpoint(
    "GET",
    "/v1/admin/licenses/summary",
    "License counts by status",
    answer=answers.LicenseSummary,
)
async def license_summary(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).licenses.license_summary())


@admin_endpoint(
    "GET",
    "/v1/admin/revenue/summary",
    "Sats taken by settled invoices, lifetime and over 24 h, 7 and 30 days",
    answer=answers.RevenueSummary,
)
async def revenue_summary(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).licenses.revenue_summary())


@admin_endpoint(
    "GET",
    "/v1/admin/licenses/counts",
    "Licenses per product and per policy",
    answer=answers.LicenseCounts,
)
async def license_counts(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).licenses.license_counts())


@admin_endpoint("GET", "/v1/admin/licenses/{id}", "One license", answer=answers.License)
async def get_license(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).licenses.get_license(path_uuid(request)))


@admin_endpoint(
    "POST",
    "/v1/admin/licenses/{id}/revoke",
    "Revoke a license (for good)",
    body=models.ReasonRequest,
    answer=answers.StatusChange,
)
async def revoke_license(request: web.Request, body: models.ReasonRequest) -> web.Response:
    license_id = path_uuid(request)
    return answer(await licensing_of(request).licenses.revoke(license_id, body.reason))


@admin_endpoint(
    "POST",
    "/v1/admin/licenses/{id}/suspend",
    "Suspend an active license, with a reason",
    body=models.ReasonRequest,
    answer=answers.StatusChange,
)
async def suspend_license(request: web.Request, body: models.ReasonRequest) -> web.Response:
    license_id = path_uuid(request)
    return answer(await licensing_of(request).licenses.suspend(license_id, body.reason))


@admin_endpoint(
    "POST",
    "/v1/admin/licenses/{id}/unsuspend",
    "Make a suspended license active again",
    answer=answers.StatusChange,
)
async def unsuspend_license(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).licenses.unsuspend(path_uuid(request)))


@admin_endpoint(
    "POST",
    "/v1/admin/licenses/{id}/change-tier",
    "Move a license to another tier of its product; without a payment provider only as a "
    "comp (skip_payment: true)",
    scope=MASTER,
    body=models.TierChange,
    answer=answers.TierChanged,
)
async def change_tier(request: web.Request, body: models.TierChange) -> web.Response:
    license_id = path_uuid(request)
    return answer(await licensing_of(request).tiers.change_tier(license_id, body))


# ----- discount codes -----


@admin_endpoint(
    "POST",
    "/v1/admin/discount-codes",
    "Create a discount code (percent in basis points); a guessable free or high-value one "
    "is answered with `weak`",
    body=models.CodeCreate,
    answer=answers.Code,
)
async def create_code(request: web.Request, body: models.CodeCreate) -> web.Response:
    return answer(await licensing_of(request).codes.create_code(body))


@admin_endpoint(
    "GET",
    "/v1/admin/discount-codes",
    "Discount codes, of one product or all",
    query=models.CodeQuery,
    answer=Codes,
)
async def list_codes(request: web.Request, query: models.CodeQuery) -> web.Response:
    return answer(Codes(await licensing_of(request).codes.list_codes(query)))


@admin_endpoint(
    "GET",
    "/v1/admin/discount-codes/{id}",
    "One discount code and its redemptions",
    answer=answers.CodeWithRedemptions,
)
async def get_code(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).codes.get_code(path_uuid(request)))


@admin_endpoint(
    "PATCH",
    "/v1/admin/discount-codes/{id}",
    "Edit a discount code",
    body=models.CodeUpdate,
    answer=answers.Code,
)
async def update_code(request: web.Request, body: models.CodeUpdate) -> web.Response:
    code_id = path_uuid(request)
    return answer(await licensing_of(request).codes.update_code(code_id, body))


@admin_endpoint(
    "PATCH",
    "/v1/admin/discount-codes/{id}/active",
    "Enable or disable a code",
    body=models.ActiveToggle,
    answer=answers.ActiveSet,
)
async def set_code_active(request: web.Request, body: models.ActiveToggle) -> web.Response:
    code_id = path_uuid(request)
    await licensing_of(request).codes.set_code_active(code_id, body.active)
    return answer(answers.ActiveSet(active=body.active))


@admin_endpoint(
    "DELETE",
    "/v1/admin/discount-codes/{id}",
    "Delete a code never used",
    answer=answers.Deleted,
)
async def delete_code(request: web.Request) -> web.Response:
    return answer(await licensing_of(request).codes.delete_code(path_uuid(request)))


# ----- machines and audit -----


@admin_endpoint(
    "GET",
    "/v1/admin/machines",
    "Machines, of one license or all",
    query=models.MachineQuery,
    answer=Machines,
)
async def list_machines(request: web.Request, query: models.MachineQuery) -> web.Response:
    return answer(Machines(await licensing_of(request).licenses.list_machines(query)))


@admin_endpoint(
    "POST",
    "/v1/admin/machines/{id}/deactivate",
    "Free a machine's seat",
    body=models.ReasonRequest,
    answer=answers.MachineDeactivated,
)
async def deactivate_machine(request: web.Request, body: models.ReasonRequest) -> web.Response:
    machine_id = path_uuid(request)
    return answer(
        await licensing_of(request).licenses.admin_deactivate_machine(machine_id, body.reason)
    )


@admin_endpoint(
    "GET", "/v1/admin/audit", "The audit log, newest first", query=models.AuditQuery, answer=Entries
)
async def list_audit(request: web.Request, query: models.AuditQuery) -> web.Response:
    return answer(Entries(await licensing_of(request).licenses.audit_entries(query)))
