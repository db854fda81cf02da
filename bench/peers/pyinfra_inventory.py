"""pyinfra inventory for W: every host of ``$BENCH_HOSTS``, root by key, host keys checked strictly."""

import json
import os

_described = json.load(open(os.environ["BENCH_HOSTS"]))

hosts = [
    (h["address"], {
        "ssh_user": "root",
        "ssh_port": h["port"],
        "ssh_key": _described["client_key"],
        "ssh_known_hosts_file": _described["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "root": h["root"],
        "template_vars": h["vars"],
    })
    for h in _described["hosts"]
]
