import csv
from datetime import timedelta
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations import quotas, reports, upstream
from conversations.forms import ParamsForm
from conversations.models import (
    Conversation,
    LanguageModel,
    Message,
    Price,
    Provider,
    Quota,
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


class GroupFilter(admin.SimpleListFilter):
    title = _("group")
    parameter_name = "group"

    def lookups(self, request, model_admin):
        return [(group.pk, group.name) for group in Group.objects.order_by("name")]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(user__groups=self.value())
        return queryset


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The ledger: append-only. Totals, the CSV export and the dashboard all read it."""

    list_display = [
        "created", "user", "model_name", "status", "prompt_tokens", "completion_tokens",
        "total_tokens", "estimated", "cost", "currency", "ttft_ms", "duration_ms",
    ]  # fmt: skip
    list_filter = [
        "status", "estimated", ("user", admin.RelatedOnlyFieldListFilter), GroupFilter,
        ("model", admin.RelatedOnlyFieldListFilter), "provider",
    ]  # fmt: skip
    list_select_related = ["user"]
    search_fields = ["user__username", "model_name"]
    date_hierarchy = "created"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "export.csv",
                self.admin_site.admin_view(self.export_csv),
                name="conversations_usagerecord_export",
            ),
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard),
                name="conversations_usagerecord_dashboard",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if hasattr(response, "context_data") and "cl" in response.context_data:
            changelist = response.context_data["cl"]
            response.context_data["totals"] = reports.totals(changelist.queryset)
        return response

    def export_csv(self, request):
        """The rows the changelist shows with the same filters, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        records = self.get_changelist_instance(request).queryset.select_related("user", "provider")
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="confab-usage.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_COLUMNS)
        for record in records.iterator(chunk_size=2000):
            writer.writerow(
                [
                    record.created.isoformat(),
                    record.user.get_username(),
                    record.provider.name if record.provider else "",
                    record.model_name,
                    record.status,
                    record.prompt_tokens,
                    record.cached_tokens,
                    record.completion_tokens,
                    record.reasoning_tokens,
                    record.total_tokens,
                    record.estimated,
                    record.cost,
                    record.currency,
                    record.ttft_ms,
                    record.duration_ms,
                    record.request_id,
                ]
            )
        return response

    def dashboard(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = DateRangeForm(request.GET or None)
        start, end = form.range()
        records = UsageRecord.objects.filter(created__date__gte=start, created__date__lte=end)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Usage dashboard"),
            "opts": self.model._meta,
            "form": form,
            "start": start,
            "end": end,
            "totals": reports.totals(records),
            "charts": [
                (_("Tokens per day by model"), reports.daily_chart(records, "model", start, end)),
                (_("Tokens per day by user"), reports.daily_chart(records, "user", start, end)),
                (
                    _("Cost per day by model"),
                    reports.daily_chart(records, "model", start, end, measure="cost"),
                ),
                (
                    _("Cost per day by user"),
                    reports.daily_chart(records, "user", start, end, measure="cost"),
                ),
            ],
            "top_users": reports.top(records, "user"),
            "top_models": reports.top(records, "model"),
        }
        return TemplateResponse(request, "admin/conversations/usage_dashboard.html", context)


CSV_COLUMNS = [
    "created", "user", "provider", "model", "status", "prompt_tokens", "cached_tokens",
    "completion_tokens", "reasoning_tokens", "total_tokens", "estimated", "cost", "currency",
    "ttft_ms", "duration_ms", "request_id",
]  # fmt: skip


class DateRangeForm(forms.Form):
    start = forms.DateField(
        label=_("from"), required=False, widget=forms.DateInput({"type": "date"})
    )
    end = forms.DateField(label=_("to"), required=False, widget=forms.DateInput({"type": "date"}))

    def range(self):
        """The chosen days, the last 30 by default, at most a year."""
        today = timezone.localdate()
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        end = data.get("end") or today
        start = data.get("start") or end - timedelta(days=29)
        start = max(min(start, end), end - timedelta(days=366))
        return start, end


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ["__str__", "max_tokens", "max_cost", "currency", "max_concurrent",
                    "reset_at", "extra_tokens", "extra_cost", "extra_until"]  # fmt: skip
    list_filter = ["period", "group"]
    autocomplete_fields = ["user"]
    actions = ["reset_period", "grant_another_period"]

    @admin.action(description=_("Reset the period now (usage counts from now)"))
    def reset_period(self, request, queryset):
        count = queryset.update(reset_at=timezone.now())
        self.message_user(request, _("%(count)d quotas reset.") % {"count": count})

    @admin.action(description=_("Grant one more period's allowance, until the period ends"))
    def grant_another_period(self, request, queryset):
        for quota in queryset:
            quota.extra_tokens = quota.max_tokens or 0
            quota.extra_cost = quota.max_cost or 0
            quota.extra_until = quotas.period_bounds(quota)[1]
            quota.save(update_fields=["extra_tokens", "extra_cost", "extra_until"])
        self.message_user(request, _("Extra allowance granted."))


class QuotaInline(admin.TabularInline):
    model = Quota
    fk_name = "user"
    extra = 0
    fields = ["period", "max_tokens", "max_cost", "currency", "max_concurrent"]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ConfabUserAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, QuotaInline]
    actions = ["disable_access"]

    @admin.action(description=_("Disable access (the user can no longer sign in)"))
    def disable_access(self, request, queryset):
        count = queryset.exclude(pk=request.user.pk).update(is_active=False)
        self.message_user(request, _("%(count)d users disabled.") % {"count": count})


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    def changelist_view(self, request, extra_context=None):
        """There is one row: go straight to it."""
        return redirect("admin:conversations_sitesettings_change", SiteSettings.load().pk)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.site_header = _("Confab administration")
admin.site.site_title = "Confab"
