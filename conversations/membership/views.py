"""An invitation's link: the invitee makes an account with a username and password, or
through single sign-on."""

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import login
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from conversations.membership.backends import PASSWORD_BACKEND
from conversations.membership.forms import AcceptInvitationForm
from conversations.models import Invitation

# Where the invitation waits, in the session, while its invitee signs in at the provider.
SESSION_INVITATION = "confab_invitation"


@never_cache
def accept_invitation(request, token):
    invitation = Invitation.objects.by_token(token)
    if invitation is None:
        return render(request, "membership/invitation_invalid.html", status=410)
    # Under SSO only, the invitee can only come in through the identity provider.
    passwords = not settings.CONFAB_SSO_ONLY
    form = AcceptInvitationForm(request.POST if passwords and request.method == "POST" else None)
    context = {"form": form, "invitation": invitation, "token": token, "passwords": passwords}
    if request.method != "POST" or not passwords:
        return render(request, "membership/accept_invitation.html", context)
    with transaction.atomic():
        # Locked, so that two posts of one link cannot both make an account.
        invitation = Invitation.objects.select_for_update().filter(pk=invitation.pk).first()
        if invitation is None or Invitation.objects.by_token(token) is None:
            return render(request, "membership/invitation_invalid.html", status=410)
        if not form.is_valid():
            return render(request, "membership/accept_invitation.html", context)
        user = form.save(commit=False)
        user.email = invitation.email
        user.save()
        invitation.accept(user)
    login(request, user, backend=PASSWORD_BACKEND)
    flash.success(request, _("Welcome to Confab!"))
    return redirect("chat")


@require_POST
def invitation_sso(request, token):
    """Sign in at the identity provider to accept the invitation: the account is made on
    the way back (sso.SsoBackend), even where SSO makes no account unasked."""
    invitation = Invitation.objects.by_token(token)
    if invitation is None or not settings.CONFAB_SSO:
        return render(request, "membership/invitation_invalid.html", status=410)
    request.session[SESSION_INVITATION] = str(invitation.pk)
    return redirect("oidc_authentication_init")
