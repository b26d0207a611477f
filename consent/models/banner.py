"""Banners: properties with their publishable keys and texts, device-to-account links, and
how often a banner asked (consent.banner, consent.reports)."""

from __future__ import annotations

from django.db import models

from consent.models.core import Purpose, Subject


class Property(models.Model):
    """A website or app that shows a consent banner, bound to one publishable key.

    The property points at its key (an ApiClient of kind publishable): the key knows nothing
    of properties, so the dependency points from consent/ toward governance/.
    """

    name = models.CharField(max_length=120, unique=True)
    api_client = models.OneToOneField(
        "governance.ApiClient",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="consent_property",
        help_text="Its publishable key (pk_...).",
    )
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text='Origins the banner may call from, e.g. ["https://shop.example"].',
    )
    default_language = models.CharField(max_length=16, default="en")
    purposes = models.ManyToManyField(Purpose, related_name="properties", blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "properties"

    def __str__(self) -> str:
        return self.name


class BannerText(models.Model):
    """The banner's own words in one language (the purposes' words come from their notices)."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="texts")
    language = models.CharField(max_length=16)
    title = models.CharField(max_length=200, default="Your privacy choices")
    description = models.TextField(
        default="We ask for your consent before we use your data for the purposes below."
    )
    accept_all = models.CharField(max_length=60, default="Accept all")
    reject_all = models.CharField(max_length=60, default="Reject all")
    customise = models.CharField(max_length=60, default="Customise")
    save_choices = models.CharField(max_length=60, default="Save my choices")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["property", "language"], name="banner_text_one_per_language"
            )
        ]

    def __str__(self) -> str:
        return f"{self.property} [{self.language}]"


class SubjectLink(models.Model):
    """A device's choices carried over to an account subject: appended, never rewritten.

    One row per linking that happened; `carried` lists the purposes whose latest device
    decision was newer than the account's and was therefore appended to the account's chain.
    """

    device_subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="+")
    account_subject = models.ForeignKey(Subject, on_delete=models.CASCADE, related_name="+")
    property = models.ForeignKey(Property, null=True, on_delete=models.SET_NULL, related_name="+")
    receipt_id = models.UUIDField(null=True, blank=True)
    carried = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["device_subject", "account_subject"], name="link_pair")]

    def __str__(self) -> str:
        return f"{self.device_subject_id} -> {self.account_subject_id}"


class BannerShown(models.Model):
    """How many banner configuration answers asked the person, per property and UTC day.

    Counted in Redis on the banner's hot path and copied here by a beat task
    (consent.reports.shown); without Redis (the embedded stack) counted here directly.
    """

    day = models.DateField()
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["day", "property"]
        constraints = [
            models.UniqueConstraint(fields=["day", "property"], name="banner_shown_per_day")
        ]
        # The dashboard's rate, GPC and re-consent panels (aggregates over every person),
        # hosted by the reports' own counter model: a role seeing purposes does not get it.
        permissions = [("view_consent_reports", "Can see consent rates and other reports")]

    def __str__(self) -> str:
        return f"{self.property_id} {self.day}: {self.count}"
