"""k8s-simulator's shared domain code: settings, what the cluster is made of, manifests, the store.

The API (``k8sim_api``), the operator (``k8sim_operator``) and the monitoring engine
import from here and never from each other.
"""
