import os

from django.core.management.base import BaseCommand, CommandError

from conversations import discovery


def connect_provider(name, base_url, api_key):
    """Create or update a provider and offer every model its `GET /models` lists; a
    provider that does not answer is an error here (it is kept, marked unreachable)."""
    provider, added, error = discovery.connect(name, base_url, api_key)
    if error is not None:
        raise CommandError(f"{name}: {error}")
    return provider, added


class Command(BaseCommand):
    help = (
        "Connect an OpenAI-compatible provider and offer the models it lists. "
        "The API key is read from the environment variable named by --api-key-env."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("base_url")
        parser.add_argument("--api-key-env", default="OPENAI_API_KEY")

    def handle(self, name, base_url, api_key_env, **options):
        provider, added = connect_provider(name, base_url, os.environ.get(api_key_env, ""))
        self.stdout.write(f"{provider.name}: {provider.models.count()} models, {len(added)} new.")
