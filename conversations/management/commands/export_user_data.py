"""manage.py export_user_data USERNAME [--output FILE]: everything Confab keeps about one
person (account, preferences, conversations with every message, usage, API keys), as JSON,
for a data request."""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from conversations.privacy import data


class Command(BaseCommand):
    help = "Export one user's data (account, conversations, usage, API keys) as JSON."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--output", help="A file to write; standard output when absent.")

    def handle(self, username, output, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        text = json.dumps(data.export(user), ensure_ascii=False, indent=2)
        if output:
            with open(output, "w", encoding="utf-8") as file:
                file.write(text + "\n")
            self.stderr.write(f"{username}'s data written to {output}.")
        else:
            self.stdout.write(text)
