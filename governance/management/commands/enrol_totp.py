"""Enrols a staff member's authenticator app and prints its secret, the only time it is shown."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.actors import Actor
from governance.models import StaffTotpDevice
from governance.staff import staff_totp_enrol


class Command(BaseCommand):
    help = (
        "Enrol USERNAME's authenticator app (TOTP) for the admin's two-factor sign-in; "
        "prints an otpauth:// link and the secret once. --replace swaps an existing one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Replace the authenticator the user has (the old one stops working).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not user.is_active or not user.is_staff:
            raise CommandError(f"No active staff user {username!r}.")
        if StaffTotpDevice.objects.filter(user=user).exists() and not options["replace"]:
            raise CommandError(
                f"{username!r} already has an authenticator; --replace to swap it for a new one."
            )
        enrolment = staff_totp_enrol(user=user, actor=Actor.system("enrol_totp"))
        self.stdout.write(
            f"Authenticator for {username!r} (shown once; give it to them privately).\n"
            f"Add it to an authenticator app from this link (or a QR code made of it):\n"
            f"  {enrolment.uri}\n"
            f"or type the secret by hand (time-based, 6 digits, 30 s):\n"
            f"  {enrolment.secret}\n"
            f"Then sign in at /admin/ with the password and the app's current code."
        )
