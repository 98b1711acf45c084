"""What security officers and citizens build on the audit log: search and export, alerts,
embargoes and the access history of a subject (the log itself is :mod:`gateway.audit`)."""
