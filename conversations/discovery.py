"""Model discovery: the models a provider offers, whether it answers, and telling the open
pages when what they may pick changes.

A provider that does not answer never stops Confab: it is marked unreachable, with the
reason in words, and tried again in the background (every CONFAB_PROVIDER_RETRY_S, in every
server process) and whenever an administrator tests it. Every server process also watches
the models on offer (one small query every CONFAB_MODELS_WATCH_S) and tells its own sockets
when that changes: a provider back, the bundled model ready, a model an administrator
enabled. Each page then asks again for the models its user may pick (GET /models/), which
depend on the user's groups, so the event itself carries none.
"""

import asyncio
import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from conversations import upstream
from conversations.fanout import hub
from conversations.models import LanguageModel, Provider, SiteSettings

logger = logging.getLogger(__name__)


def record_models(provider, upstream_ids, *, enabled=None):
    """The provider answered with these models: add the new ones and mark it reachable.

    `enabled` None: a provider's first models are offered at once, as `serve` offers those
    of OPENAI_BASE_URL; later ones wait, disabled, for an administrator (as "Sync models")."""
    if enabled is None:
        enabled = not provider.models.exists()
    added = provider.add_models(upstream_ids, enabled=enabled)
    _set_status(provider, Provider.Status.READY)
    return added


def mark_unreachable(provider, error):
    """The provider could not be listed: why, in words, for the admin and the chat."""
    _set_status(provider, Provider.Status.UNREACHABLE, error.reason or "network", str(error))
    logger.warning("provider %s is unreachable: %s", provider.name, error)


def mark_preparing(provider):
    _set_status(provider, Provider.Status.PREPARING)


def _set_status(provider, status, reason="", detail=""):
    provider.status, provider.status_reason, provider.status_detail = status, reason, detail
    provider.checked = timezone.now()
    provider.save(update_fields=["status", "status_reason", "status_detail", "checked"])


async def _listed(provider):
    try:
        return await upstream.list_models(provider), None
    except upstream.UpstreamError as error:
        return [], error


def _recorded(provider, ids, error, enabled):
    if error is not None:
        mark_unreachable(provider, error)
        return [], error
    return record_models(provider, ids, enabled=enabled), None


async def discover(provider, *, enabled=None):
    """List the provider's models and record what came of it: (models added, error)."""
    ids, error = await _listed(provider)
    return await database_sync_to_async(_recorded)(provider, ids, error, enabled)


def discover_now(providers, *, enabled=None):
    """`discover` for code that is not async (the admin, commands): each provider, the
    models added and the error, if any. Only the listing runs on an event loop."""

    async def list_all():
        return [await _listed(provider) for provider in providers]

    listings = async_to_sync(list_all)()
    return [
        (provider, *_recorded(provider, ids, error, enabled))
        for provider, (ids, error) in zip(providers, listings, strict=True)
    ]


def connect(name, base_url, api_key, **fields):
    """Create or update a provider and offer every model it lists, enabled: (provider,
    models added, error). A provider that does not answer is kept, marked unreachable."""
    provider, _ = Provider.objects.update_or_create(
        name=name, defaults={"base_url": base_url, "api_key": api_key, "enabled": True, **fields}
    )
    [(provider, added, error)] = discover_now([provider], enabled=True)
    return provider, added, error


async def retry_unreachable():
    """Try every enabled provider that could not be reached again."""
    providers = await database_sync_to_async(list)(
        Provider.objects.filter(enabled=True, status=Provider.Status.UNREACHABLE)
    )
    for provider in providers:
        added, error = await discover(provider)
        if error is None:
            logger.info("provider %s is back: %d new models", provider.name, len(added))


async def retry_periodically():
    while True:
        await asyncio.sleep(settings.CONFAB_PROVIDER_RETRY_S)
        try:
            await retry_unreachable()
        except Exception:
            logger.exception("retrying unreachable providers failed; trying again later")


def offer_version():
    """A digest of everything that decides the models pages offer: it changes when any
    model, provider or model's groups do, or the site's default model."""
    models = LanguageModel.objects.order_by("pk").values_list(
        "pk", "enabled", "display_name", "provider__enabled", "provider__status"
    )
    groups = LanguageModel.groups.through.objects.order_by("pk").values_list(
        "languagemodel_id", "group_id"
    )
    default = SiteSettings.objects.values_list("default_model", flat=True).first()
    seen = repr((list(models), list(groups), default))
    return hashlib.sha256(seen.encode()).hexdigest()


async def watch_periodically():
    """Tell this process's sockets whenever the models on offer change."""
    seen = None
    while True:
        try:
            version = await database_sync_to_async(offer_version)()
            if seen is not None and version != seen:
                await hub.broadcast({"type": "models.changed"})
            seen = version
        except Exception:
            logger.exception("watching the models failed; trying again later")
        await asyncio.sleep(settings.CONFAB_MODELS_WATCH_S)
