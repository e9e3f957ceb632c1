"""Invitations for administrators: invite people one by one or from a pasted list,
optionally into groups; see the pending ones, and revoke them."""

from django.contrib import admin
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from conversations.membership.forms import InviteForm
from conversations.membership.mail import send_invitation
from conversations.models import BreakGlassAccount, Invitation, SiteSettings


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return Invitation.Status.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        return {
            "pending": queryset.pending(),
            "accepted": queryset.filter(accepted__isnull=False),
            "revoked": queryset.filter(revoked__isnull=False, accepted__isnull=True),
            "expired": queryset.filter(
                accepted__isnull=True, revoked__isnull=True, expires__lte=now
            ),
        }.get(self.value(), queryset)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "status_shown", "group_names", "invited_by", "created", "expires",
                    "accepted", "user"]  # fmt: skip
    list_filter = [StatusFilter, "groups"]
    search_fields = ["email", "user__username"]
    fields = ["email", "group_names", "invited_by", "created", "expires", "accepted", "user",
              "revoked"]  # fmt: skip
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description=_("status"))
    def status_shown(self, invitation):
        return invitation.status.label

    @admin.display(description=_("groups"))
    def group_names(self, invitation):
        return ", ".join(group.name for group in invitation.groups.all())

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("invited_by", "user")
            .prefetch_related("groups")
        )

    def has_change_permission(self, request, obj=None):
        return False  # an invitation is sent, then accepted or revoked: nothing to edit

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, not deleted: the list shows who was invited when

    @admin.action(description=_("Revoke the selected invitations"))
    def revoke(self, request, queryset):
        count = queryset.pending().update(revoked=timezone.now())
        self.message_user(
            request,
            ngettext(
                "%(count)d invitation revoked.", "%(count)d invitations revoked.", count
            ) % {"count": count},
        )  # fmt: skip

    def add_view(self, request, form_url="", extra_context=None):
        """Invite: one form for one address or a pasted list, each sent its own link."""
        form = InviteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            self._invite(request, form.cleaned_data["emails"], form.cleaned_data["groups"])
            return redirect("admin:conversations_invitation_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Invite people"),
            "form": form,
            "opts": self.model._meta,
            "days": SiteSettings.load().invitation_days,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/conversations/invitation/invite.html", context)

    def _invite(self, request, emails, groups):
        days = SiteSettings.load().invitation_days
        sent, failed = [], []
        for email in emails:
            with transaction.atomic():
                # A new link replaces the pending ones to the same address.
                Invitation.objects.pending().filter(email__iexact=email).update(
                    revoked=timezone.now()
                )
                invitation, token = Invitation.create(email, request.user, days, groups)
            if send_invitation(request, invitation, token):
                sent.append(email)
            else:  # a link nobody received is no invitation
                invitation.delete()
                failed.append(email)
        if sent:
            self.message_user(
                request,
                ngettext(
                    "Invitation sent to %(emails)s.", "Invitations sent to %(emails)s.", len(sent)
                ) % {"emails": ", ".join(sent)},
            )  # fmt: skip
        if failed:
            self.message_user(
                request,
                _("The mail server refused or did not answer; nothing was sent to %(emails)s.")
                % {"emails": ", ".join(failed)},
                level="error",
            )


class BreakGlassInline(admin.StackedInline):
    """On a user's page: may this administrator sign in with a password under SSO only?"""

    model = BreakGlassAccount
    extra = 0
    max_num = 1
    verbose_name_plural = _("break-glass account (may sign in with a password under SSO only)")
