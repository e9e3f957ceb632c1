"""The invitation e-mail. Password resets use Django's own view and these templates'
siblings under templates/registration/."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

logger = logging.getLogger(__name__)


def send_invitation(request, invitation, token):
    """E-mail the invitation's link, built from the inviting request's own address (the
    one the administrator reached the site by). Return whether the server took it."""
    context = {
        "link": request.build_absolute_uri(reverse("accept_invitation", args=[token])),
        "invitation": invitation,
        "inviter": invitation.invited_by,
        "sso_name": settings.CONFAB_SSO_NAME if settings.CONFAB_SSO else "",
    }
    subject = " ".join(render_to_string("membership/invitation_subject.txt", context).split())
    body = render_to_string("membership/invitation_email.txt", context)
    try:
        send_mail(subject, body, None, [invitation.email])
    except OSError as error:  # smtplib's errors are OSErrors, as are refused connections
        logger.warning("Invitation %s not sent: %s", invitation.id, type(error).__name__)
        return False
    return True
