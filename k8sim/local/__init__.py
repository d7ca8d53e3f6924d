"""The tooling that builds and runs the simulator on one machine.

Go builds of the control plane (:mod:`.build`), kwokctl's folders and configuration (:mod:`.layout`,
over the library's :mod:`k8sim.topology`), the cluster's lifecycle through kwokctl (:mod:`.cluster`),
PostgreSQL and Redis from Debian's packages (:mod:`.services`), the process supervisor of ``make run``
(:mod:`.supervisor`) and the command line (:mod:`.cli`). The library (``k8sim``) never imports from
here (an import-linter contract in pyproject.toml holds it); a simulator running inside a real
cluster (the Helm chart) needs none of it.
"""
