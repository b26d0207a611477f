"""What the Person page shows and offers, as two ordered lists that any app extends.

consent registers its own sections and actions (consent/person/admin.py); retention adds
rights requests and legal holds from retention/person_admin.py, since consent never imports
retention. A section is a template fragment with its context; an action is a form run
through an existing service, shown only to staff with its permission.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms

from consent.models import Subject
from governance.actors import Actor


class PersonActionForm(forms.Form):
    """An action's form: it knows the person it acts for (to offer their holds, say)."""

    def __init__(self, *args: Any, subject: Subject, **kwargs: Any) -> None:
        self.subject = subject
        super().__init__(*args, **kwargs)


@dataclass(frozen=True)
class PersonSection:
    key: str
    title: str
    template: str
    # The fragment's context for this person (keys as the template reads them).
    context: Callable[[Subject], dict[str, Any]]
    # The Django permission ("app.codename") a staff user needs to see it.
    permission: str
    # Lower first; consent's own sections use 10, 20, ... so others fit between.
    order: int = 100
    # Its part of the downloaded JSON record, under `key`; None: not in the record.
    export: Callable[[Subject], Any] | None = None


@dataclass(frozen=True)
class PersonAction:
    key: str
    label: str
    permission: str
    form: type[PersonActionForm]
    # Runs the service for (subject, its identifier, the form's cleaned data, the staff
    # actor) and returns the message shown after it.
    run: Callable[[Subject, str, dict[str, Any], Actor], str]
    # Destructive actions name what they do here; a confirmation step shows it first.
    confirm: str = ""
    order: int = 100
    # Whether the action applies to this person now (e.g. a hold to lift exists).
    applies: Callable[[Subject], bool] = lambda subject: True


_SECTIONS: dict[str, PersonSection] = {}
_ACTIONS: dict[str, PersonAction] = {}


def person_section_register(section: PersonSection) -> None:
    _SECTIONS[section.key] = section


def person_action_register(action: PersonAction) -> None:
    _ACTIONS[action.key] = action


def person_sections() -> list[PersonSection]:
    return sorted(_SECTIONS.values(), key=lambda s: (s.order, s.key))


def person_actions() -> list[PersonAction]:
    return sorted(_ACTIONS.values(), key=lambda a: (a.order, a.key))


def person_action_get(key: str) -> PersonAction | None:
    return _ACTIONS.get(key)
