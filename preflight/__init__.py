"""The cloud checks: can this cloud deploy one stack, or a whole class, as configured?

No Pulumi here: the program runs them before declaring its first resource
(targets/preflight_run.py) and the `lab` command runs the same ones over a class
(`lab class preview`). One job per module:

- `connection`: open the connection the way the OpenStack provider would (clouds.yaml and
  OS_CLOUD, OS_* variables, or `openstack:*` provider settings), and turn authentication and
  connection failures into one `CloudUnreachable` naming the cloud, the user and the auth URL;
- `reading`: `read_cloud(conn)` reads, with one call per kind, what the project and user can
  see (images, flavors, networks, key pairs, the lab's resources by student tag, quotas and
  usage) into a `facts.CloudFacts` snapshot;
- `checks`: `check(facts, stacks)` is pure: it compares that snapshot with the stacks'
  configurations and returns every problem at once, each naming the config key to change, the
  stacks concerned and what exists instead, plus a quota table (resource, need, free).
"""
