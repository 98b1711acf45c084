"""The protocol's names, in one place: token types (the JOSE ``typ`` of every request and
answer) and audit events (what an entry says happened).

Both are string enums, so a member *is* its wire value (``TokenType.LOOKUP == "yiwang-lookup
+jwt"``) and compares, encodes and stores as one. Event names read ``area:object:outcome``.
"""

from __future__ import annotations

import enum

__all__ = ["AuditEvent", "TokenType"]


class TokenType(enum.StrEnum):
    """``typ`` of every compact JWS the gateway takes or gives."""

    # Requests a department signs, and the gateway's answers.
    LOOKUP = "yiwang-lookup+jwt"
    LOOKUP_RESULT = "yiwang-lookup-result+jwt"
    BATCH = "yiwang-lookup-batch+jwt"
    BATCH_RESULT = "yiwang-lookup-batch-result+jwt"
    MANIFEST = "yiwang-manifest+jwt"
    MANIFEST_RESULT = "yiwang-manifest-result+jwt"
    CASE_CLOSE = "yiwang-case-close+jwt"
    CASE_CLOSED = "yiwang-case-closed+jwt"
    INVALIDATE = "yiwang-invalidate+jwt"
    INVALIDATED = "yiwang-invalidated+jwt"
    UPLOAD = "yiwang-upload+jwt"
    UPLOAD_RECEIPT = "yiwang-upload-receipt+jwt"
    UPLOAD_REPORT = "yiwang-upload-report+jwt"
    LICENCE_RESERVE = "yiwang-licence-reserve+jwt"
    LICENCE_RESERVED = "yiwang-licence-reserved+jwt"
    LICENCE_ISSUE = "yiwang-licence-issue+jwt"
    LICENCE_ISSUED = "yiwang-licence-issued+jwt"
    LICENCE_STATUS = "yiwang-licence-status+jwt"
    LICENCE_STATUS_CHANGED = "yiwang-licence-status-changed+jwt"
    VERIFICATION = "yiwang-verification+jwt"
    VERIFICATION_RECEIPT = "yiwang-verification-receipt+jwt"
    SEAL_REGISTER = "yiwang-seal-register+jwt"
    SEAL_REGISTERED = "yiwang-seal-registered+jwt"
    SEAL_PROOF = "yiwang-seal-proof+jwt"
    AUDIT_LEAF = "yiwang-audit-leaf+jwt"
    KEY_REGISTER = "yiwang-key-register+jwt"  # a department registers its next key
    KEY_REGISTERED = "yiwang-key-registered+jwt"
    KEY_PROOF = "yiwang-key-proof+jwt"  # the new key's proof of possession
    KEY_RETIRE = "yiwang-key-retire+jwt"  # a department retires one of its keys
    KEY_RETIRED = "yiwang-key-retired+jwt"
    ACCESS_HISTORY = "yiwang-access-history+jwt"
    ACCESS_HISTORY_RESULT = "yiwang-access-history-result+jwt"
    REFUSALS = "yiwang-refusals+jwt"
    REFUSALS_RESULT = "yiwang-refusals-result+jwt"
    # Documents the gateway signs for anyone.
    LICENCE = "yiwang-licence+jws"  # sealed by an issuer's e-seal
    SEAL_REGISTRY = "yiwang-seal-registry+jwt"
    STATUS_LIST = "yiwang-status-list+jwt"
    AUDIT_CHECKPOINT = "yiwang-audit-checkpoint+jwt"
    # The gateway's own request to a provider's API (adapter ``http``, auth ``jwt``).
    SOURCE_REQUEST = "yiwang-source-request+jwt"


class AuditEvent(enum.StrEnum):
    """What an audit entry records."""

    # Lookups, batches, manifests, cases, cached copies.
    LOOKUP_RELEASED = "lookup:record:released"
    LOOKUP_NOT_FOUND = "lookup:record:not-found"
    LOOKUP_REFUSED = "lookup:record:refused"
    MANIFEST_LISTED = "manifest:materials:listed"
    MANIFEST_REFUSED = "manifest:materials:refused"
    CASE_CLOSED = "case:closure:recorded"
    CASE_REFUSED = "case:closure:refused"
    CACHE_INVALIDATED = "resource:cache:invalidated"
    CACHE_REFUSED = "resource:cache:refused"
    # Uploads.
    UPLOAD_ACCEPTED = "upload:version:accepted"
    UPLOAD_REFUSED = "upload:version:refused"
    REJECTIONS_READ = "upload:rejections:read"
    REJECTIONS_REFUSED = "upload:rejections:refused"
    # E-licences and e-seals.
    LICENCE_RESERVED = "licence:status-entry:reserved"
    LICENCE_ISSUED = "licence:issuance:published"
    LICENCE_ISSUE_REFUSED = "licence:issuance:refused"
    LICENCE_STATUS_CHANGED = "licence:status:changed"
    LICENCE_STATUS_REFUSED = "licence:status:refused"
    VERIFICATION_PERFORMED = "licence:verification:performed"
    VERIFICATION_REFUSED = "licence:verification:refused"
    RECEIPT_PRINTED = "licence:receipt:printed"  # a clerk printed a verification's receipt
    SEAL_REGISTERED = "seal:registry:registered"
    SEAL_REFUSED = "seal:registry:refused"
    SEAL_STATUS_CHANGED = "seal:status:changed"
    # The log itself and what officers do with it.
    LEAF_READ = "audit:leaf:read"
    LEAF_REFUSED = "audit:leaf:refused"
    ENTRIES_EXPORTED = "audit:entries:exported"
    EMBARGO_ADDED = "audit:embargo:added"
    EMBARGO_LIFTED = "audit:embargo:lifted"
    HISTORY_READ = "audit:access-history:read"
    HISTORY_REFUSED = "audit:access-history:refused"
    REFUSALS_READ = "audit:refusals:read"
    REFUSALS_REFUSED = "audit:refusals:refused"
    ANSWER_WITHHELD = "audit:answer:withheld"
    # Registry, policy, console, the gateway itself.
    KEY_REVOKED = "key:department:revoked"
    KEY_REFUSED = "key:department:refused"
    KEY_REGISTERED = "key:department:registered"  # a department's next key
    KEY_RETIRED = "key:department:retired"
    KEY_CHANGE_REFUSED = "key:change:refused"  # a department's own key request refused
    GATEWAY_KEY_PUBLISHED = "key:gateway:published"  # the next key, in the JWKS ahead of use
    GATEWAY_KEY_ACTIVATED = "key:gateway:activated"  # the switch: signs from now on
    GATEWAY_KEY_RETIRED = "key:gateway:retired"  # replaced (or a next key withdrawn)
    POLICY_RELOADED = "policy:set:reloaded"
    POLICY_REFUSED = "policy:set:refused"
    CONSOLE_LOGIN = "console:login:succeeded"
    CONSOLE_LOGIN_FAILED = "console:login:failed"
    CONSOLE_LOGOUT = "console:logout:performed"
    CONSOLE_CSRF_REFUSED = "console:csrf:refused"
    ACCOUNT_ADDED = "console:account:added"
    ACCOUNT_DISABLED = "console:account:disabled"
    ACCOUNT_ENABLED = "console:account:enabled"
    ACCOUNT_RESET = "console:account:reset"
    ACCOUNT_LOCKED = "console:account:locked"
    INTERNAL_ERROR = "request:internal-error"
