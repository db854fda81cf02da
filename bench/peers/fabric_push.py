"""W as a plain Fabric script: per file `sha256sum`, put when it differs; `true` if anything changed.

    python fabric_push.py hosts.json

One Connection per host, hosts in threads. Host keys: the benchmark's
known_hosts is loaded and unknown keys are rejected (Fabric's default would be
AutoAddPolicy). Nothing else is tuned: this is the script a user writes first.
"""

import hashlib
import io
import json
import posixpath
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor

import jinja2
import paramiko
from fabric import Connection


def main(path):
    described = json.load(open(path))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(described["templates"]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    with ThreadPoolExecutor(max_workers=len(described["hosts"])) as pool:
        jobs = [pool.submit(push, host, described, env) for host in described["hosts"]]
        failures = [job.exception() for job in jobs if job.exception()]
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def push(host, described, env):
    conn = Connection(host["address"], user="root", port=host["port"],
                      connect_kwargs={"key_filename": described["client_key"], "look_for_keys": False,
                                      "allow_agent": False})
    conn.client.load_host_keys(described["known_hosts"])
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with conn:
        changed = False
        for template, relative in described["files"]:
            content = env.get_template(template).render(**host["vars"]).encode()
            changed |= put_if_changed(conn, f"{host['root']}/{relative}", content)
        if changed:
            conn.run(described["apply_command"], hide=True)


def put_if_changed(conn, path, content):
    quoted = shlex.quote(path)
    current = conn.run(f"sha256sum -- {quoted} 2>/dev/null || true", hide=True).stdout.split()
    if current and current[0] == hashlib.sha256(content).hexdigest():
        return False
    conn.run(f"mkdir -p -- {shlex.quote(posixpath.dirname(path))}", hide=True)
    conn.put(io.BytesIO(content), path)
    conn.run(f"chmod 644 -- {quoted} && chown root:root -- {quoted}", hide=True)
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
