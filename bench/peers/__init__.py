"""W written for the peers: a pyinfra deploy, a plain Fabric script, an Ansible playbook.

Each reads the same ``hosts.json`` the benchmark writes (path in ``$BENCH_HOSTS``
or as an argument) and checks host keys against its ``known_hosts`` file.
"""
