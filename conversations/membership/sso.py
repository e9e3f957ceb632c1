"""Single sign-on with an OpenID Connect identity provider, through mozilla-django-oidc.

Why that library and not django-allauth: it is one authentication backend and two views
beside Django's own auth, which Confab keeps (`/accounts/login/` with its `username` and
`password` fields, django-axes, our sign-up and invitations). allauth would replace the
whole account flow with its own views, templates and models to get the same code flow.

What Confab adds to it:
- the ID token's issuer and audience are checked (the library checks signature, expiry and
  nonce only), and PKCE is on;
- a person is found by the provider's `sub` (SsoIdentity), and only the first time by a
  verified e-mail address, so a changed address or name is the same person;
- accounts are made at first sign-in when OIDC_CREATE_USERS allows and the address is in
  OIDC_ALLOWED_DOMAINS, or when the person comes with an invitation;
- OIDC_GROUPS_CLAIM's names become the user's Django groups (models and quotas follow);
- every OIDC_RECHECK_S each SSO session asks the provider again (SsoSession's refresh
  token): a person removed or disabled there is signed out, and their sockets close.
"""

import asyncio
import logging
from datetime import timedelta
from importlib import import_module

import requests
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib import messages as flash
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import connection, transaction
from django.http import Http404
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from conversations import sessions
from conversations.membership.backends import SSO_BACKEND
from conversations.membership.views import SESSION_INVITATION
from conversations.models import Invitation, SsoIdentity, SsoSession

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The provider signed the person in, but Confab does not let them in: why, to show."""


class ProviderUnreachable(Exception):
    """The provider could not be asked: nobody is signed out for that."""


class SsoBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        if not settings.CONFAB_SSO:
            return None
        return super().authenticate(request, **kwargs)

    def get_token(self, payload):
        # Kept for SsoSession: the refresh token is how the provider is asked again later.
        self.request.sso_tokens = tokens = super().get_token(payload)
        return tokens

    def verify_token(self, token, **kwargs):
        claims = super().verify_token(token, **kwargs)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if claims.get("iss") != settings.OIDC_ISSUER:
            raise SuspiciousOperation("The ID token's issuer is not OIDC_ISSUER.")
        if settings.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token is not for this client.")
        return claims

    def get_userinfo(self, access_token, id_token, payload):
        """The ID token's claims and the userinfo endpoint's: some providers put groups
        and roles in the ID token only (Entra ID)."""
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def verify_claims(self, claims):
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims):
        User = get_user_model()
        known = User.objects.filter(
            sso_identity__issuer=settings.OIDC_ISSUER, sso_identity__subject=claims["sub"]
        )
        if known.exists():
            return known
        # The first time only: an existing account of the same verified address, not yet
        # tied to another identity, becomes this person's.
        email = claims.get("email")
        if not email or claims.get("email_verified") is False:
            return User.objects.none()
        return User.objects.filter(email__iexact=email, sso_identity__isnull=True)

    def get_or_create_user(self, access_token, id_token, payload):
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation("The provider sent no `sub`.")
        users = list(self.filter_users_by_claims(claims)[:2])
        if len(users) > 1:
            raise Refused(
                _("Several Confab accounts have your e-mail address: ask an administrator.")
            )
        if users:
            return self.update_user(users[0], claims)
        return self.create_user(claims)

    def create_user(self, claims):
        invitation = self._invitation()
        if invitation is None:
            if not settings.OIDC_CREATE_USER:
                raise Refused(
                    _(
                        "There is no Confab account for you yet. Ask an administrator for "
                        "an invitation."
                    )
                )
            domains = settings.CONFAB_SSO_ALLOWED_DOMAINS
            domain = (claims.get("email") or "").rpartition("@")[2].lower()
            if domains and domain not in domains:
                raise Refused(
                    _("Accounts are made for addresses at %(domains)s only.")
                    % {"domains": ", ".join(domains)}
                )
        with transaction.atomic():
            user = get_user_model().objects.create_user(
                self._free_username(claims), email=claims.get("email") or ""
            )  # with no usable password: this person signs in at the provider
            SsoIdentity.objects.create(
                user=user, issuer=settings.OIDC_ISSUER, subject=claims["sub"]
            )
            if invitation is not None:
                invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
                invitation.accept(user)
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        SsoIdentity.objects.get_or_create(
            user=user, defaults={"issuer": settings.OIDC_ISSUER, "subject": claims["sub"]}
        )
        apply_claims(user, claims)
        return user

    def get_user(self, user_id):
        # Django's, which refuses a disabled account (the library's does not).
        return ModelBackend.get_user(self, user_id)

    def _invitation(self):
        """The pending invitation its invitee came with (views.invitation_sso), or None."""
        invitation_id = self.request.session.get(SESSION_INVITATION)
        if not invitation_id:
            return None
        return Invitation.objects.pending().filter(pk=invitation_id).first()

    def _free_username(self, claims):
        User = get_user_model()
        claim = settings.CONFAB_SSO_USERNAME_CLAIM
        name = str(claims.get(claim) or claims.get("email") or claims["sub"])[:140]
        candidate, number = name, 1
        while User.objects.filter(username__iexact=candidate).exists():
            number += 1
            candidate = f"{name}-{number}"
        return candidate


def apply_claims(user, claims):
    """What the provider says of the person, onto their account: names, and their groups
    when OIDC_GROUPS_CLAIM is set (only groups that exist in Confab: an administrator
    makes the ones that models and quotas name)."""
    user.first_name = str(claims.get("given_name") or user.first_name)[:150]
    user.last_name = str(claims.get("family_name") or user.last_name)[:150]
    user.save(update_fields=["first_name", "last_name"])
    if claim := settings.CONFAB_SSO_GROUPS_CLAIM:
        names = claims.get(claim) or []
        names = [names] if isinstance(names, str) else names
        # Keycloak sends a group's full path ("/team") unless told otherwise.
        names = {str(name).lstrip("/") for name in names}
        user.groups.set(Group.objects.filter(name__in=names))


class AuthenticateView(OIDCAuthenticationRequestView):
    def dispatch(self, request, *args, **kwargs):
        if not settings.CONFAB_SSO:
            raise Http404
        return super().dispatch(request, *args, **kwargs)


class CallbackView(OIDCAuthenticationCallbackView):
    """The provider's answer. Each way it can fail ends on the sign-in page saying why,
    never in a server error: the provider's and the network's failures are not ours."""

    def dispatch(self, request, *args, **kwargs):
        if not settings.CONFAB_SSO:
            raise Http404
        self.refusal = None
        try:
            return super().dispatch(request, *args, **kwargs)
        except Refused as refusal:
            self.refusal = str(refusal)
        except (requests.RequestException, SuspiciousOperation, ValueError) as error:
            logger.warning("Single sign-on failed: %s", type(error).__name__)
        return self.login_failure()

    def login_success(self):
        response = super().login_success()
        tokens = getattr(self.request, "sso_tokens", {})
        SsoSession.objects.update_or_create(
            session_key=self.request.session.session_key,
            defaults={
                "user": self.user,
                "refresh_token": tokens.get("refresh_token") or "",
                "access_token": tokens.get("access_token") or "",
                "checked": timezone.now(),
            },
        )
        self.request.session.pop(SESSION_INVITATION, None)
        return response

    def login_failure(self):
        user = getattr(self, "user", None)
        if self.refusal is None and user is not None and not user.is_active:
            self.refusal = _("This Confab account is disabled.")
        context = {
            "form": AuthenticationForm(self.request),
            "sso_refused": self.refusal
            or _("Single sign-on did not sign you in. Try again, or ask an administrator."),
        }
        return render(self.request, "registration/login.html", context, status=403)


urlpatterns = [
    path("authenticate/", AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("callback/", CallbackView.as_view(), name="oidc_authentication_callback"),
]


# Asking the provider again.


def recheck(sso_session):
    """Ask the provider whether the person of `sso_session` may still come in: a refresh
    token grant (a provider refuses it for a person removed or disabled), else the userinfo
    endpoint with the access token. True if allowed; the new tokens and claims are kept."""
    try:
        if sso_session.refresh_token:
            answer = requests.post(
                settings.OIDC_OP_TOKEN_ENDPOINT,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": sso_session.refresh_token,
                    "client_id": settings.OIDC_RP_CLIENT_ID,
                    "client_secret": settings.OIDC_RP_CLIENT_SECRET,
                },
                timeout=settings.OIDC_TIMEOUT,
            )
            if answer.status_code in (400, 401):  # invalid_grant: refused
                return False
            answer.raise_for_status()
            tokens = answer.json()
            sso_session.refresh_token = tokens.get("refresh_token") or sso_session.refresh_token
            sso_session.access_token = tokens.get("access_token") or ""
        claims = requests.get(
            settings.OIDC_OP_USER_ENDPOINT,
            headers={"Authorization": f"Bearer {sso_session.access_token}"},
            timeout=settings.OIDC_TIMEOUT,
        )
        if claims.status_code in (401, 403):
            return False
        claims.raise_for_status()
        claims = claims.json()
    except (requests.RequestException, ValueError) as error:
        raise ProviderUnreachable(type(error).__name__) from error
    sso_session.save(update_fields=["refresh_token", "access_token"])
    if not claims.get("sub") or claims["sub"] != getattr(
        getattr(sso_session.user, "sso_identity", None), "subject", claims["sub"]
    ):
        return False
    apply_claims(sso_session.user, claims)
    return True


def end(sso_session):
    """Sign the session out: its row, the session itself, and its sockets in every process."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(sso_session.session_key)
    store.delete()
    sso_session.delete()
    sessions.tell_sockets(sso_session.user_id, ended_session=sso_session.session_key)
    logger.info("SSO session of user %s ended: the provider refused it", sso_session.user_id)


def check_if_due(sso_session):
    """Recheck `sso_session` if OIDC_RECHECK_S has passed; False if it was ended. Claimed
    first, so that of several processes (or requests) one asks: a refresh token may be
    spent once, and the second try would look like a refusal."""
    now = timezone.now()
    if sso_session.checked > now - timedelta(seconds=settings.CONFAB_SSO_RECHECK_S):
        return True
    claimed = SsoSession.objects.filter(pk=sso_session.pk, checked=sso_session.checked)
    if not claimed.update(checked=now):
        return True  # another process asks now
    try:
        allowed = recheck(sso_session)
    except ProviderUnreachable as error:
        # Nobody is signed out because the provider is down; asked again at the next round.
        logger.warning("The identity provider could not be asked: %s", error)
        return True
    if not allowed:
        end(sso_session)
    return allowed


def recheck_due():
    """Every SSO session due for a check, checked: sockets of an idle tab close too."""
    due = timezone.now() - timedelta(seconds=settings.CONFAB_SSO_RECHECK_S)
    for sso_session in SsoSession.objects.filter(checked__lte=due).select_related("user"):
        check_if_due(sso_session)


def _recheck_due_in_a_thread():
    try:
        recheck_due()
    finally:
        connection.close()  # a worker thread of its own: nobody else would close it


async def recheck_periodically():
    """What `manage.py serve` runs beside the reaper. The provider is asked outside the
    database thread that sockets share: a slow provider holds no send up."""
    if not settings.CONFAB_SSO:
        return
    interval = min(max(settings.CONFAB_SSO_RECHECK_S / 2, 1), 60)
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_to_async(_recheck_due_in_a_thread, thread_sensitive=False)()
        except Exception:
            logger.exception("Rechecking SSO sessions failed")


PERIODIC = (recheck_periodically,)


class RecheckMiddleware:
    """A page of an SSO session that is due is checked first: a person refused at the
    provider is signed out here and sent to sign in again."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            settings.CONFAB_SSO
            and request.user.is_authenticated
            and request.session.get(BACKEND_SESSION_KEY) == SSO_BACKEND
        ):
            sso_session = (
                SsoSession.objects.filter(session_key=request.session.session_key)
                .select_related("user")
                .first()
            )
            if sso_session is None or not check_if_due(sso_session):
                auth.logout(request)
                flash.warning(request, _("Your single sign-on no longer lets you in."))
        return self.get_response(request)
