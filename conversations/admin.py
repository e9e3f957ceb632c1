from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations import upstream
from conversations.forms import ParamsForm
from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    Price,
    Provider,
    SiteSettings,
    UsageRecord,
)


class ProviderForm(forms.ModelForm):
    # Not a URLField: its validator refuses hosts without a dot, such as a container
    # named "vllm" or "ollama" on the same network.
    base_url = forms.CharField(
        label=_("base URL"),
        max_length=200,
        help_text=_("For example https://api.openai.com/v1 or http://vllm:8000/v1"),
    )
    # Write-only: the stored key is never rendered back into the page.
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("Leave empty to keep the current key."),
    )
    clear_api_key = forms.BooleanField(label=_("Remove the stored key"), required=False)

    class Meta:
        model = Provider
        fields = [
            "name", "base_url", "api_key", "clear_api_key", "extra_headers",
            "first_byte_timeout_s", "idle_timeout_s", "enabled",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored_key = self.instance.api_key if self.instance.pk else ""
        if self.instance.pk:
            self.fields["api_key"].help_text = _("Currently: %(hint)s. Leave empty to keep it.") % {
                "hint": self.instance.api_key_hint
            }

    def clean_api_key(self):
        if self.cleaned_data.get("clear_api_key"):
            return ""
        return self.cleaned_data["api_key"] or self.stored_key

    def clean_base_url(self):
        url = urlsplit(self.cleaned_data["base_url"].strip())
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise forms.ValidationError(
                _("Enter an http:// or https:// address without a query, e.g. https://host/v1.")
            )
        return url.geturl()

    def clean_extra_headers(self):
        headers = self.cleaned_data["extra_headers"] or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.isascii() and v.isascii()
            for k, v in headers.items()
        ):
            raise forms.ValidationError(
                _("Must be a JSON object of header names to values, in ASCII.")
            )
        if any(k.lower() == "authorization" for k in headers):
            raise forms.ValidationError(_("Put the key in the API key field, not in a header."))
        return headers


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
                _("%(provider)s: %(count)d new models, disabled until you enable them.")
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


class LanguageModelForm(forms.ModelForm):
    class Meta:
        model = LanguageModel
        fields = [
            "provider", "upstream_id", "display_name", "enabled", "groups", "context_window",
            "max_output_tokens", "supports_tools", "supports_json", "supports_reasoning",
            "supports_n", "default_params", "extra_body",
        ]  # fmt: skip

    def clean(self):
        cleaned = super().clean()
        defaults = ParamsForm(cleaned.get("default_params") or {}, model=self.instance)
        if not defaults.is_valid():
            self.add_error("default_params", defaults.error_text(prefix=""))
        extra = cleaned.get("extra_body") or {}
        if not isinstance(extra, dict):
            self.add_error("extra_body", _("Must be a JSON object."))
        elif taken := sorted(set(extra) & (set(ParamsForm.base_fields) | ParamsForm.SET_BY_CONFAB)):
            self.add_error(
                "extra_body",
                _("Standard fields belong in default parameters: %(names)s.")
                % {"names": ", ".join(taken)},
            )
        return cleaned


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


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created", "role", "status", "content", "total_tokens", "usage_estimated", "cost"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "model", "updated"]
    list_filter = ["model"]
    search_fields = ["title", "owner__username"]
    date_hierarchy = "updated"
    readonly_fields = ["owner", "title", "system_prompt", "model", "params", "created", "updated"]
    inlines = [MessageInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "created", "user", "model_name", "status", "prompt_tokens", "completion_tokens",
        "total_tokens", "estimated", "cost", "ttft_ms", "duration_ms",
    ]  # fmt: skip
    list_filter = ["status", "estimated", "model", "provider"]
    search_fields = ["user__username", "model_name"]
    date_hierarchy = "created"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return not SiteSettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.site_header = _("Confab administration")
admin.site.site_title = "Confab"
