"""The ways to sign in: a local password, refused under CONFAB_SSO_ONLY but to break-glass
administrators; and single sign-on (`sso.SsoBackend`)."""

from django.conf import settings
from django.contrib.auth.backends import ModelBackend

from conversations.models import BreakGlassAccount

PASSWORD_BACKEND = "conversations.membership.backends.PasswordBackend"
SSO_BACKEND = "conversations.membership.sso.SsoBackend"


def may_use_password(user):
    """Whether `user` may sign in with a local password (and so reset one)."""
    if not settings.CONFAB_SSO_ONLY:
        return True
    return BreakGlassAccount.objects.filter(user_id=user.pk).exists()


class PasswordBackend(ModelBackend):
    """Django's username and password, but under CONFAB_SSO_ONLY only for break-glass
    accounts. Django asks the backend that signed a session in for its user on every
    request and socket event (get_user), so turning SSO only on also ends the password
    sessions already open."""

    def user_can_authenticate(self, user):
        return super().user_can_authenticate(user) and may_use_password(user)
