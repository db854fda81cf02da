"""vmstation: an SSH provisioning engine for a two-cluster Kubernetes homelab.

Kept empty on purpose: `vmstation --help` must start fast, so nothing heavy is
imported here. Import the concept you need from its own module.
"""

__version__ = "0.1.0"
