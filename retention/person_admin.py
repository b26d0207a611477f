"""Retention's part of the admin's Person page: the person's rights requests and legal
holds, and the actions that open requests and place or lift holds."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from consent.models import Subject
from consent.person.registry import (
    PersonAction,
    PersonActionForm,
    PersonSection,
    person_action_register,
    person_section_register,
)
from governance.actors import Actor
from governance.api.common import iso
from retention.models import (
    AccessRequest,
    ErasureRequest,
    LegalHold,
)
from retention.services import holds, rights

# --- the Person page's rights requests and legal holds (consent/person/registry.py) -------


def _requests_of(model: Any, subject: Subject) -> dict[str, Any]:
    found = model.objects.filter(subject_key=subject.key, namespace=subject.namespace)
    return {
        "requests": list(found.order_by("-created_at")),
        "change_url": f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
        "now": timezone.now(),
    }


def _requests_export(model: Any) -> Any:
    def export(subject: Subject) -> list[dict[str, Any]]:
        return [
            {
                "id": str(r.pk),
                "status": r.status,
                "created_at": iso(r.created_at),
                "due_at": iso(r.due_at),
                "extended_at": iso(r.extended_at),
                "completed_at": iso(r.completed_at),
            }
            for r in _requests_of(model, subject)["requests"]
        ]

    return export


def _holds_of(subject: Subject) -> QuerySet[LegalHold]:
    return LegalHold.objects.filter(subject_key=subject.key).order_by("-created_at")


person_section_register(
    PersonSection(
        key="erasure_requests",
        title="Erasure requests",
        template="admin/retention/person/requests.html",
        context=lambda subject: _requests_of(ErasureRequest, subject),
        permission="retention.view_erasurerequest",
        order=60,
        export=_requests_export(ErasureRequest),
    )
)
person_section_register(
    PersonSection(
        key="access_requests",
        title="Access requests",
        template="admin/retention/person/requests.html",
        context=lambda subject: _requests_of(AccessRequest, subject),
        permission="retention.view_accessrequest",
        order=61,
        export=_requests_export(AccessRequest),
    )
)
person_section_register(
    PersonSection(
        key="legal_holds",
        title="Legal holds",
        template="admin/retention/person/holds.html",
        context=lambda subject: {"holds": list(_holds_of(subject))},
        permission="retention.view_legalhold",
        order=70,
        export=lambda subject: [
            {
                "id": h.pk,
                "reason": h.reason,
                "created_by": h.created_by,
                "created_at": iso(h.created_at),
                "released_at": iso(h.released_at),
            }
            for h in _holds_of(subject)
        ],
    )
)


class VerificationNoteForm(PersonActionForm):
    verification_note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="How the requester's identity was verified (stored encrypted).",
    )


def _open_request(kind: str) -> Any:
    create = rights.erasure_request_create if kind == "erasure" else rights.access_request_create

    def run(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
        created = create(
            subject_id=identifier,
            namespace=subject.namespace,
            verification_note=data["verification_note"],
            actor=actor,
        )
        return f"{kind.title()} request {created.pk} opened, due {created.due_at:%Y-%m-%d}."

    return run


class HoldPlaceForm(PersonActionForm):
    reason = forms.CharField(max_length=500, help_text="Why the data must be kept.")


class HoldLiftForm(PersonActionForm):
    hold = forms.ModelChoiceField(queryset=LegalHold.objects.none())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["hold"].queryset = _holds_of(self.subject).filter(  # type: ignore[attr-defined]
            released_at__isnull=True
        )


def _hold_place(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    hold = holds.hold_place(
        reason=data["reason"], actor=actor, subject_id=identifier, namespace=subject.namespace
    )
    return f"Legal hold {hold.pk} placed."


def _hold_lift(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    holds.hold_release(hold=data["hold"], actor=actor)
    return f"Legal hold {data['hold'].pk} lifted."


person_action_register(
    PersonAction(
        key="erasure_request",
        label="Open an erasure request",
        permission="retention.add_erasurerequest",
        form=VerificationNoteForm,
        run=_open_request("erasure"),
        confirm="An erasure removes this person's data from every registered store and "
        "cannot be undone once it has run.",
        order=30,
    )
)
person_action_register(
    PersonAction(
        key="access_request",
        label="Open an access request",
        permission="retention.add_accessrequest",
        form=VerificationNoteForm,
        run=_open_request("access"),
        order=31,
    )
)
person_action_register(
    PersonAction(
        key="hold_place",
        label="Place a legal hold",
        permission="retention.add_legalhold",
        form=HoldPlaceForm,
        run=_hold_place,
        order=40,
    )
)
person_action_register(
    PersonAction(
        key="hold_lift",
        label="Lift a legal hold",
        permission="retention.change_legalhold",
        form=HoldLiftForm,
        run=_hold_lift,
        confirm="Once lifted, purges and erasure may remove the data the hold kept.",
        order=41,
        applies=lambda subject: _holds_of(subject).filter(released_at__isnull=True).exists(),
    )
)
