import asyncio

from django.core.management.base import BaseCommand, CommandError

from conversations import upstream
from conversations.models import Provider


def connect_provider(name, base_url, api_key):
    """Create or update a provider and offer every model its `GET /models` lists."""
    provider, _ = Provider.objects.update_or_create(
        name=name, defaults={"base_url": base_url, "api_key": api_key, "enabled": True}
    )
    try:
        ids = asyncio.run(upstream.list_models(provider))
    except upstream.UpstreamError as error:
        raise CommandError(f"{name}: {error}") from None
    return provider, provider.add_models(ids)


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
        import os

        provider, added = connect_provider(name, base_url, os.environ.get(api_key_env, ""))
        self.stdout.write(f"{provider.name}: {provider.models.count()} models, {len(added)} new.")
