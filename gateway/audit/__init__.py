"""The audit log: one durable entry for every request, written before any answer leaves.

:class:`AuditEntry` is what an entry says; :class:`AuditLog` is the protocol the lookup path
writes through; :class:`GroupCommitAuditLog` makes entries durable in batches (many requests
share one transaction and one fsync) and tells each request its entry's index.
"""

from gateway.audit.entry import AuditEntry, Outcome, SubjectHasher
from gateway.audit.log import AuditLog, GroupCommitAuditLog

__all__ = ["AuditEntry", "AuditLog", "GroupCommitAuditLog", "Outcome", "SubjectHasher"]
