"""The Kopf operator: records every object's lifecycle in PostgreSQL and plays the
cluster add-ons a real cluster has (volume provisioning, load-balancer addresses).

Run as production does: ``kopf run -m k8sim_operator.handlers --all-namespaces --standalone``.
"""
