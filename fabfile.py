"""`fab` tasks: the `vmstation` commands for hands used to Fabric (`fab --list`, `fab deploy-debian --plan`).

The tasks come from the installed package, so this file is the same one `vmstation init` writes into a
homelab directory. Invoke turns deploy_debian into `fab deploy-debian`; a group's commands are dotted
(`fab inventory.check`).
"""

from vmstation.fab_tasks import ns  # noqa: F401  (Invoke looks for `ns`)
