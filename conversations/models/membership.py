"""Who may come in and how: invitations by e-mail, single sign-on identities and the
sessions they opened, and the administrators who may still use a password when single
sign-on is the only way in (break-glass accounts)."""

import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.fields import EncryptedTextField


def digest(token):
    """What is stored of a token: 256 random bits need no slow hash."""
    return hashlib.sha256(token.encode()).hexdigest()


class InvitationQuerySet(models.QuerySet):
    def pending(self):
        """Invitations whose link still works: not accepted, not revoked, not expired."""
        return self.filter(accepted__isnull=True, revoked__isnull=True, expires__gt=timezone.now())

    def by_token(self, token):
        """The pending invitation of a link's token, or None."""
        return self.pending().filter(digest=digest(token)).first()


class Invitation(models.Model):
    """An e-mailed link that lets one person make an account, once, until it expires. Only
    the token's digest is kept: the link exists in the e-mail alone."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        ACCEPTED = "accepted", _("accepted")
        REVOKED = "revoked", _("revoked")
        EXPIRED = "expired", _("expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(_("e-mail"))
    groups = models.ManyToManyField(
        Group,
        blank=True,
        related_name="+",
        verbose_name=_("groups"),
        help_text=_("The new account joins these groups."),
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("invited by"),
    )
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(_("sent"), default=timezone.now)
    expires = models.DateTimeField(_("expires"))
    accepted = models.DateTimeField(_("accepted"), null=True, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("account made"),
    )
    revoked = models.DateTimeField(_("revoked"), null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-created"]

    def __str__(self):
        return self.email

    @classmethod
    def create(cls, email, invited_by, days, groups=()):
        """A new invitation and the token of its link (shown nowhere but the e-mail)."""
        token = secrets.token_urlsafe(32)
        now = timezone.now()
        invitation = cls.objects.create(
            email=email,
            invited_by=invited_by,
            digest=digest(token),
            created=now,
            expires=now + timedelta(days=days),
        )
        invitation.groups.set(groups)
        return invitation, token

    @property
    def status(self):
        if self.accepted:
            return self.Status.ACCEPTED
        if self.revoked:
            return self.Status.REVOKED
        if self.expires <= timezone.now():
            return self.Status.EXPIRED
        return self.Status.PENDING

    def accept(self, user):
        """Spend the invitation on `user`: it joins the invitation's groups. The caller
        holds the row locked, so that one link makes one account."""
        user.groups.add(*self.groups.all())
        self.accepted = timezone.now()
        self.user = user
        self.save(update_fields=["accepted", "user"])


class BreakGlassAccount(models.Model):
    """An administrator who may sign in with a password when single sign-on is the only way
    in (CONFAB_SSO_ONLY): the way back in when the identity provider is down."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="break_glass"
    )
    note = models.CharField(
        _("note"),
        max_length=200,
        blank=True,
        help_text=_("Who holds this account's password, and where it is kept."),
    )

    class Meta:
        verbose_name = _("break-glass account")
        verbose_name_plural = _("break-glass accounts")

    def __str__(self):
        return str(self.user)


class SsoIdentity(models.Model):
    """The account of a person at the identity provider: its issuer and `sub`, which never
    change, unlike an e-mail address or a name."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("single sign-on identity")
        verbose_name_plural = _("single sign-on identities")
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_identity")
        ]

    def __str__(self):
        return self.subject


class SsoSession(models.Model):
    """A session signed in through the identity provider, and what Confab needs to ask it
    again, every OIDC_RECHECK_S, whether that person may still come in."""

    session_key = models.CharField(max_length=40, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_sessions"
    )
    refresh_token = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True)
    checked = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("single sign-on session")
        verbose_name_plural = _("single sign-on sessions")

    def __str__(self):
        return f"{self.user} {self.checked:%Y-%m-%d %H:%M}"
