"""Make sure someone can log in: create a superuser on first run and print how."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create a superuser from DJANGO_SUPERUSER_USERNAME/PASSWORD, or a random one, if none exists."

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
        if user := User.objects.filter(username=username).first():
            # Only when it differs: a new hash would sign the person out of every browser
            # (sessions are bound to it), at every restart.
            if password and not user.check_password(password):
                user.set_password(password)
                user.save(update_fields=["password"])
            self.stdout.write(f"Log in as {username!r}.")
            return
        if User.objects.filter(is_superuser=True).exists() and "DJANGO_SUPERUSER_USERNAME" not in os.environ:
            self.stdout.write("A superuser exists already; log in with it.")
            return
        generated = password is None
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.SUCCESS(f"Created a login: username {username!r}, password {password!r}")
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"Created a login: username {username!r}"))
