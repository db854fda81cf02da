"""pyinfra deploy for W: files.template per file, then `true` only if one of them changed."""

import json
import os

from pyinfra import host
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

_described = json.load(open(os.environ["BENCH_HOSTS"]))

placed = [
    files.template(
        name=f"template {path}",
        src=os.path.join(_described["templates"], template),
        dest=f"{host.data.root}/{path}",
        user="root",
        group="root",
        mode="644",
        **host.data.template_vars,
    )
    for template, path in _described["files"]
]

server.shell(name="apply sysctl settings", commands=[_described["apply_command"]], _if=any_changed(*placed))
