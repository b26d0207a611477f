"""The Person pages of the admin, mounted on the Subject admin (PersonAdminMixin): find a
person by exact identifier, see their whole record, act through the services, download it.

Every page that shows a decrypted identifier or a person's history leaves an audit row
(governance.admin_audit.staff_access_audit). Permissions checked, so that roles map to
them: consent.view_subject (find, the page), consent.view_consentevent (history,
receipts), consent.view_decision (decisions), consent.export_person (downloads), and each
action's own (PersonAction.permission).
"""

from __future__ import annotations

import io
import json
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers

from consent import identity
from consent.crypto_display import identifier_or_erased
from consent.models import Subject
from consent.person import selectors
from consent.person.registry import (
    PersonAction,
    PersonActionForm,
    PersonSection,
    person_action_get,
    person_action_register,
    person_actions,
    person_section_register,
    person_sections,
)
from consent.person.services import person_withdraw_all
from consent.receipts import receipt_signed
from consent.rectification import subject_rectify
from consent.restriction.selectors import restriction_open, restriction_periods
from consent.restriction.services import MAX_REASON_LENGTH, restriction_lift, restriction_place
from consent.selectors import receipt_get, subject_identifier
from governance.actors import Actor
from governance.admin_audit import staff_access_audit
from governance.csv import csv_dict_writer
from governance.errors import DomainError

VIEW_HISTORY = "consent.view_consentevent"
VIEW_DECISIONS = "consent.view_decision"
EXPORT_PERSON = "consent.export_person"


def _person_url(subject: Subject) -> str:
    return reverse("admin:person_detail", args=[subject.pk])


def _private(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)
    return response


class PersonAdminMixin:
    """Adds the Person views to a ModelAdmin of Subject (their URLs come first)."""

    admin_site: Any
    model: Any

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("person/", wrap(self.person_find_view), name="person_find"),
            path(
                "person/receipt/<uuid:receipt_id>/",
                wrap(self.person_receipt_view),
                name="person_receipt",
            ),
            path(
                "person/<int:pk>/action/<slug:action>/",
                wrap(self.person_action_view),
                name="person_action",
            ),
            path(
                "person/<int:pk>/record.<str:fmt>",
                wrap(self.person_download_view),
                name="person_download",
            ),
            path("person/<str:ref>/", wrap(self.person_detail_view), name="person_detail"),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "namespaces": Subject.Namespace.choices,
            **extra,
        }

    def _require(self, request: HttpRequest, *perms: str) -> None:
        if not self.has_view_permission(request) or not request.user.has_perms(perms):  # type: ignore[attr-defined]
            raise PermissionDenied

    def person_find_view(self, request: HttpRequest) -> HttpResponse:
        self._require(request)
        q = request.GET.get("q", "")
        namespace = request.GET.get("namespace") or None
        results: list[Subject] = []
        error = ""
        if namespace is not None and namespace not in Subject.Namespace.values:
            error, namespace = "Unknown namespace.", None
        elif q:
            try:
                results = selectors.person_find(identifier=q, namespace=namespace)
            except DomainError as exc:
                error = exc.message
            else:
                staff_access_audit(
                    request,
                    action="admin.find",
                    what="person",
                    subject_key=identity.subject_key(q),
                    detail={"namespace": namespace or "any", "found": len(results)},
                )
                if len(results) == 1:
                    return HttpResponseRedirect(_person_url(results[0]))
        context = self._context(
            request,
            "Find a person",
            q=q,
            namespace=namespace or "",
            results=results,
            searched=bool(q) and not error,
            error=error,
        )
        return _private(TemplateResponse(request, "admin/consent/person/find.html", context))

    def person_detail_view(self, request: HttpRequest, ref: str) -> HttpResponse:
        self._require(request)
        subject = selectors.person_get(ref=ref, namespace=request.GET.get("namespace"))
        if subject is None:
            raise Http404("No such person.")
        user: Any = request.user
        page = request.GET.get("page", 1)
        staff_access_audit(
            request,
            what="person",
            subject_key=subject.key,
            target_id=str(subject.pk),
            detail={"namespace": subject.namespace, "page": str(page)},
        )
        can_history = user.has_perm(VIEW_HISTORY)
        context = self._context(
            request,
            "Person",
            subject=subject,
            identifier=identifier_or_erased(subject),
            statuses=selectors.person_statuses(subject=subject),
            can_history=can_history,
            history=selectors.person_history(subject=subject, page=page) if can_history else None,
            chain=selectors.person_chain(subject=subject) if can_history else None,
            links=selectors.person_links(subject=subject),
            decisions=(
                selectors.person_decisions(subject=subject)
                if user.has_perm(VIEW_DECISIONS)
                else None
            ),
            notes=selectors.person_notes(subject=subject),
            sections=[
                (section, section.context(subject))
                for section in person_sections()
                if user.has_perm(section.permission)
            ],
            actions=[
                a
                for a in person_actions()
                if user.has_perm(a.permission)
                and subject.identifier_encrypted is not None
                and a.applies(subject)
            ],
            can_export=user.has_perm(EXPORT_PERSON),
        )
        return _private(TemplateResponse(request, "admin/consent/person/detail.html", context))

    def person_action_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        self._require(request)
        act = person_action_get(action)
        if act is None:
            raise Http404("No such action.")
        if not request.user.has_perm(act.permission):  # type: ignore[union-attr]
            raise PermissionDenied
        subject = get_object_or_404(Subject, pk=pk)
        identifier = subject_identifier(subject)
        if identifier is None:
            messages.error(request, "This person was erased: nothing can be done for them here.")
            return HttpResponseRedirect(_person_url(subject))
        confirming = False
        if request.method == "POST":
            form = act.form(request.POST, subject=subject)
            if form.is_valid():
                if act.confirm and request.POST.get("confirmed") != "yes":
                    confirming = True
                else:
                    try:
                        done = act.run(
                            subject, identifier, form.cleaned_data, Actor.for_staff(request.user)
                        )
                    except DomainError as exc:
                        form.add_error(None, exc.message)
                    else:
                        messages.success(request, done)
                        return HttpResponseRedirect(_person_url(subject))
        else:
            form = act.form(subject=subject)
        context = self._context(
            request, act.label, subject=subject, action=act, form=form, confirming=confirming
        )
        return _private(TemplateResponse(request, "admin/consent/person/action.html", context))

    def person_download_view(self, request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
        self._require(request, EXPORT_PERSON)
        if fmt not in ("json", "csv"):
            raise Http404("JSON or CSV.")
        subject = get_object_or_404(Subject, pk=pk)
        staff_access_audit(
            request,
            action="admin.download",
            what="person_record",
            subject_key=subject.key,
            target_id=str(subject.pk),
            detail={"format": fmt},
        )
        if fmt == "json":
            record = selectors.person_record(subject=subject)
            for section in person_sections():
                if section.export is not None:
                    record[section.key] = section.export(subject)
            body = json.dumps(record, cls=DjangoJSONEncoder, indent=2)
            response = HttpResponse(body, content_type="application/json")
        else:
            response = HttpResponse(_history_csv(subject), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="person-{subject.pk}.{fmt}"'
        return _private(response)

    def person_receipt_view(self, request: HttpRequest, receipt_id: Any) -> HttpResponse:
        self._require(request, VIEW_HISTORY)
        events, context = receipt_get(receipt_id=receipt_id)
        if not events:
            raise Http404("No receipt with that id.")
        subject = events[0].subject
        staff_access_audit(
            request,
            what="receipt",
            subject_key=subject.key,
            target_id=str(receipt_id),
        )
        receipt = receipt_signed(
            events=events, context=context, subject_id=subject_identifier(subject)
        )
        return _private(JsonResponse(receipt, json_dumps_params={"indent": 2}))


def _history_csv(subject: Subject) -> str:
    """The person's history as CSV, one row per event, oldest first, each row naming them."""
    chain = selectors.person_chain(subject=subject)
    out = io.StringIO()
    writer = csv_dict_writer(out, ["identifier", "namespace", *selectors.HISTORY_COLUMNS])
    writer.writeheader()
    identifier = identifier_or_erased(subject)
    for row in selectors.person_history_rows(subject=subject, chain=chain):
        writer.writerow({"identifier": identifier, "namespace": subject.namespace, **row})
    return out.getvalue()


# --- consent's own actions ------------------------------------------------------------------


class WithdrawAllForm(PersonActionForm):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="How the person asked, and anything else to keep with the withdrawal "
        "(stored encrypted).",
    )


def _withdraw_all(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    result = person_withdraw_all(
        subject=subject, identifier=identifier, note=data["note"], actor=actor
    )
    if not result.events:
        return "Nothing was granted: no consent to withdraw (the note is kept)."
    return f"Withdrawn: {', '.join(e.purpose.key for e in result.events if e.purpose)}."


person_action_register(
    PersonAction(
        key="withdraw_all",
        label="Withdraw all consent",
        permission="consent.add_consentevent",
        form=WithdrawAllForm,
        run=_withdraw_all,
        confirm="Every standing grant of this person is withdrawn now; checks deny at once "
        "and withdrawals start deletion where a policy is tied to the purpose.",
        order=10,
    )
)


# --- restriction of processing (Art. 18) ----------------------------------------------------


class RestrictionReasonForm(PersonActionForm):
    reason = forms.CharField(
        max_length=MAX_REASON_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="The ground under Art. 18(1): contested accuracy, unlawful processing, "
        "kept for a legal claim, objection pending (stored encrypted).",
    )


def _restrict(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    restriction_place(
        subject_id=identifier, namespace=subject.namespace, reason=data["reason"], actor=actor
    )
    return "Processing restricted: every check denies with reason 'restricted' until lifted."


def _restriction_lift(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    restriction_lift(subject_id=identifier, namespace=subject.namespace, actor=actor)
    return "Restriction lifted: checks answer from the person's consent again."


person_action_register(
    PersonAction(
        key="restrict",
        label="Restrict processing",
        permission="consent.add_restriction",
        form=RestrictionReasonForm,
        run=_restrict,
        order=50,
        applies=lambda subject: restriction_open(subject=subject) is None,
    )
)
person_action_register(
    PersonAction(
        key="restriction_lift",
        label="Lift the restriction",
        permission="consent.change_restriction",
        form=PersonActionForm,
        run=_restriction_lift,
        confirm="Once lifted, checks allow processing again where consent or another legal "
        "basis stands, and purges held back for this person resume.",
        order=51,
        applies=lambda subject: restriction_open(subject=subject) is not None,
    )
)
person_section_register(
    PersonSection(
        key="restrictions",
        title="Restrictions of processing (Art. 18)",
        template="admin/consent/person/restrictions.html",
        context=lambda subject: {"periods": restriction_periods(subject=subject)},
        permission="consent.view_restriction",
        order=50,
        export=lambda subject: restriction_periods(subject=subject),
    )
)


# --- identifier rectification (Art. 16) -----------------------------------------------------


class RectifyForm(PersonActionForm):
    new_subject_id = forms.CharField(
        label="New identifier",
        strip=False,  # identifiers are compared exactly, spaces included
        help_text="The correct identifier, exactly as the product will send it.",
    )


def _rectify(subject: Subject, identifier: str, data: dict[str, Any], actor: Actor) -> str:
    subject_rectify(
        subject_id=identifier,
        namespace=subject.namespace,
        new_subject_id=data["new_subject_id"],
        actor=actor,
    )
    return "Identifier changed: the former one now answers like one never seen."


person_action_register(
    PersonAction(
        key="rectify",
        label="Change the identifier",
        permission="consent.change_subject",
        form=RectifyForm,
        run=_rectify,
        confirm="The person's record, holds and requests move to the new identifier; the "
        "former one then answers like one never seen, and stores registered for re-keying "
        "are told.",
        order=60,
    )
)
