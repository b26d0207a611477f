"""Every write of retention, one module per sub-domain:

- `policies`: retention policies (validation against the registry, create, update, seeding);
- `holds`: legal holds on a subject or a policy;
- `lease`: the lease that keeps two enforcement runs from overlapping;
- `enforcement`: a run over the policies (each target's `count` / `purge`), and queuing one;
- `propagation`: a withdrawal's reach into the targets tied to its purpose;
- `rights`: erasure and access requests, their sweeper and the replay after a restore;
- `rekey`: an identifier rectification's reach into retention (holds, requests, external
  and lake tables).

Deletion follows the restartable pattern: pick a chunk by a predicate, remove it in its own
short transaction, record progress, go on; a row already gone is done.
"""

from governance.actors import Actor

# Who the audit trail names for what retention does by itself.
SYSTEM = Actor.system("retention")
