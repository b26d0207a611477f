"""Staff roles as Django groups, defined once here.

A data migration creates the groups and `roles_sync` (run after every `migrate`, and by
`python manage.py sync_roles`) sets each group's permissions to exactly what this module
says, so a permission added later (a new model, a custom `Meta.permissions` entry) reaches
the roles that cover it. Edit the roles here, not in the admin: a migrate puts the groups
back as written. Admin actions that change data need the model's change permission
(governance.admin_site), so a view-only role sees rows but cannot act on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps as global_apps
from django.db.models import Q

# The service's own apps (third-party ones hold sign-in attempts, schedules and users).
SERVICE_APPS = ("consent", "retention", "governance")


@dataclass(frozen=True)
class Grant:
    """Permissions by content type: `apps` None means every app, `models` None every model
    of those apps, `actions` None every permission (custom ones like `export_person`
    included), else only the named ones (`view`, `add`, `change`, `delete`)."""

    apps: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    actions: tuple[str, ...] | None = None

    def q(self) -> Q:
        q = Q()
        if self.apps is not None:
            q &= Q(content_type__app_label__in=self.apps)
        if self.models is not None:
            q &= Q(content_type__model__in=self.models)
        if self.actions is not None:
            by_action = Q(pk__in=[])
            for action in self.actions:
                by_action |= Q(codename__startswith=f"{action}_")
            q &= by_action
        return q


VIEW_EVERYTHING = Grant(actions=("view",))

ROLES: dict[str, tuple[Grant, ...]] = {
    # Everything in the service: purposes, policies, requests, keys, webhooks, exports;
    # and sees users, groups and the rest. Managing staff accounts stays with superusers.
    "Privacy officer": (Grant(apps=SERVICE_APPS), VIEW_EVERYTHING),
    # Finds a person, sees their consent states and history, opens rights requests, and
    # sees the request counts on the dashboard. No exports, no edits of purposes or
    # policies, no reports. Nor restriction or rectification: restricting stops every use
    # of the person's data and rests on a legal ground the officer weighs (Art. 18(1)),
    # and a wrong rectification hands one person's record to another identifier; support
    # opens a request and the officer decides. A check's `restricted` reason still shows
    # on the person page. Nor lakehouse snapshots or imports: they are pipelines' and
    # migrations' bulk work, not one person's (officers see and act, auditors see).
    "Support": (
        Grant(
            apps=("consent",),
            models=("subject", "consentstate", "consentevent", "purpose"),
            actions=("view",),
        ),
        Grant(
            apps=("retention",),
            models=("erasurerequest", "accessrequest"),
            actions=("view", "add"),
        ),
    ),
    # Read-only, the audit trail, restriction periods and the dashboard's reports included.
    "Auditor": (VIEW_EVERYTHING,),
}


def role_permissions(grants: tuple[Grant, ...], *, apps: Any = global_apps, using: str) -> Any:
    """The permissions a role's grants cover, as a queryset."""
    permission = apps.get_model("auth", "Permission")
    q = Q(pk__in=[])
    for grant in grants:
        q |= grant.q()
    return permission.objects.using(using).filter(q)


def roles_sync(*, apps: Any = global_apps, using: str = "default") -> dict[str, int]:
    """Creates the role groups and sets their permissions as ROLES says; how many each has.

    Takes `apps` so the data migration can run it on the historical models.
    """
    group_model = apps.get_model("auth", "Group")
    counts = {}
    for name, grants in ROLES.items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        permissions = list(role_permissions(grants, apps=apps, using=using))
        group.permissions.set(permissions)
        counts[name] = len(permissions)
    return counts
