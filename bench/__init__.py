"""The benchmark: workload W pushed by vmstation, pyinfra, a plain Fabric script and ansible-core.

``python -m bench.run`` (``make bench``) brings up N sshd hosts in network
namespaces, runs W with each tool as a separate process (first run and no-op
run, alternating tools), checks every tool left byte-identical files, counts the
SSH connections and commands each tool sent per host (from sshd's own log), and
writes a Markdown table and the raw figures. See bench/README.md.
"""
