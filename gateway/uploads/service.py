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

from gateway.cache import Admission
from gateway.core.policy import Resource
from gateway.core.protocol import AuditEvent, TokenType
from gateway.errors import (
    Error,
    InvalidInput,
    PayloadTooLarge,
    PolicyDenied,
    RecordNotFound,
    StoreUnavailable,
    UnsupportedMediaType,
)
from gateway.exchange import Admit, Done, Exchange, Received, SignedAnswer, SignedExchanges
from gateway.uploads import store
from gateway.uploads.claims import (
    MEDIA_TYPES,
    ReportRequest,
    UploadFormat,
    UploadRequest,
    parse_report_claims,
    parse_upload_claims,
)
from gateway.uploads.options import UPLOAD_ADAPTER, UploadOptions
from gateway.uploads.validation import Problem, read_rows

__all__ = [
    "REPORT",
    "REPORT_MEDIA_TYPES",
    "UPLOAD",
    "Report",
    "UploadService",
    "report_path",
]

log = logging.getLogger(__name__)

UPLOAD = Exchange(
    request=TokenType.UPLOAD,
    answer=TokenType.UPLOAD_RECEIPT,
    parse=parse_upload_claims,
    refused=AuditEvent.UPLOAD_REFUSED,
    done=AuditEvent.UPLOAD_ACCEPTED,
)
REPORT = Exchange(
    request=TokenType.UPLOAD_REPORT,
    answer=None,  # a stream: the report itself
    parse=parse_report_claims,
    refused=AuditEvent.REJECTIONS_REFUSED,
    done=AuditEvent.REJECTIONS_READ,
)

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
        exchanges: SignedExchanges,
        engine: sa.Engine,
        spool_dir: Path,
        max_concurrent: int = 2,
        on_new_version: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._exchanges = exchanges
        self._policy = exchanges.policy
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
    ) -> SignedAnswer:
        """Take the file streamed in ``body`` as a new version of ``resource_id``; answer the
        signed receipt, or raise an (audited) :class:`~gateway.errors.Error`."""

        def check(received: Received[UploadRequest]) -> Admit:
            upload = received.request
            received.audit.resource = resource_id
            resource = self._uploaded_resource(resource_id, upload.resource, upload.provider)
            options = UploadOptions.from_resource(resource)
            if _media_type(content_type) != MEDIA_TYPES[upload.format]:
                raise UnsupportedMediaType(MEDIA_TYPES[upload.format] + "; charset=utf-8")
            if content_length is not None and content_length > options.max_bytes:
                raise PayloadTooLarge(options.max_bytes)
            return Admit(plan=options)

        async def work(received: Received[UploadRequest], admit: Admit, _a: Admission) -> Done:
            upload, options = received.request, admit.plan
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            # Anonymous: the file has no name to leak or to leave behind if the process dies.
            with tempfile.TemporaryFile(dir=self._spool_dir) as spool:
                try:
                    digest, size = await _spool(body, spool, options.max_bytes)
                except Error:
                    raise
                except Exception:  # the client went away mid-body (the framework says how)
                    raise InvalidInput("body", "ended before the whole file arrived") from None
                if digest != upload.sha256:
                    raise InvalidInput("sha256", "does not match the body; nothing was changed")
                async with self._slots:
                    return await self._take(spool, upload, options, size=size, at=received.audit.at)

        return await self._exchanges.run(UPLOAD, token, now=now, check=check, work=work)

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
        at: dt.datetime,
    ) -> Done:
        """Steps 5 and 6: load the spooled file as a new version, make it current; the
        receipt's claims (each refusal raised, and audited by the exchange)."""
        rid = options.resource
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
            raise StoreUnavailable("database") from None
        try:
            loader = await asyncio.to_thread(self._load, spool, upload.format, options, version)
        except InvalidInput as exc:  # the file as a whole cannot be used
            await self._refuse_version(rid, version, str(exc), 0, keep_report=False)
            raise
        except SQLAlchemyError:
            await self._store_failed(rid, version)
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
            await self._store_failed(rid, version)

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
        detail = (
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
        )
        return Done(
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
            },
            audit={"detail": detail},
        )

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

    async def _store_failed(self, rid: str, version: int) -> NoReturn:
        log.exception("upload of %s version %d failed", rid, version)
        await self._refuse_version(rid, version, "the load failed", 0, keep_report=False)
        raise StoreUnavailable("database") from None

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

        async def check(received: Received[ReportRequest]) -> Admit:
            request = received.request
            received.audit.resource = resource_id
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
            return Admit()

        async def work(_received: Received[ReportRequest], _a: Admit, _b: Admission) -> Done:
            return Done({}, audit={"detail": f"version {version}, {fmt}"})

        _done, index = await self._exchanges.run_unsigned(
            REPORT, token, now=now, check=check, work=work
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
