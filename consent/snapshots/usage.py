"""A pipeline's report of what it used from a snapshot: recorded as a decision with lineage
(bulk-loaded), or refused whole when it names anyone the snapshot does not allow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection, transaction
from django.utils import timezone

from consent.checks.gather import facts_for
from consent.checks.inputs import digest_hex
from consent.decisions.lineage import lineage_load
from consent.decisions.services import decision_audit, decision_new
from consent.errors import DeniedInSnapshot, InvalidSkew, SnapshotNotReady
from consent.models import Decision, Snapshot, Subject
from consent.skew import SkewInvalid, skew_validate
from consent.snapshots import files
from governance.actors import Actor
from governance.errors import InvalidRequest


@dataclass(frozen=True)
class UsageResult:
    decision: Decision
    used: int
    unknown: int
    withdrawn_since: int


def snapshot_usage_record(
    *,
    snapshot: Snapshot,
    actor: Actor,
    model: str,
    pseudonyms: pa.Array,
    skew: Any = None,
    now: datetime | None = None,
) -> UsageResult:
    """Records the people a pipeline used (distinct 32-byte pseudonyms of the snapshot) as a
    complete Decision with lineage, or refuses the whole upload (400 denied_in_snapshot)
    when it holds anyone the snapshot denies, or does not list while absent ids are not
    allowed. A consent skew report the pipeline computed (`skew`) is checked for the
    published, suppressed shape and kept with the decision."""
    moment = now or timezone.now()
    if skew is not None:
        try:
            skew = skew_validate(skew)
        except SkewInvalid as exc:
            raise InvalidSkew(str(exc), detail={"field": "skew"}) from None
    if snapshot.status != Snapshot.Status.READY or snapshot.expires_at <= moment:
        raise SnapshotNotReady(detail={"id": str(snapshot.id)})
    if len(pseudonyms) == 0:
        raise InvalidRequest("The upload names nobody.", detail={"field": "pseudonym"})
    used = pa.table({"pseudonym": pc.unique(pseudonyms)})
    found = used.join(files.index_read(snapshot.id), keys="pseudonym", join_type="left outer")
    allowed_col = found["allowed"]
    denied = pc.sum(pc.invert(allowed_col.fill_null(True))).as_py() or 0
    absent = found.num_rows - (pc.count(allowed_col).as_py() or 0)
    refused = denied + (0 if snapshot.default_allowed else absent)
    if refused:
        raise DeniedInSnapshot(detail={"count": refused, "denied": denied, "absent": absent})
    pks = sorted(pk for pk in found["subject_pk"].to_pylist() if pk is not None)
    digest = 0
    for block in used["pseudonym"].chunks:
        digest += sum(int.from_bytes(p, "big") for p in block.to_pylist())
    facts = facts_for(connection)
    rule = facts.purpose_rule_of(snapshot.purpose_id)
    with transaction.atomic():
        living: list[int] = []
        keys: list[str] = []
        withdrawn = 0
        for start in range(0, len(pks), 10_000):
            rows = Subject.objects.filter(pk__in=pks[start : start + 10_000]).values_list(
                "pk", "key", "erased_at"
            )
            for pk, key, erased_at in rows:
                if erased_at is not None:
                    withdrawn += 1  # erased since: denied now, and out of every lineage
                else:
                    living.append(pk)
                    keys.append(key)
        answers = facts.standings(keys, rule, at=moment, as_of=False)
        withdrawn += sum(not v.allowed for v in answers.verdicts)
        decision = decision_new(
            actor=actor,
            rule=rule,
            data_use=snapshot.data_use,
            as_of=snapshot.as_of,
            at=snapshot.as_of,
            mode="snapshot",
            lineage=True,
            now=moment,
        )
        decision.status = Decision.Status.COMPLETE
        decision.model = model
        decision.snapshot = snapshot
        decision.skew = skew
        decision.total = decision.allowed_count = used.num_rows
        decision.denied_count = 0
        decision.id_set_digest = digest_hex(digest % (1 << 256))
        decision.save(force_insert=True)
        lineage_load(decision_id=decision.id, subject_pks=living)
        decision_audit(actor, decision, rule.key)
    return UsageResult(
        decision=decision,
        used=used.num_rows,
        unknown=absent,
        withdrawn_since=withdrawn,
    )
