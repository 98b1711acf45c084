"""The quarterly once-only report (按季度通报): what citizens and companies no longer had to
bring, computed from the audit log alone at a signed checkpoint, and verifiable from it."""
