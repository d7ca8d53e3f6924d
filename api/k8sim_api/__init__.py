"""The simulator's HTTP API: the ECP-AI contract (../shared/CONTRACT.md) over the real cluster.

Run with ``python -m k8sim_api`` (port 6360 by default).
"""
