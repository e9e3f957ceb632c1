"""Users (with their quotas) and the site's own settings."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.shortcuts import redirect
from django.utils.translation import gettext_lazy as _

from conversations import sessions
from conversations.admin.usage import QuotaInline
from conversations.forms import AdminPasswordChangeForm, AdminUserCreationForm
from conversations.membership.admin import BreakGlassInline
from conversations.models import SiteSettings

User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ConfabUserAdmin(UserAdmin):
    add_form = AdminUserCreationForm
    change_password_form = AdminPasswordChangeForm
    inlines = [*UserAdmin.inlines, QuotaInline, BreakGlassInline]
    actions = ["disable_access"]

    @admin.action(description=_("Disable access (the user can no longer sign in)"))
    def disable_access(self, request, queryset):
        users = list(queryset.exclude(pk=request.user.pk).values_list("pk", flat=True))
        count = User.objects.filter(pk__in=users).update(is_active=False)
        for user_id in users:  # an update sends no signal: their open tabs close now
            sessions.tell_sockets_after_commit(user_id)
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
