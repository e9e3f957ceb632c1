"""Team accounts in Debian's chromium: an invitation and a password reset, each through a
real SMTP server on loopback, the message read and its link followed."""

import pytest
from playwright.sync_api import expect

from tests.helpers import PASSWORD, sign_up
from tests.mailbox import link

pytestmark = pytest.mark.browser

NEW_PASSWORD = "a brand new 93 password"


@pytest.fixture
def server_env(mailbox_server):
    mailbox_server.clear()
    return {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(mailbox_server.port)}


def sign_in(page, server, username, password):
    page.goto(server + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_an_invitation_by_email(server, context, mailbox_server, console_errors):
    console_errors.allow(r"status of 410 \(Gone\)")  # a spent link says so, as it should
    admin = context.new_page()
    sign_up(admin, server)
    admin.goto(server + "/admin/auth/group/add/")
    admin.get_by_label("Name").fill("engineers")
    admin.get_by_role("button", name="Save", exact=True).click()

    admin.goto(server + "/admin/conversations/invitation/")
    admin.get_by_role("link", name="Add invitation").click()
    admin.get_by_label("E-mail addresses").fill("Dana <dana@example.com>\nerin@example.com")
    admin.get_by_label("engineers").check()
    admin.get_by_role("button", name="Send invitations").click()
    expect(
        admin.get_by_text("Invitations sent to dana@example.com, erin@example.com.")
    ).to_be_visible()

    # Dana, in a browser of her own, follows the link of her e-mail.
    invitee = context.browser.new_context().new_page()
    invitee.goto(link(mailbox_server.wait_for("dana@example.com")))
    expect(invitee.get_by_text("Make the account of dana@example.com.")).to_be_visible()
    invitee.get_by_label("Username").fill("dana")
    invitee.locator("#id_password1").fill(PASSWORD)
    invitee.locator("#id_password2").fill(PASSWORD)
    invitee.get_by_role("button", name="Create my account").click()
    expect(invitee.get_by_text("Welcome to Confab!")).to_be_visible()
    expect(invitee.locator('body[data-connection="open"]')).to_have_count(1)

    # The administrator sees her invitation accepted, and Erin's pending; revokes Erin's.
    admin.goto(server + "/admin/conversations/invitation/?status=pending")
    expect(admin.get_by_role("link", name="erin@example.com")).to_be_visible()
    expect(admin.get_by_role("link", name="dana@example.com")).to_have_count(0)
    admin.get_by_role(
        "checkbox", name="Select this object for an action - erin@example.com"
    ).check()
    admin.locator("select[name=action]").select_option(label="Revoke the selected invitations")
    admin.get_by_role("button", name="Go").click()
    expect(admin.get_by_text("1 invitation revoked.")).to_be_visible()
    admin.goto(server + "/admin/auth/user/")
    admin.locator("#changelist-filter").get_by_role("link", name="engineers").click()
    expect(admin.get_by_role("link", name="alice", exact=True)).to_have_count(0)
    expect(admin.get_by_role("link", name="dana", exact=True)).to_be_visible()

    # Erin's link no longer works, nor Dana's a second time.
    other = context.browser.new_context().new_page()
    other.goto(link(mailbox_server.wait_for("erin@example.com")))
    expect(other.get_by_role("heading", name="This invitation no longer works")).to_be_visible()
    other.goto(link(mailbox_server.wait_for("dana@example.com")))
    expect(other.get_by_role("heading", name="This invitation no longer works")).to_be_visible()


def test_a_password_reset_by_email(server, page, mailbox_server):
    sign_up(page, server)
    page.goto(server + "/admin/auth/user/")
    page.get_by_role("link", name="alice", exact=True).click()
    page.get_by_label("Email address").fill("alice@example.com")
    page.get_by_role("button", name="Save", exact=True).click()
    page.goto(server + "/")
    page.get_by_role("button", name="Sign out").click()

    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("alice@example.com")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    page.goto(link(mailbox_server.wait_for("alice@example.com")))
    page.locator("#id_new_password1").fill(NEW_PASSWORD)
    page.locator("#id_new_password2").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_text("Your new password is set.")).to_be_visible()

    sign_in(page, server, "alice", PASSWORD)
    expect(page.get_by_text("Please enter a correct username and password")).to_be_visible()
    sign_in(page, server, "alice", NEW_PASSWORD)
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)
