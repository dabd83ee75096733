"""testcloud: a throwaway OpenStack control plane on 127.0.0.1 for tests and demos.

Installs MariaDB and RabbitMQ from Debian and Keystone, Placement, Glance, Neutron (ML2 with
no agents, ports bound by our own mechanism driver) and Nova (fake compute driver) into a
virtualenv, then starts, bootstraps, seeds and stops them. Everything it owns (virtualenv,
configuration, databases, logs, credentials) lives under
``${CALCLAB_CACHE:-$HOME/.cache/calculator-lab}/testcloud``; nothing is written to /etc.

One module per concern:

- ``core``: where things live (``Layout``), the loopback addresses and ports, messages.
- ``install``: apt packages, the virtualenv, our ML2 driver.
- ``configs``: every service's configuration file (configparser), generated credentials,
  the clients' clouds.yaml and openrc files.
- ``processes``: the table of processes and how each is started, checked and stopped,
  through the shared supervisor ``tools/procsup``.
- ``bootstrap``: databases, schema migrations, Keystone's bootstrap, waiting for the
  compute host; ``catalog`` (in the virtualenv) creates the service users and endpoints.
- ``seeding`` (in the virtualenv): what the calculator-lab stacks expect, and ``reset``.
- ``api``: runs ``catalog`` and ``seeding`` steps with the virtualenv's Python.
- ``cli``: the ``testcloud`` command.

Everything but ``catalog`` and ``seeding`` runs on the system Python with the standard library
only, because it has to work before the virtualenv exists.
"""
