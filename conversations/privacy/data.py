"""One person's data, for a data request: all of it exported as JSON, or deleted.

The export holds their files' extracted text and where each original is stored (an
administrator copies the originals from there: bytes do not belong in JSON). Deleting
removes their projects (other people's conversations in one stay, outside any project)
and their files, the stored bytes with the rows. It keeps the usage ledger: its rows are
the team's accounts of what was spent and hold no text (their conversation and message
are cleared with them). An account with ledger rows is therefore anonymised rather than
deleted; one without is deleted."""

from django.contrib.auth.hashers import make_password
from django.db import transaction

from conversations.models import (
    ApiKey,
    BreakGlassAccount,
    Conversation,
    ConversationReading,
    File,
    Invitation,
    Preferences,
    Project,
    SsoIdentity,
    SsoSession,
    UsageRecord,
)

LEDGER_FIELDS = ["created", "source", "model_name", "status", "prompt_tokens",
                 "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
                 "estimated", "cost", "currency", "ttft_ms", "duration_ms"]  # fmt: skip


def _date(value):
    return value.isoformat() if value else None


def export(user):
    """Everything Confab keeps about `user`, in one JSON-ready object."""
    identity = getattr(user, "sso_identity", None)
    preferences = Preferences.objects.filter(user=user).first()
    return {
        "account": {
            "username": user.get_username(),
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "date_joined": _date(user.date_joined),
            "last_login": _date(user.last_login),
            "is_active": user.is_active,
            "groups": sorted(user.groups.values_list("name", flat=True)),
            "single_sign_on": {"issuer": identity.issuer, "subject": identity.subject}
            if identity
            else None,
        },
        "preferences": {
            "model": preferences.model.upstream_id if preferences.model else None,
            "system_prompt": preferences.system_prompt,
            "params": preferences.params,
        }
        if preferences
        else None,
        # Deleted conversations too: they are kept until purged, so they are data held.
        "conversations": [
            {**c.export(), "deleted": _date(c.deleted)}
            for c in Conversation.objects.filter(owner=user).order_by("created")
        ],
        "projects": [
            {
                **project.to_dict(),
                "shared_with": sorted(project.groups.values_list("name", flat=True)),
                "editors": sorted(project.editors.values_list("name", flat=True)),
            }
            for project in Project.objects.filter(owner=user).order_by("created")
        ],
        # In a conversation, in a project, or uploaded and not sent yet.
        "files": [
            {**file.to_dict(), "stored_as": file.blob.name, "text": file.text()}
            for file in File.objects.filter(owner=user).order_by("created")
        ],
        "usage": [
            {
                **{name: getattr(record, name) for name in LEDGER_FIELDS},
                "created": _date(record.created),
                "cost": str(record.cost),
                "conversation": str(record.conversation_id or "") or None,
            }
            for record in UsageRecord.objects.filter(user=user).order_by("created")
        ],
        "api_keys": [
            {
                "name": key.name,
                "starts_with": key.prefix,
                "created": _date(key.created),
                "expires": _date(key.expires),
                "last_used": _date(key.last_used),
                "revoked": _date(key.revoked),
            }
            for key in ApiKey.objects.filter(user=user).order_by("created")
        ],
        "invitation": [
            {"email": i.email, "sent": _date(i.created), "accepted": _date(i.accepted)}
            for i in Invitation.objects.filter(user=user)
        ],
    }


def delete(user):
    """Delete `user`'s data; the account itself too unless the ledger names it, in which
    case it is anonymised and disabled. Return whether the account was deleted."""
    user_id = user.pk
    with transaction.atomic():
        Conversation.objects.filter(owner=user).delete()  # their messages with them
        Project.objects.filter(owner=user).delete()  # the files in them with them
        File.objects.filter(owner=user).delete()  # the stored bytes once committed
        ApiKey.objects.filter(user=user).delete()
        Preferences.objects.filter(user=user).delete()
        Invitation.objects.filter(email__iexact=user.email).exclude(email="").delete()
        Invitation.objects.filter(user=user).delete()
        anonymous = f"deleted-{user_id}"
        # The audit trail stays, without the person's name.
        ConversationReading.objects.filter(owner_name=user.get_username()).update(
            owner_name=anonymous
        )
        if not UsageRecord.objects.filter(user=user).exists():
            user.delete()  # its sessions' sockets are told by the delete signal
            return True
        user.username = anonymous
        user.email = user.first_name = user.last_name = ""
        user.password = make_password(None)
        user.is_active = user.is_staff = user.is_superuser = False
        user.save()  # a password change and a deactivation: its sockets close (sessions)
        user.groups.clear()
        user.user_permissions.clear()
        for model in (SsoSession, SsoIdentity, BreakGlassAccount):
            model.objects.filter(user=user).delete()
    return False
