"""`{% dashboard_panels request.user as panels %}` for the admin index (governance.dashboard):
the panels this staff user's permissions cover."""

from __future__ import annotations

from typing import Any

from django import template

from governance import dashboard

register = template.Library()


@register.simple_tag
def dashboard_panels(user: Any) -> list[dashboard.Panel]:
    return dashboard.dashboard_panels(user=user)
