"""Single sign-on through a real OpenID Connect provider on loopback (django-oauth-toolkit):
accounts made at first sign-in where allowed, groups from a claim, invitations through the
provider, a person disabled or deleted there signed out at the next check with their sockets
closed, model access and quotas that follow the groups the provider gives, and "SSO only", which
refuses passwords but those of break-glass administrators."""

import re
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.membership import sso
from conversations.models import (
    BreakGlassAccount,
    Invitation,
    LanguageModel,
    Quota,
    SsoIdentity,
    SsoSession,
)
from tests.helpers import PASSWORD, open_socket, refused_code
from tests.identity_provider import settings_for

CALLBACK = "http://testserver/accounts/sso/callback/"


@pytest.fixture
def idp(identity_provider, settings):
    settings_for(identity_provider, settings, CONFAB_SSO_GROUPS_CLAIM="groups")
    identity_provider.allow_redirect(CALLBACK)
    return identity_provider


def person(idp, groups=(), domain="example.com"):
    """Someone new at the provider: their username."""
    name = f"p{uuid.uuid4().hex[:8]}"
    idp.add_user(name, f"{name}@{domain}", PASSWORD, groups)
    return name


def sign_in_with_sso(client, idp, username, start="/accounts/sso/authenticate/"):
    started = client.get(start) if start.startswith("/accounts/") else client.post(start)
    if started.url.startswith("/"):  # an invitation goes through Confab's own start first
        started = client.get(started.url)
    callback = idp.sign_in(started.url, username, PASSWORD)
    return None if callback is None else client.get(callback)


def signed_in(client):
    return client.get(reverse("chat")).status_code == 200


@pytest.mark.django_db
def test_a_new_person_lands_in_confab_in_the_mapped_groups(client, idp):
    engineers = Group.objects.create(name="engineers")
    Group.objects.create(name="sales")
    name = person(idp, groups=["engineers", "not-in-confab"])

    response = sign_in_with_sso(client, idp, name)

    assert response.status_code == 302 and response.url == reverse("chat")
    assert signed_in(client)
    user = get_user_model().objects.get(username=name)
    assert user.email == f"{name}@example.com"
    assert list(user.groups.all()) == [engineers]
    assert not user.has_usable_password()
    identity = SsoIdentity.objects.get(user=user)
    assert identity.issuer == idp.issuer
    assert SsoSession.objects.get(user=user).refresh_token

    # The next sign-in is the same account, found by the idp's `sub`.
    again = Client()
    sign_in_with_sso(again, idp, name)
    assert signed_in(again)
    assert get_user_model().objects.filter(email=f"{name}@example.com").count() == 1


@pytest.mark.django_db
def test_no_account_is_made_unasked_when_creation_is_off(client, idp, settings):
    settings.OIDC_CREATE_USER = False
    name = person(idp)

    response = sign_in_with_sso(client, idp, name)

    assert response.status_code == 403
    assert "There is no Confab account for you yet" in response.content.decode()
    assert not get_user_model().objects.filter(username=name).exists()
    assert not signed_in(client)


@pytest.mark.django_db
def test_only_the_allowed_domains_get_accounts(client, idp, settings):
    settings.CONFAB_SSO_ALLOWED_DOMAINS = ["example.org"]
    outsider = person(idp, domain="example.com")
    insider = person(idp, domain="example.org")

    refused = sign_in_with_sso(client, idp, outsider)
    sign_in_with_sso(Client(), idp, insider)

    assert refused.status_code == 403
    assert "Accounts are made for addresses at example.org only." in refused.content.decode()
    assert not get_user_model().objects.filter(username=outsider).exists()
    assert get_user_model().objects.filter(username=insider).exists()


@pytest.mark.django_db
def test_an_invitation_lets_its_invitee_in_through_the_provider(client, idp, settings, alice):
    settings.OIDC_CREATE_USER = False
    settings.CONFAB_SSO_GROUPS_CLAIM = ""  # groups from the invitation, then
    designers = Group.objects.create(name="designers")
    name = person(idp)
    invitation, token = Invitation.create(f"{name}@example.com", alice, 7, [designers])
    page = client.get(reverse("accept_invitation", args=[token])).content.decode()
    assert "Sign in with Test IdP" in page

    response = sign_in_with_sso(client, idp, name, start=reverse("invitation_sso", args=[token]))

    assert response.url == reverse("chat")
    user = get_user_model().objects.get(username=name)
    assert list(user.groups.all()) == [designers]
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.ACCEPTED and invitation.user == user


@pytest.mark.django_db
def test_an_id_token_from_another_issuer_is_refused(client, idp, settings):
    settings.OIDC_ISSUER = "http://127.0.0.1:9/elsewhere"
    name = person(idp)

    response = sign_in_with_sso(client, idp, name)

    assert response.status_code == 403
    assert "Single sign-on did not sign you in." in response.content.decode()
    assert not signed_in(client)


@pytest.mark.django_db
def test_a_disabled_person_is_signed_out_at_their_next_page_after_the_check_interval(client, idp):
    name = person(idp)
    sign_in_with_sso(client, idp, name)
    assert signed_in(client)

    idp.set_active(name, False)
    assert signed_in(client)  # not yet due
    SsoSession.objects.update(checked=timezone.now() - timedelta(hours=1))
    response = client.get(reverse("chat"), follow=True)

    assert response.redirect_chain[-1][0].startswith(reverse("login"))
    assert "Your single sign-on no longer lets you in." in response.content.decode()
    assert not SsoSession.objects.exists()
    # And the idp refuses a new sign-in.
    assert sign_in_with_sso(Client(), idp, name) is None


@pytest.mark.django_db
def test_a_check_keeps_an_allowed_person_and_follows_their_groups(client, idp):
    Group.objects.create(name="engineers")
    name = person(idp, groups=["engineers"])
    sign_in_with_sso(client, idp, name)
    idp.shell(
        "from django.contrib.auth.models import User;"
        f"User.objects.get(username={name!r}).groups.clear()"
    )
    SsoSession.objects.update(checked=timezone.now() - timedelta(hours=1))

    sso.recheck_due()

    assert signed_in(client)
    assert not get_user_model().objects.get(username=name).groups.exists()
    assert SsoSession.objects.get().checked > timezone.now() - timedelta(minutes=1)


def disable(idp, name):
    idp.set_active(name, False)


def delete(idp, name):
    """The provider forgets the person, and their tokens with them."""
    idp.shell(
        f"from django.contrib.auth.models import User; User.objects.get(username={name!r}).delete()"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("gone", [disable, delete], ids=["disabled", "deleted"])
async def test_a_person_disabled_or_deleted_at_the_provider_is_signed_out_at_the_next_check(
    idp, gone
):
    client = Client()
    name = await database_sync_to_async(person)(idp)
    await database_sync_to_async(sign_in_with_sso)(client, idp, name)
    socket = await open_socket(client=client)
    await socket.send(type="subscribe", conversation=str(uuid.uuid4()))
    assert (await socket.receive())["code"] == "not_found"  # open, and answering

    await database_sync_to_async(gone)(idp, name)
    await database_sync_to_async(SsoSession.objects.update)(
        checked=timezone.now() - timedelta(hours=1)
    )
    await database_sync_to_async(sso.recheck_due)()

    assert await refused_code(socket.communicator) == 4401
    await socket.close()
    assert not await database_sync_to_async(signed_in)(client)
    assert not await database_sync_to_async(SsoSession.objects.exists)()
    assert await database_sync_to_async(sign_in_with_sso)(Client(), idp, name) is None


def offered_models(client):
    return {option["label"] for option in client.get(reverse("offered_models")).json()["options"]}


@pytest.mark.django_db
def quota_shown(client):
    """The quota the person's own usage page says applies to them, or None."""
    page = client.get(reverse("my_usage")).content.decode()
    if "No quota applies to you." in page:
        return None
    return re.search(r"<strong>([^<]+ per [^<]+)</strong>", page)[1]


@pytest.mark.django_db
def test_a_model_and_a_quota_for_a_group_follow_the_group_the_provider_puts_a_person_in(
    client, idp, model
):
    research = Group.objects.create(name="Research")
    restricted = LanguageModel.objects.create(
        provider=model.provider, upstream_id="deep-thought", display_name="Deep Thought"
    )
    restricted.groups.add(research)
    Quota.objects.create(group=research, period=Quota.Period.DAY, max_tokens=5_000)
    name = person(idp, groups=["Research"])
    sign_in_with_sso(client, idp, name)

    assert offered_models(client) == {"Fake model", "Deep Thought"}
    assert quota_shown(client) == "Research per day"

    idp.shell(
        "from django.contrib.auth.models import User;"
        f"User.objects.get(username={name!r}).groups.clear()"
    )
    assert "Deep Thought" in offered_models(client)  # the check is not due yet
    SsoSession.objects.update(checked=timezone.now() - timedelta(hours=1))

    assert offered_models(client) == {"Fake model"}  # checked first, then offered
    assert quota_shown(client) is None
    assert signed_in(client)
    assert not get_user_model().objects.get(username=name).groups.exists()


@pytest.mark.django_db
def test_the_sign_in_page_offers_the_provider_by_the_name_given_and_keeps_its_fields(
    client, alice, idp
):
    # Someone has an account: a fresh install's sign-in leads to creating the first.
    page = client.get(reverse("login")).content.decode()

    assert "Sign in with Test IdP" in page
    assert 'name="username"' in page and 'name="password"' in page
    assert "Forgot your password?" in page


@pytest.mark.django_db
def test_without_a_provider_there_is_no_button_and_no_sso_pages(client):
    page = client.get(reverse("login")).content.decode()

    assert "Sign in with" not in page
    assert client.get("/accounts/sso/authenticate/").status_code == 404


def password_sign_in(client, username, path=None):
    data = {"username": username, "password": PASSWORD}
    return client.post(path or reverse("login"), data)


@pytest.mark.django_db
def test_sso_only_refuses_passwords_but_break_glass_administrators(client, alice, bob, settings):
    bob.is_staff = bob.is_superuser = True
    bob.save()
    BreakGlassAccount.objects.create(user=bob, note="in the safe")
    signed_in_before = Client()
    signed_in_before.force_login(alice)
    settings.CONFAB_SSO_ONLY = True

    refused = password_sign_in(client, "alice")
    admin_refused = password_sign_in(Client(), "alice", "/admin/login/")
    allowed = password_sign_in(Client(), "bob", "/admin/login/")

    assert refused.status_code == 200 and not signed_in(client)
    assert "Please enter a correct username and password" in refused.content.decode()
    assert admin_refused.status_code == 200
    assert allowed.status_code == 302
    # A password session opened before SSO only ends with it.
    assert not signed_in(signed_in_before)
    page = client.get(reverse("login")).content.decode()
    assert "Passwords are for break-glass administrator accounts only." in page
    assert "Forgot your password?" not in page


@pytest.mark.django_db
def test_sso_only_closes_sign_up_and_invitations_by_password(client, alice, settings):
    settings.CONFAB_SSO_ONLY = True
    _, token = Invitation.create("dana@example.com", alice, 7)
    url = reverse("accept_invitation", args=[token])

    assert client.get(reverse("signup")).status_code == 403
    form = {"username": "dana", "password1": PASSWORD, "password2": PASSWORD}
    assert client.post(url, form).status_code == 200
    assert not get_user_model().objects.filter(username="dana").exists()


@pytest.mark.django_db
def test_under_sso_only_the_first_account_is_a_break_glass_administrator(client, settings):
    settings.CONFAB_SSO_ONLY = True

    client.post(
        reverse("signup"), {"username": "root", "password1": PASSWORD, "password2": PASSWORD}
    )

    root = get_user_model().objects.get(username="root")
    assert root.is_superuser and BreakGlassAccount.objects.filter(user=root).exists()
    assert signed_in(client)
