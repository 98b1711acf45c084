"""The signed upload endpoints: a provider uploads a file, downloads a version's rejections.

Order of work for one upload (each refusal is audited, durably, before it is raised):

1. verify the token from the ``Upload-Token`` header and parse its claims — 401 / 400;
2. the resource must be catalogued, uploaded (``adapter = "upload"``) and provided by the
   token's department — 400 / 403; the Content-Type must be the claimed format's — 415;
3. replay and rate limit — 409 / 429;
4. spool the body to an anonymous temporary file while hashing it (bounded memory; a body
   over the resource's ``max_bytes`` is refused — 413); a SHA-256 other than the claimed one
   is refused before any row is read — 400, nothing changes;
5. number a new version and load it row by row in a worker thread (rows into the version,
   rejections into its report); a file that cannot be read as a whole, or of which no row is
   accepted, is refused — 400, the current version stays;
6. flip the current-version pointer (one transaction), prune old versions, call
   :attr:`UploadService.on_new_version`, audit, answer a signed receipt.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, NoReturn

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import AuditEntry, Outcome
from gateway.core.policy import Resource
from gateway.core.tokens import VerifiedToken
from gateway.errors import (
    Error,
    InvalidInput,
    PayloadTooLarge,
    PolicyDenied,
    RecordNotFound,
    StoreUnavailable,
    UnsupportedMediaType,
)
from gateway.lookups.base import AuditBase, SignedRequests, elapsed_ms
from gateway.lookups.service import LookupAnswer, PolicyHolder
from gateway.uploads import store
from gateway.uploads.claims import (
    MEDIA_TYPES,
    REPORT_REQUEST_TYP,
    UPLOAD_RECEIPT_TYP,
    UPLOAD_REQUEST_TYP,
    UploadFormat,
    UploadRequest,
    parse_report_claims,
    parse_upload_claims,
)
from gateway.uploads.options import UPLOAD_ADAPTER, UploadOptions
from gateway.uploads.validation import Problem, read_rows

__all__ = [
    "EVENT_ACCEPTED",
    "EVENT_REFUSED",
    "EVENT_REPORT_READ",
    "EVENT_REPORT_REFUSED",
    "REPORT_MEDIA_TYPES",
    "Report",
    "UploadService",
    "report_path",
]

log = logging.getLogger(__name__)

EVENT_ACCEPTED = "upload:version:accepted"
EVENT_REFUSED = "upload:version:refused"
EVENT_REPORT_READ = "upload:rejections:read"
EVENT_REPORT_REFUSED = "upload:rejections:refused"

#: Rejections quoted in the signed receipt itself; the rest are in the downloadable report.
RECEIPT_SAMPLE = 20
#: Media type of the report in each format.
#: Litestar adds ``; charset=utf-8`` to text types itself (naming it here doubled it).
REPORT_MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
_REPORT_COLUMNS = ("line", "key", "field", "code", "reason")


def report_path(resource: str, version: int) -> str:
    """Where the rejection report of ``version`` is downloaded (relative to the gateway)."""
    return f"/v1/uploads/{resource}/versions/{version}/rejections"


@dataclass(frozen=True, slots=True)
class Report:
    """A rejection report on its way out: media type, the audit entry, the body's chunks."""

    media_type: str
    audit_index: int
    chunks: AsyncIterator[bytes]


async def _nothing(_resource_id: str) -> None:
    return None


def _media_type(content_type: str) -> str:
    """The media type of a Content-Type header, or "" if it names a charset other than UTF-8."""
    media, _, params = content_type.partition(";")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return ""
    return media.strip().lower()


class UploadService:
    """Runs signed uploads and serves rejection reports. Construct once per process.

    ``on_new_version`` is awaited with the resource id after a new version became current
    (e.g. to drop cached records of the resource); it defaults to doing nothing, and a
    failure in it is logged, never undoes the upload.
    """

    def __init__(
        self,
        *,
        requests: SignedRequests,
        policy: PolicyHolder,
        engine: sa.Engine,
        spool_dir: Path,
        max_concurrent: int = 2,
        on_new_version: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._requests = requests
        self._policy = policy
        self._engine = engine
        self._spool_dir = spool_dir
        # Loading is CPU and disk work in worker threads; a few at a time per process keeps
        # lookups served while uploads run.
        self._slots = asyncio.Semaphore(max_concurrent)
        self.on_new_version: Callable[[str], Awaitable[None]] = on_new_version or _nothing

    # --- upload ---------------------------------------------------------------------------

    async def upload(
        self,
        resource_id: str,
        *,
        token: bytes,
        content_type: str,
        content_length: int | None,
        body: AsyncIterator[bytes],
        now: float,
    ) -> LookupAnswer:
        """Take the file streamed in ``body`` as a new version of ``resource_id``; answer the
        signed receipt, or raise an (audited) :class:`~gateway.errors.Error`."""
        rq = self._requests
        policy = self._policy.current
        received = await rq.receive(
            token,
            typ=UPLOAD_REQUEST_TYP,
            now=now,
            policy_version=policy.version,
            event=EVENT_REFUSED,
            parse=parse_upload_claims,
        )
        token_info, upload, base, started = (
            received.token,
            received.request,
            received.base,
            received.started,
        )
        base.update(operator=upload.operator, resource=resource_id)
        try:
            resource = self._uploaded_resource(resource_id, upload.resource, upload.provider)
            options = UploadOptions.from_resource(resource)
            if _media_type(content_type) != MEDIA_TYPES[upload.format]:
                raise UnsupportedMediaType(MEDIA_TYPES[upload.format] + "; charset=utf-8")
            if content_length is not None and content_length > options.max_bytes:
                raise PayloadTooLarge(options.max_bytes)
        except Error as exc:
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise
        await rq.admit(token_info, now=now, base=base, event=EVENT_REFUSED, started=started)

        self._spool_dir.mkdir(parents=True, exist_ok=True)
        # Anonymous: the file has no name to leak or to leave behind if the process dies.
        with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
            try:
                digest, size = await _spool(body, spool, options.max_bytes)
                if digest != upload.sha256:
                    raise InvalidInput("sha256", "does not match the body; nothing was changed")
            except Error as exc:
                await rq.refuse(exc, base, EVENT_REFUSED, started)
                raise
            except Exception:  # the client went away mid-body (the framework says how)
                cut = InvalidInput("body", "ended before the whole file arrived")
                await rq.refuse(cut, base, EVENT_REFUSED, started)
                raise cut from None
            async with self._slots:
                return await self._take(
                    spool,
                    upload,
                    options,
                    size=size,
                    base=base,
                    now=now,
                    started=started,
                    token=token_info,
                )

    def _uploaded_resource(self, resource_id: str, claimed: str, department: str) -> Resource:
        if claimed != resource_id:
            raise InvalidInput("resource", "does not match the resource in the path")
        resource = self._policy.current.resources.get(resource_id)
        if resource is None:
            raise InvalidInput("resource", "is not in the catalogue")
        if resource.provider != department:
            raise PolicyDenied("not-provider", "only the resource's provider may do this")
        if resource.source.get("adapter") != UPLOAD_ADAPTER:
            raise InvalidInput(
                "resource",
                f"is not an uploaded resource (source.adapter is not {UPLOAD_ADAPTER!r})",
            )
        return resource

    async def _take(
        self,
        spool: IO[bytes],
        upload: UploadRequest,
        options: UploadOptions,
        *,
        size: int,
        base: AuditBase,
        now: float,
        started: float,
        token: VerifiedToken,
    ) -> LookupAnswer:
        """Steps 5 and 6: load the spooled file as a new version, make it current, answer."""
        rq = self._requests
        rid = options.resource
        at = base["at"]
        try:
            version = await asyncio.to_thread(
                store.begin_version,
                self._engine,
                resource=rid,
                fmt=str(upload.format),
                sha256=upload.sha256,
                size=size,
                uploader=upload.provider,
                operator=upload.operator,
                at=at,
            )
        except (SQLAlchemyError, RuntimeError):
            log.exception("upload of %s: could not start a version", rid)
            exc = StoreUnavailable("database")
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise exc from None
        try:
            loader = await asyncio.to_thread(self._load, spool, upload.format, options, version)
        except InvalidInput as exc:  # the file as a whole cannot be used
            await self._refuse_version(rid, version, str(exc), 0, keep_report=False)
            await rq.refuse(exc, base, EVENT_REFUSED, started)
            raise
        except SQLAlchemyError:
            await self._store_failed(rid, version, base, started)
        refusal: InvalidInput | None = None
        if upload.rows is not None and loader.rows_read != upload.rows:
            refusal = InvalidInput(
                "rows", f"the file has {loader.rows_read} rows, the token says {upload.rows}"
            )
        elif loader.accepted == 0:
            # An export gone wrong must not wipe the data set: the current version stays.
            refusal = InvalidInput(
                "body",
                "no row was accepted, so the current version stays; the reasons are in "
                + report_path(rid, version),
            )
        if refusal is not None:
            await self._refuse_version(
                rid, version, str(refusal), loader.rejected, keep_report=refusal.field == "body"
            )
            await rq.refuse(refusal, base, EVENT_REFUSED, started)
            raise refusal
        try:
            flip = await asyncio.to_thread(
                store.make_current,
                self._engine,
                resource=rid,
                version=version,
                accepted=loader.accepted,
                rejected=loader.rejected,
                at=dt.datetime.now(dt.UTC),
            )
        except (SQLAlchemyError, RuntimeError, store.VersionPruned):
            await self._store_failed(rid, version, base, started)

        await self._after_flip(rid, options.keep_versions, current=flip.current)
        try:
            sample = await asyncio.to_thread(
                store.first_rejections,
                self._engine,
                resource=rid,
                version=version,
                limit=RECEIPT_SAMPLE,
            )
        except SQLAlchemyError:  # the upload is done; the report link still works later
            log.exception("upload of %s: could not read the rejection sample", rid)
            sample = []
        index = await rq.audit.append(
            AuditEntry(
                **base,
                detail=(
                    f"version {version} ({upload.format}, {size} bytes, sha256 "
                    f"{upload.sha256}): {loader.accepted} rows accepted, "
                    f"{loader.rejected} rejected; "
                    + (
                        "the first version"
                        if flip.previous is None
                        else f"replaced version {flip.previous}"
                        if flip.current
                        else f"not current: version {flip.previous} is newer"
                    )
                ),
                event=EVENT_ACCEPTED,
                decision=Outcome.ALLOWED,
                latency_ms=elapsed_ms(started),
            )
        )
        receipt = rq.sign_answer(
            {
                "resource": rid,
                "version": version,
                "previous_version": flip.previous,
                "current": flip.current,
                "format": str(upload.format),
                "sha256": upload.sha256,
                "bytes": size,
                "uploaded_at": at.isoformat(timespec="seconds"),
                "rows": {"accepted": loader.accepted, "rejected": loader.rejected},
                "rejections": {
                    "url": report_path(rid, version),
                    "count": loader.rejected,
                    "sample": [_problem_json(p) for p in sample],
                },
                "audit": {"index": index},
            },
            token=token,
            typ=UPLOAD_RECEIPT_TYP,
            now=now,
        )
        return LookupAnswer(receipt, index)

    def _load(
        self, spool: IO[bytes], fmt: UploadFormat, options: UploadOptions, version: int
    ) -> store.VersionLoader:
        spool.seek(0)
        loader = store.VersionLoader(
            self._engine, resource=options.resource, version=version, key_column=options.key
        )
        for item in read_rows(spool, fmt, options):
            loader.add(item)
        loader.finish()
        return loader

    async def _store_failed(
        self, rid: str, version: int, base: AuditBase, started: float
    ) -> NoReturn:
        log.exception("upload of %s version %d failed", rid, version)
        await self._refuse_version(rid, version, "the load failed", 0, keep_report=False)
        exc = StoreUnavailable("database")
        await self._requests.refuse(exc, base, EVENT_REFUSED, started)
        raise exc from None

    async def _refuse_version(
        self, rid: str, version: int, detail: str, rejected: int, *, keep_report: bool = True
    ) -> None:
        try:
            await asyncio.to_thread(
                store.refuse_version,
                self._engine,
                resource=rid,
                version=version,
                detail=detail,
                rejected=rejected,
                at=dt.datetime.now(dt.UTC),
                keep_report=keep_report,
            )
        except SQLAlchemyError:
            # Left in state "loading": never current, pruned as stale later.
            log.exception("upload of %s: could not mark version %d refused", rid, version)

    async def _after_flip(self, rid: str, keep: int, *, current: bool) -> None:
        """Prune and notify. Neither may fail the upload: the new version is already in
        force, and a later upload prunes again."""
        try:
            await asyncio.to_thread(
                store.prune_versions,
                self._engine,
                resource=rid,
                keep=keep,
                now=dt.datetime.now(dt.UTC),
            )
        except SQLAlchemyError:
            log.exception("upload of %s: pruning old versions failed", rid)
        if current:
            try:
                await self.on_new_version(rid)
            except Exception:
                log.exception("upload of %s: the new-version hook failed", rid)

    # --- rejection reports ----------------------------------------------------------------

    async def rejections(
        self, resource_id: str, version: int, *, token: bytes, fmt: str, now: float
    ) -> Report:
        """The rejection report of one version, for its resource's provider."""
        rq = self._requests
        policy = self._policy.current
        received = await rq.receive(
            token,
            typ=REPORT_REQUEST_TYP,
            now=now,
            policy_version=policy.version,
            event=EVENT_REPORT_REFUSED,
            parse=parse_report_claims,
        )
        token_info, request, base, started = (
            received.token,
            received.request,
            received.base,
            received.started,
        )
        base.update(operator=request.operator, resource=resource_id)
        try:
            if fmt not in REPORT_MEDIA_TYPES:
                raise InvalidInput("format", "must be csv or jsonl")
            if request.version != version:
                raise InvalidInput("version", "does not match the version in the path")
            self._uploaded_resource(resource_id, request.resource, request.provider)
            info = await asyncio.to_thread(
                store.version_info, self._engine, resource=resource_id, version=version
            )
            if info is None:
                raise RecordNotFound(f"{resource_id} has no version {version}")
            if info.state in (store.VersionState.PRUNED, store.VersionState.LOADING):
                raise RecordNotFound(f"version {version} of {resource_id} is {info.state}")
        except Error as exc:
            await rq.refuse(exc, base, EVENT_REPORT_REFUSED, started)
            raise
        await rq.admit(token_info, now=now, base=base, event=EVENT_REPORT_REFUSED, started=started)
        index = await rq.audit.append(
            AuditEntry(
                **base,
                event=EVENT_REPORT_READ,
                decision=Outcome.ALLOWED,
                detail=f"version {version}, {fmt}",
                latency_ms=elapsed_ms(started),
            )
        )
        return Report(
            REPORT_MEDIA_TYPES[fmt], index, self._report_chunks(resource_id, version, fmt)
        )

    async def _report_chunks(self, rid: str, version: int, fmt: str) -> AsyncIterator[bytes]:
        pages = store.iter_rejections(self._engine, resource=rid, version=version)
        if fmt == "csv":
            yield (",".join(_REPORT_COLUMNS) + "\r\n").encode()
        while True:
            page = await asyncio.to_thread(next, pages, None)
            if page is None:
                return
            yield _encode_page(page, fmt)


async def _spool(body: AsyncIterator[bytes], spool: IO[bytes], limit: int) -> tuple[str, int]:
    """Write the body to ``spool`` while hashing it; refuse it once it passes ``limit``."""
    digest = sha256()
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        digest.update(chunk)
        spool.write(chunk)
    spool.flush()
    return digest.hexdigest(), size


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"line": p.line, "key": p.key, "field": p.field, "code": p.code, "reason": p.reason}


def _encode_page(page: list[Problem], fmt: str) -> bytes:
    if fmt == "jsonl":
        return b"".join(msgspec.json.encode(_problem_json(p)) + b"\n" for p in page)
    out = io.StringIO()
    writer = csv.writer(out)
    for p in page:
        writer.writerow([p.line, p.key or "", p.field, p.code, p.reason])
    return out.getvalue().encode()
