"""Governance: the audit trail, retention and purge, subject export/erasure, encryption at rest.

    audit = AuditLog(store)                                   # sightline.governance.audit
    audit.record("alice", "search.photo", reason="case 17")

Submodules are imported where used (``from sightline.governance.audit import AuditLog``); this package
does no work at import.
"""
