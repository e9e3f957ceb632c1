"""Every member's shared links, for administrators: who shares what with whom, and a way to
revoke any of them."""

from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.models import Share


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "audience", "created", "expires", "revoked"]
    list_filter = ["audience", ("revoked", admin.EmptyFieldListFilter)]
    search_fields = ["title", "owner__username"]
    fields = ["owner", "title", "audience", "show_costs", "created", "expires", "revoked"]
    readonly_fields = ["owner", "title", "audience", "show_costs", "created"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # a share is made by its owner, of a branch as they see it

    @admin.action(description=_("Revoke the selected links"))
    def revoke(self, request, queryset):
        count = queryset.filter(revoked__isnull=True).update(revoked=timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d link revoked.", "%(count)d links revoked.", count)
            % {"count": count},
        )
