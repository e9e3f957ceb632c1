"""Providers (their keys write-only), the models they offer, and prices."""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations import discovery
from conversations.forms.admin import LanguageModelForm, ProviderForm
from conversations.models import LanguageModel, Price, Provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "base_url", "key", "enabled", "state", "checked"]
    list_filter = ["enabled", "status"]
    readonly_fields = ["state", "checked"]
    actions = ["test_connection", "sync_models"]

    @admin.display(description=_("API key"))
    def key(self, provider):
        return provider.api_key_hint

    @admin.display(description=_("status"), ordering="status")
    def state(self, provider):
        return provider.status_text

    @admin.action(description=_("Test connection (GET /models)"))
    def test_connection(self, request, queryset):
        """Model discovery, now: what the background retries do, with the answer shown."""
        for provider, _added, error in _discover(queryset):
            if error:
                self.message_user(request, f"{provider}: {provider.status_text}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    _("%(provider)s answers: %(count)d models.")
                    % {"provider": provider, "count": provider.models.count()},
                    messages.SUCCESS,
                )

    @admin.action(description=_("Sync models (add new ones, disabled)"))
    def sync_models(self, request, queryset):
        for provider, added, error in _discover(queryset, enabled=False):
            if error:
                self.message_user(request, f"{provider}: {provider.status_text}", messages.ERROR)
                continue
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


def _discover(queryset, enabled=None):
    return discovery.discover_now(list(queryset), enabled=enabled)


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
