"""Retention targets: what a policy may govern, one class per kind, each with `count` and
`purge` (a policy's run), `subject_remove` / `subject_rows` (a person's rights) and `settle`
(deleting what removals left on storage once `settle_after` has passed: lake tables).

- `base`: the interface (`Target`) and what a run hands it (`Sweep`) and gets back (`Tally`);
- `rows`: rows of one of this service's models (`ModelRows`), and the audit trail, whose
  deletes go through a guard (`GuardedRows`);
- `ledger`: whole consent histories, through the ledger's purge path (`SubjectHistory`);
- `external`: a table in a configured external database (`ExternalTable`);
- `lake`: a Delta table in the lake, through delta-rs (`DeltaTable`).
`retention.registry` lists the targets of this service and reads the configured ones.
"""
