"""`manage.py create_api_key USERNAME --name NAME [--expires-days N]`: a personal key for the
gateway (/v1). The key is printed on the last line, the only time it is shown."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from conversations.models import ApiKey


class Command(BaseCommand):
    help = "Make a personal API key for the gateway and print it (on the last line)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the key is for.")
        parser.add_argument("--expires-days", type=int, help="Days until it expires.")

    def handle(self, username, name, expires_days, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1.")
        expires = timezone.now() + timedelta(days=expires_days) if expires_days else None
        api_key, key = ApiKey.create(user, name, expires=expires)
        self.stdout.write(f"Key {api_key.name!r} for {username}. It is shown only now:")
        self.stdout.write(key)
