"""Providers (their keys write-only), the models they offer, and prices."""

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations import upstream
from conversations.forms.admin import LanguageModelForm, ProviderForm
from conversations.models import LanguageModel, Price, Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "base_url", "key", "enabled"]
    list_filter = ["enabled"]
    actions = ["test_connection", "sync_models"]

    @admin.display(description=_("API key"))
    def key(self, provider):
        return provider.api_key_hint

    @admin.action(description=_("Test connection (GET /models)"))
    def test_connection(self, request, queryset):
        for provider, ids, error in _list_models(queryset):
            if error:
                self.message_user(request, f"{provider}: {error}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    _("%(provider)s answers: %(count)d models.")
                    % {"provider": provider, "count": len(ids)},
                    messages.SUCCESS,
                )

    @admin.action(description=_("Sync models (add new ones, disabled)"))
    def sync_models(self, request, queryset):
        for provider, ids, error in _list_models(queryset):
            if error:
                self.message_user(request, f"{provider}: {error}", messages.ERROR)
                continue
            added = provider.add_models(ids, enabled=False)
            self.message_user(
                request,
                ngettext(
                    "%(provider)s: %(count)d new model, disabled until you enable it.",
                    "%(provider)s: %(count)d new models, disabled until you enable them.",
                    len(added),
                )
                % {"provider": provider, "count": len(added)},
                messages.SUCCESS,
            )


def _list_models(queryset):
    """Each provider's model ids, or the reason they could not be listed."""
    providers = list(queryset)

    async def list_all():
        results = []
        for provider in providers:
            try:
                results.append((provider, await upstream.list_models(provider), None))
            except upstream.UpstreamError as error:
                results.append((provider, [], str(error)))
        return results

    return async_to_sync(list_all)()


class PriceInline(admin.TabularInline):
    model = Price
    extra = 1
    fields = ["effective_from", "currency", "input", "cached_input", "output"]
    verbose_name_plural = _(
        "prices (the one in effect when a reply is made is used; past costs never change)"
    )


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    form = LanguageModelForm
    inlines = [PriceInline]
    filter_horizontal = ["groups"]
    list_display = ["__str__", "upstream_id", "provider", "enabled", "current_price"]
    list_editable = ["enabled"]
    list_filter = ["enabled", "provider", "groups"]
    search_fields = ["upstream_id", "display_name"]

    @admin.display(description=_("price now (input / output per million)"))
    def current_price(self, model):
        price = model.price_at(timezone.now())
        return f"{price.currency} {price.input} / {price.output}" if price else "—"
