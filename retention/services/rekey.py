"""An identifier rectification's reach into retention: legal holds and rights requests move
to the new key in the rectification's own transaction (registered with consent at startup),
and a task re-keys the registered tables that live elsewhere (other databases, the lake)."""

from __future__ import annotations

from consent import identity
from consent.models import SubjectKeyChange
from consent.rectification import SubjectRekeyed
from governance.audit import audit_record
from governance.queue import task_queue_on_commit
from retention.models import AccessRequest, ErasureRequest, LegalHold
from retention.registry import targets
from retention.services import SYSTEM
from retention.targets.base import SubjectRef

REKEY_EXTERNAL_TASK = "retention.external_tables_rekey"


def retention_subject_rekey(rekeyed: SubjectRekeyed) -> None:
    """Inside the rectification's transaction, under the subject's lock."""
    old, new, namespace = rekeyed.old_key, rekeyed.new_key, rekeyed.namespace
    LegalHold.objects.filter(subject_key=old, namespace=namespace).update(subject_key=new)
    AccessRequest.objects.filter(subject_key=old, namespace=namespace).update(subject_key=new)
    erasures = list(ErasureRequest.objects.filter(subject_key=old, namespace=namespace))
    for request in erasures:
        request.subject_key = new
        if request.identifier_encrypted is not None:
            # Its associated data is the key: the (rectified) identifier goes under the new one.
            request.identifier_encrypted = identity.encrypt_identifier(
                rekeyed.new_identifier, key=new
            )
    ErasureRequest.objects.bulk_update(erasures, ["subject_key", "identifier_encrypted"])
    task_queue_on_commit(REKEY_EXTERNAL_TASK, key_change_id=rekeyed.key_change_id)


def external_tables_rekey(*, key_change_id: int) -> int:
    """Re-keys the subject's rows in every registered target that lives outside this
    service's transaction (external tables, lake tables); how many rows changed, recorded in
    the audit trail per target. Safe to run twice (the second finds none, records nothing),
    and a change erased since is nothing left to do.

    The rows move to the key (and identifier) in force now, not necessarily the change's
    own: should a later rectification's task run first, this one still lands the rows on
    the subject's current name rather than on one already left behind."""
    change = SubjectKeyChange.objects.filter(pk=key_change_id).select_related("subject").first()
    if change is None:
        return 0
    person = change.subject
    identifier = identity.decrypt_identifier(person.identifier_encrypted, key=person.key)
    if identifier is None:  # being erased: the erasure reaches the former keys itself
        return 0
    ref = SubjectRef(key=change.old_key, namespace=person.namespace, pk=person.pk)
    changed: dict[str, int] = {}
    for target in targets().values():
        count = target.subject_rekey(ref, new_key=person.key, new_identifier=identifier)
        if count:
            changed[target.name] = count
    if changed:
        audit_record(
            actor=SYSTEM,
            action="retention.subject_rekey",
            target_type="subject_key_change",
            target_id=str(change.pk),
            # Keys only, as the rectification's own audit row.
            detail={
                "subject_key": person.key,
                "old_subject_key": change.old_key,
                "rekeyed": changed,
            },
        )
    return sum(changed.values())
