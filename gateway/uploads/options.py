"""What the catalogue says about an uploaded resource: its ``[resource.source]`` options.

Catalogue entry (``policies/catalogue.toml``)::

    source = { adapter = "upload", key = "id_number", keep_versions = 3,
               required = ["name"], max_bytes = 1073741824 }

``key``            the column (CSV) or member (JSON Lines) that holds the subject identifier;
                   default: the resource's subject type (``uscc`` or ``resident-id``)
``keep_versions``  how many accepted versions to keep, the current one included (1..100,
                   default 3); older versions' rows and reports are deleted
``required``       fields every row must have (the key is always required)
``max_bytes``      the largest file accepted (default 1 GiB, at most :data:`HARD_MAX_BYTES`)

Each field is read from the column ``column`` (default: the field's name), as for SQL sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.policy import FieldType, Resource
from gateway.errors import ConfigurationError

__all__ = [
    "DEFAULT_KEEP_VERSIONS",
    "DEFAULT_MAX_BYTES",
    "HARD_MAX_BYTES",
    "UPLOAD_ADAPTER",
    "FieldSpec",
    "UploadOptions",
]

#: The ``source.adapter`` value of uploaded resources.
UPLOAD_ADAPTER = "upload"
DEFAULT_KEEP_VERSIONS = 3
DEFAULT_MAX_BYTES = 1024**3
#: No resource may raise its cap above this, whatever the catalogue says: the spool file
#: lives on the gateway's data disk.
HARD_MAX_BYTES = 8 * 1024**3

_KNOWN = frozenset({"adapter", "key", "keep_versions", "required", "max_bytes"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One catalogued field as files carry it: its name, the column holding it, its type."""

    name: str
    column: str
    type: FieldType


@dataclass(frozen=True, slots=True)
class UploadOptions:
    """The validated upload options of one resource."""

    resource: str
    subject: str  # "uscc" or "resident-id"
    key: str
    fields: tuple[FieldSpec, ...]
    required: frozenset[str]
    keep_versions: int
    max_bytes: int

    @classmethod
    def from_resource(cls, resource: Resource) -> UploadOptions:
        """Read and check ``resource.source``; raise :class:`ConfigurationError` naming every
        problem (the gateway refuses to start, or to reload, with a bad catalogue)."""
        options: dict[str, Any] = resource.source
        rid = resource.id
        problems: list[str] = []
        if options.get("adapter") != UPLOAD_ADAPTER:
            problems.append(f"resource {rid!r}: source.adapter is not {UPLOAD_ADAPTER!r}")
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            # Strict on purpose: a misspelt ``keep_version`` must not silently mean "3".
            problems.append(f"resource {rid!r}: unknown upload options {', '.join(unknown)}")
        key = options.get("key", resource.subject)
        if not isinstance(key, str) or not key or len(key) > 64:
            problems.append(f"resource {rid!r}: source.key must be a column name")
            key = resource.subject
        keep = options.get("keep_versions", DEFAULT_KEEP_VERSIONS)
        if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 100:
            problems.append(f"resource {rid!r}: source.keep_versions must be 1..100")
            keep = DEFAULT_KEEP_VERSIONS
        max_bytes = options.get("max_bytes", DEFAULT_MAX_BYTES)
        if (
            isinstance(max_bytes, bool)
            or not isinstance(max_bytes, int)
            or not 1 <= max_bytes <= HARD_MAX_BYTES
        ):
            problems.append(f"resource {rid!r}: source.max_bytes must be 1..{HARD_MAX_BYTES}")
            max_bytes = DEFAULT_MAX_BYTES
        required = options.get("required", [])
        names = {f.name for f in resource.fields}
        if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
            problems.append(f"resource {rid!r}: source.required must be a list of field names")
            required = []
        elif bad := sorted(set(required) - names):
            problems.append(f"resource {rid!r}: source.required names unknown fields {bad}")
        fields = tuple(FieldSpec(f.name, f.column or f.name, f.type) for f in resource.fields)
        columns = [f.column for f in fields]
        if len(set(columns)) != len(columns) or key in columns:
            problems.append(f"resource {rid!r}: two fields (or a field and the key) share a column")
        if problems:
            raise ConfigurationError(problems)
        return cls(
            resource=rid,
            subject=resource.subject,
            key=key,
            fields=fields,
            required=frozenset(required),
            keep_versions=keep,
            max_bytes=max_bytes,
        )
