"""manage.py delete_user_data USERNAME [--yes]: delete one person's conversations, API keys,
preferences and invitations. The account goes too, unless the usage ledger names it: then it
is anonymised and disabled, and the ledger keeps its rows (no text in them)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from conversations.privacy import data


class Command(BaseCommand):
    help = "Delete one user's data; the account is anonymised if the usage ledger names it."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--yes", action="store_true", help="Do not ask to confirm.")

    def handle(self, username, yes, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        if not yes and input(f"Type {username} to delete their data: ") != username:
            raise CommandError("Nothing deleted.")
        if data.delete(user):
            self.stdout.write(f"{username} and their data deleted.")
        else:
            self.stdout.write(
                f"{username}'s data deleted; the account is anonymised as deleted-{user.pk} "
                "and disabled, as the usage ledger keeps its rows."
            )
