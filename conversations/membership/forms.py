"""Inviting people, accepting an invitation, and asking for a password reset."""

import re

from django import forms
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from conversations.membership.backends import may_use_password

# Enough for a team's list pasted at once; each address is one e-mail sent while the admin waits.
MAX_INVITATIONS = 200


class InviteForm(forms.Form):
    emails = forms.CharField(
        label=_("E-mail addresses"),
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_(
            "One address, or a pasted list: one per line, or separated by commas or "
            'semicolons. "Name <address>" works too.'
        ),
    )
    groups = forms.ModelMultipleChoiceField(
        Group.objects.order_by("name"),
        label=_("Groups"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Each new account joins these groups."),
    )

    def clean_emails(self):
        addresses, bad, seen = [], [], set()
        for piece in re.split(r"[,;\n\r]+", self.cleaned_data["emails"]):
            if not (piece := piece.strip()):
                continue
            bracketed = re.search(r"<([^<>]*)>", piece)  # Name <address>
            address = bracketed.group(1).strip() if bracketed else piece
            try:
                validate_email(address)
            except ValidationError:
                bad.append(piece)
                continue
            if address.lower() not in seen:
                seen.add(address.lower())
                addresses.append(address)
        if bad:
            raise ValidationError(
                _("Not e-mail addresses: %(bad)s") % {"bad": ", ".join(bad)}, code="invalid"
            )
        if not addresses:
            raise ValidationError(_("Enter at least one e-mail address."), code="required")
        if len(addresses) > MAX_INVITATIONS:
            raise ValidationError(
                _("At most %(count)d addresses at once.") % {"count": MAX_INVITATIONS},
                code="too_many",
            )
        return addresses


class AcceptInvitationForm(auth_forms.UserCreationForm):
    """The invitee's username and password; the e-mail address is the invitation's."""

    class Meta(auth_forms.UserCreationForm.Meta):
        model = get_user_model()
        fields = ["username"]


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's, sending no link to an account that may not use a password (SSO only)."""

    def get_users(self, email):
        return (user for user in super().get_users(email) if may_use_password(user))
