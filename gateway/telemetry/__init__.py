"""What operators watch: request ids, the access log, Prometheus metrics (docs/monitoring.md)."""
