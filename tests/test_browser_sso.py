"""Single sign-on in Debian's chromium, through a real OpenID Connect provider on loopback:
a new person signs in there, lands in Confab in the group the provider names, signs out and
in again; disabled at the provider, their open chat is signed out at the next check, and
the provider refuses them."""

import uuid

import pytest
from playwright.sync_api import expect

from tests.helpers import PASSWORD, sign_up

pytestmark = pytest.mark.browser


@pytest.fixture
def server_env(identity_provider):
    # A check every 2 s, so that the journey sees the one after the provider disables dana.
    return identity_provider.confab_env(OIDC_GROUPS_CLAIM="groups", OIDC_RECHECK_S="2")


def sign_in_at_the_provider(page, username):
    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in at the provider").click()


def test_single_sign_on(server, context, identity_provider):
    identity_provider.allow_redirect(server + "/accounts/sso/callback/")
    dana = f"dana-{uuid.uuid4().hex[:6]}"
    identity_provider.add_user(dana, f"{dana}@example.com", PASSWORD, groups=["engineers"])
    admin = context.new_page()
    sign_up(admin, server)
    admin.goto(server + "/admin/auth/group/add/")
    admin.get_by_label("Name").fill("engineers")
    admin.get_by_role("button", name="Save", exact=True).click()

    # Dana, new to Confab, signs in at the provider and lands in the chat.
    page = context.browser.new_context().new_page()
    page.goto(server + "/")
    sign_in_at_the_provider(page, dana)
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)

    # A new account, in the group the provider's `groups` claim names.
    admin.goto(server + "/admin/auth/user/")
    admin.locator("#changelist-filter").get_by_role("link", name="engineers").click()
    expect(admin.get_by_role("link", name=dana, exact=True)).to_be_visible()
    expect(admin.get_by_role("link", name="alice", exact=True)).to_have_count(0)

    # Out, and in again: the provider still knows her, so no password this time.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)

    # Disabled at the provider: the next check signs the open chat out.
    identity_provider.set_active(dana, False)
    expect(page.locator('body[data-connection="signed-out"]')).to_have_count(1, timeout=15000)
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # And she is refused there from now on.
    sign_in_at_the_provider(page, dana)
    expect(page.get_by_role("alert")).to_have_text(
        "Wrong username or password, or a disabled account."
    )
    page.goto(server + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
