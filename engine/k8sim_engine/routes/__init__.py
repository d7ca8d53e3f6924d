"""The engine's routes, one module per face: ``status`` (/metrics, /health, /snapshot on the engine
port) and, for the aggregated API server kube-aggregator calls, ``probes`` (health and discovery),
``resource_metrics`` (metrics.k8s.io), ``custom_metrics`` and ``external_metrics``."""
