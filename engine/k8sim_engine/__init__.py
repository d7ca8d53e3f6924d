"""The monitoring engine: synthesises metrics for every running pod, exports them for
Prometheus, publishes snapshots through Redis and records SLA samples in PostgreSQL.

Run with ``python -m k8sim_engine`` (port 6381 by default).
"""
