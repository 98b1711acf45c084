"""Routes of the lookups feature: signed lookups, batches, manifests, closing a case and a
provider's invalidation. Each one reads its body and hands it to one service method."""

from __future__ import annotations

import functools
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from gateway.core.lookup import CLAIM_TYPES
from gateway.core.protocol import TokenType
from gateway.http.openapi import SIGNED, problems, signed_operation
from gateway.http.signed import JWT_MEDIA_TYPE, signed
from gateway.lookups.cases import CaseService
from gateway.lookups.manifests import ManifestService
from gateway.lookups.resources import ResourceService
from gateway.lookups.service import LookupService

__all__ = ["ROUTES", "close_case", "invalidate_resource", "lookup", "lookup_batch", "manifest"]


@post(
    "/v1/lookups",
    summary="Signed lookup of a shared record",
    description=(
        "Body: a compact JWS (`application/jwt`, typ `yiwang-lookup+jwt`) signed by the "
        "consumer department. Answer: a JWT signed by the gateway (`application/jwt`), or "
        "RFC 9457 problem details."
    ),
    tags=["lookups"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.LOOKUP, CLAIM_TYPES[TokenType.LOOKUP], answer=TokenType.LOOKUP_RESULT
    ),
    responses=problems(*SIGNED, 404, 500, 502, 504),
)
async def lookup(
    request: Request[Any, Any, Any],
    lookups: NamedDependency[LookupService],
) -> Response[bytes]:
    return await signed(request, lookups.lookup)


@post(
    "/v1/lookups:batch",
    summary="Several signed lookups under one purpose, one signed answer",
    description="typ `yiwang-lookup-batch+jwt`; claims `purpose`, `operator`, `queries`.",
    tags=["lookups"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.BATCH, CLAIM_TYPES[TokenType.BATCH], answer=TokenType.BATCH_RESULT
    ),
    responses=problems(*SIGNED, 500),
)
async def lookup_batch(
    request: Request[Any, Any, Any],
    lookups: NamedDependency[LookupService],
) -> Response[bytes]:
    return await signed(request, lookups.lookup_batch, batch=True)


@post(
    "/v1/manifests",
    summary="Which required materials the gateway can supply for an applicant",
    description="typ `yiwang-manifest+jwt`; claims `purpose`, `operator`, `applicant`.",
    tags=["manifests"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.MANIFEST, CLAIM_TYPES[TokenType.MANIFEST], answer=TokenType.MANIFEST_RESULT
    ),
    responses=problems(*SIGNED, 500),
)
async def manifest(
    request: Request[Any, Any, Any],
    manifests: NamedDependency[ManifestService],
) -> Response[bytes]:
    return await signed(request, manifests.manifest)


@post(
    "/v1/cases:close",
    summary="Declare a case closed; later lookups for it are refused",
    description="typ `yiwang-case-close+jwt`; claims `case`, `operator`, `reason`.",
    tags=["cases"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.CASE_CLOSE, CLAIM_TYPES[TokenType.CASE_CLOSE], answer=TokenType.CASE_CLOSED
    ),
    responses=problems(*SIGNED, 500),
)
async def close_case(
    request: Request[Any, Any, Any],
    cases: NamedDependency[CaseService],
) -> Response[bytes]:
    return await signed(request, cases.close)


@post(
    "/v1/resources/{resource_id:str}/invalidate",
    summary="The provider signals changed records: cached copies are dropped",
    description="typ `yiwang-invalidate+jwt`; claims `resource`, `operator`, `reason`.",
    tags=["resources"],
    status_code=200,
    media_type=JWT_MEDIA_TYPE,
    operation_class=signed_operation(
        TokenType.INVALIDATE, CLAIM_TYPES[TokenType.INVALIDATE], answer=TokenType.INVALIDATED
    ),
    responses=problems(*SIGNED, 500),
)
async def invalidate_resource(
    request: Request[Any, Any, Any],
    resources: NamedDependency[ResourceService],
    resource_id: FromPath[str],
) -> Response[bytes]:
    return await signed(request, functools.partial(resources.invalidate, resource_id=resource_id))


#: Every route of this module, for the app factory.
ROUTES = [lookup, lookup_batch, manifest, close_case, invalidate_resource]
