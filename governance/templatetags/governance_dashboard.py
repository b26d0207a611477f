"""`{% dashboard_panels as panels %}` for the admin index (governance.dashboard)."""

from __future__ import annotations

from django import template

from governance import dashboard

register = template.Library()


@register.simple_tag
def dashboard_panels() -> list[dashboard.Panel]:
    return dashboard.dashboard_panels()
