"""Choosing a language: each named in its own script, applied at once, on every page."""

import pytest
from playwright.sync_api import expect

from tests.helpers import sign_up

pytestmark = pytest.mark.browser


def test_the_language_picker_names_each_language_in_its_own_script_and_applies_at_once(
    server, page
):
    sign_up(page, server)
    picker = page.locator("#language-picker")
    expect(picker.locator("option")).to_have_text(["English", "简体中文"])
    expect(page.get_by_role("button", name="Change language")).to_be_hidden()

    picker.select_option(label="简体中文")

    expect(page.get_by_role("heading", name="新对话")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.locator("#language-picker option")).to_have_text(["English", "简体中文"])
    page.locator("#language-picker").select_option(label="English")
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()


def test_the_sign_in_page_switches_language_at_once(server, context):
    page = context.browser.new_context().new_page()
    page.goto(server + "/accounts/signup/")
    page.locator("#language-picker").select_option(label="简体中文")
    expect(page.get_by_role("heading", name="创建管理员账户")).to_be_visible()
    page.context.close()
