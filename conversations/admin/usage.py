"""The usage ledger (append-only, with totals, a CSV export and a dashboard) and quotas."""

import csv

from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations import quotas, reports
from conversations.admin.readonly import ReadOnly
from conversations.forms.admin import DateRangeForm
from conversations.models import Quota, UsageRecord


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
class UsageRecordAdmin(ReadOnly, admin.ModelAdmin):
    """The ledger: append-only. Totals, the CSV export and the dashboard all read it."""

    list_display = [
        "created", "user", "source", "model_name", "status", "prompt_tokens",
        "completion_tokens", "total_tokens", "estimated", "reached_provider", "cost", "currency",
        "ttft_ms", "duration_ms",
    ]  # fmt: skip
    list_filter = [
        "status", "source", "estimated", "reached_provider",
        ("user", admin.RelatedOnlyFieldListFilter),
        GroupFilter, ("model", admin.RelatedOnlyFieldListFilter), "provider",
        ("api_key", admin.RelatedOnlyFieldListFilter),
    ]  # fmt: skip
    list_select_related = ["user"]
    search_fields = ["user__username", "model_name"]
    # A conversation is named by its id here: its title is its text (privacy.admin).
    exclude = ["conversation", "message"]
    readonly_fields = ["conversation_ref"]
    date_hierarchy = "created"

    @admin.display(description=_("conversation"))
    def conversation_ref(self, record):
        return str(record.conversation_id or "")

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
                    record.reached_provider,
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
                # Money in one currency a chart: amounts in two would not add up.
                *(
                    (
                        title % {"currency": currency},
                        reports.daily_chart(
                            records, key, start, end, measure="cost", currency=currency
                        ),
                    )
                    for currency in reports.currencies(records)
                    for key, title in (
                        ("model", _("Cost per day by model (%(currency)s)")),
                        ("user", _("Cost per day by user (%(currency)s)")),
                    )
                ),
            ],
            "top_users": reports.top(records, "user"),
            "top_models": reports.top(records, "model"),
            "top_keys": reports.top(records.filter(api_key__isnull=False), "api_key"),
        }
        return TemplateResponse(request, "admin/conversations/usage_dashboard.html", context)


CSV_COLUMNS = [
    "created", "user", "provider", "model", "status", "prompt_tokens", "cached_tokens",
    "completion_tokens", "reasoning_tokens", "total_tokens", "estimated", "reached_provider",
    "cost", "currency", "ttft_ms", "duration_ms", "request_id",
]  # fmt: skip


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
