from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    Provider,
    SiteSettings,
    UsageRecord,
)


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(
        label=_("base URL"),
        assume_scheme="https",
        help_text=_("For example https://api.openai.com/v1"),
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
        fields = ["name", "base_url", "api_key", "clear_api_key", "enabled"]

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


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "base_url", "key", "enabled"]
    list_filter = ["enabled"]

    @admin.display(description=_("API key"))
    def key(self, provider):
        return provider.api_key_hint


@admin.register(LanguageModel)
class LanguageModelAdmin(admin.ModelAdmin):
    list_display = [
        "__str__", "upstream_id", "provider", "enabled", "max_output_tokens",
        "input_price", "cached_input_price", "output_price",
    ]  # fmt: skip
    list_editable = ["enabled"]
    list_filter = ["enabled", "provider"]
    search_fields = ["upstream_id", "display_name"]


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
