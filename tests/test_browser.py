"""A whole journey in Debian's chromium, driven by Playwright, against `manage.py serve`."""

import pytest
from playwright.sync_api import expect

from tests.fake_upstream import http_error, reply
from tests.helpers import JOURNEY_PARTS, ask, sign_up

pytestmark = pytest.mark.browser


def test_a_first_user_signs_up_chats_reloads_mid_reply_and_finds_the_reply_saved(server, page):
    page.goto(server + "/")  # the first visit to a fresh install
    expect(page.get_by_role("heading", name="Create the administrator account")).to_be_visible()
    expect(page.get_by_text("this account will be the administrator")).to_be_visible()
    sign_up(page, server)

    ask(page, "Count for me")

    streaming = page.locator('article.role-assistant[data-status="streaming"]')
    expect(streaming.locator(".message-body")).to_contain_text("word2")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    assert "word49" not in streaming.inner_text()  # text arrived before the reply finished
    expect(page).to_have_url(f"{server}/c/" + page.url.split("/c/")[1])
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text("Count for me")

    page.reload()

    expect(page.locator('article.role-assistant[data-status="streaming"]')).to_have_count(1)
    done = page.locator('article.role-assistant[data-status="complete"]')
    expect(done).to_have_count(1, timeout=15_000)
    expect(done.locator(".message-body")).to_have_text("".join(JOURNEY_PARTS).strip())
    expect(done.locator(".usage")).to_have_text("20 + 50 = 70 tokens")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()

    page.reload()
    expect(page.locator("article.role-assistant .message-body")).to_have_text(
        "".join(JOURNEY_PARTS).strip()
    )
    expect(page.locator("article.role-user .message-body")).to_have_text("Count for me")


def test_two_tabs_stay_in_sync_and_stop_from_either(server, context):
    first, second = context.new_page(), context.new_page()
    sign_up(first, server)
    second.goto(server + "/")

    ask(first, "Count slowly")

    sidebar = second.get_by_role("navigation", name="Conversations")
    expect(sidebar.get_by_role("link", name="Count slowly")).to_be_visible()
    second.get_by_role("link", name="Count slowly").click()
    streaming = second.locator('article.role-assistant[data-status="streaming"] .message-body')
    expect(streaming).to_contain_text("word3")
    second.get_by_role("button", name="Stop").click()

    for page in (first, second):
        stopped = page.locator('article.role-assistant[data-status="cancelled"]')
        expect(stopped).to_have_count(1)
        expect(stopped.locator(".status")).to_have_text("Stopped")
        expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    texts = [
        p.locator("article.role-assistant .message-body").inner_text() for p in (first, second)
    ]
    assert texts[0] == texts[1] and "".join(JOURNEY_PARTS).startswith(texts[0])


def test_a_dropped_connection_recovers_with_the_exact_text(server, page):
    sign_up(page, server)
    ask(page, "Count slowly")
    body = page.locator('article.role-assistant[data-status="streaming"] .message-body')
    expect(body).to_contain_text("word2")

    page.evaluate("window.confab.socket.drop()")
    expect(page.locator("#connection")).to_have_text("Connection lost. Reconnecting…")
    expect(page.locator("#connection")).to_be_hidden()

    full = "".join(JOURNEY_PARTS)
    seen = []
    streaming_text = """() => document.querySelector(
        'article.role-assistant[data-status="streaming"] .message-body')?.innerText ?? ''"""
    while page.locator('article.role-assistant[data-status="streaming"]').count():
        # Read in one step: the reply may end between a check and a read.
        text = page.evaluate(streaming_text)
        seen.append(text)
        page.wait_for_timeout(150)
    assert all(full.startswith(text.strip()) or not text for text in seen), seen
    done = page.locator('article.role-assistant[data-status="complete"] .message-body')
    expect(done).to_have_text(full.strip())


def test_a_message_written_offline_is_sent_when_the_connection_is_back(
    server, context, console_errors
):
    console_errors.allow("WebSocket connection to .* failed")  # reconnecting while offline
    page = context.new_page()
    sign_up(page, server)
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)
    page.locator("#model-picker").select_option(label="slow-model")

    context.set_offline(True)
    page.evaluate("window.confab.socket.drop()")
    expect(page.locator("#connection")).to_have_text("Connection lost. Reconnecting…")
    page.get_by_label("Message").fill("Written offline")
    page.get_by_label("Message").press("Enter")

    expect(page.locator("#composer-error")).to_have_text(
        "Not connected: your message will be sent as soon as the connection is back."
    )
    expect(page.locator("article.role-user")).to_have_count(0)  # not sent yet
    context.set_offline(False)

    expect(page.locator("article.role-user .message-body")).to_have_text("Written offline")
    expect(page.locator("#composer-error")).to_be_hidden()
    done = page.locator('article.role-assistant[data-status="complete"] .message-body')
    expect(done).to_have_text("".join(JOURNEY_PARTS).strip(), timeout=15_000)
    expect(page.locator("article.role-user")).to_have_count(1)  # sent once, not twice


def test_an_administrator_sets_up_a_model_and_a_quota_that_a_user_runs_into(
    server, context, fake_upstream
):
    fake_upstream.script("team-model", reply(["Hello ", "Bob."], usage=(20, 20)))
    admin = context.new_page()
    sign_up(admin, server)

    admin.goto(server + "/admin/conversations/provider/add/")
    admin.get_by_label("Name:").fill("Relay")
    admin.get_by_label("Base URL:").fill(fake_upstream.url)
    admin.get_by_label("API key:").fill("sk-relay-secret-9a1f")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.get_by_text("set, ends in …9a1f")).to_be_visible()
    for action, message in [
        ("Test connection (GET /models)", "Relay answers:"),
        ("Sync models (add new ones, disabled)", "disabled until you enable"),
    ]:
        admin.get_by_role("row", name="Relay").get_by_role("checkbox").check()
        admin.get_by_label("Action:").select_option(label=action)
        admin.get_by_role("button", name="Go").click()
        expect(admin.locator(".messagelist")).to_contain_text(message)

    admin.goto(server + "/admin/conversations/languagemodel/?provider__id__exact=2")
    admin.get_by_role("link", name="team-model").click()
    admin.get_by_label("Display name:").fill("Team model")
    admin.get_by_label("Enabled").check()
    admin.get_by_label("Max output tokens:").fill("20")
    admin.locator("#id_prices-0-input").fill("1.5")
    admin.locator("#id_prices-0-output").fill("6")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("was changed successfully")

    admin.goto(server + "/admin/auth/user/add/")
    admin.get_by_label("Username:").fill("bob")
    admin.locator("#id_password1").fill("correct horse 42")
    admin.locator("#id_password2").fill("correct horse 42")
    admin.get_by_role("button", name="Save", exact=True).click()
    admin.get_by_text("Add another Quota").click()
    admin.locator("#id_quotas-0-max_tokens").fill("60")
    admin.get_by_role("button", name="Save", exact=True).click()
    expect(admin.locator(".messagelist")).to_contain_text("was changed successfully")

    bob = context.browser.new_context().new_page()
    bob.goto(server + "/accounts/login/")
    bob.get_by_label("Username").fill("bob")
    bob.get_by_label("Password").fill("correct horse 42")
    bob.get_by_role("button", name="Sign in").click()
    ask(bob, "Hello there", model="Team model")
    expect(bob.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    expect(bob.locator(".usage")).to_have_text("20 + 20 = 40 tokens")
    ask(bob, "And again", model="Team model")
    expect(bob.get_by_role("alert")).to_contain_text(
        "You have used 40 of your 60 tokens this month"
    )
    expect(bob.get_by_label("Message")).to_have_value("And again")  # nothing lost
    bob.context.close()

    admin.goto(server + "/admin/conversations/usagerecord/dashboard/")
    expect(admin.locator("#top-users")).to_contain_text("bob")
    expect(admin.locator("#dashboard-totals")).to_contain_text("40")


def test_a_chinese_browser_gets_the_chinese_ui(server, context):
    chinese = context.browser.new_context(locale="zh-CN").new_page()
    chinese.goto(server + "/")
    expect(chinese.get_by_role("heading", name="创建管理员账户")).to_be_visible()
    chinese.get_by_label("用户名").fill("李雷")
    chinese.locator("#id_password1").fill("correct horse 42")
    chinese.locator("#id_password2").fill("correct horse 42")
    chinese.get_by_role("button", name="注册").click()

    expect(chinese.locator('body[data-connection="open"]')).to_have_count(1)
    chinese.get_by_label("模型", exact=True).select_option(label="fake-model")
    chinese.get_by_label("消息", exact=True).fill("你好")
    chinese.get_by_label("消息", exact=True).press("Enter")

    reply = chinese.locator('article.role-assistant[data-status="complete"]')
    expect(reply.locator(".message-body")).to_have_text("You said: 你好")
    expect(reply.locator(".usage")).to_have_text("11 + 7 = 18 个 token")
    expect(chinese.get_by_role("link", name="新对话")).to_be_visible()
    # The protocol's errors come in the page's language too, and the page shows them.
    chinese.evaluate(
        'window.confab.socket.send({type: "stop", message: "00000000-0000-4000-8000-000000000000"})'
    )
    expect(chinese.get_by_role("alert")).to_have_text("没有这条消息。")
    chinese.context.close()


def test_code_blocks_copy_and_escape_stops(server, context):
    code = "def add(a, b):\n    return a + b"
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    sign_up(page, server)

    ask(page, f"\n\n```python\n{code}\n```", model="fake-model")  # echoed back
    block = page.locator("article.role-assistant pre")
    block.get_by_role("button", name="Copy").click()
    expect(block.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == code

    ask(page, "Count slowly")
    expect(page.locator('article.role-assistant[data-status="streaming"]')).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.locator('article.role-assistant[data-status="cancelled"]')).to_have_count(1)


def test_a_failed_reply_offers_retry(server, context, fake_upstream):
    calls = []

    def flaky(body):
        calls.append(body)
        return http_error(500, "The model is overloaded") if len(calls) == 1 else reply(["Fine."])

    fake_upstream.script("fake-model", flaky)
    page = context.new_page()
    sign_up(page, server)

    ask(page, "Hello?", model="fake-model")
    failed = page.locator('article.role-assistant[data-status="failed"]')
    expect(failed.locator(".error")).to_have_text(
        "The provider “Default” had a problem answering. Try again, or ask an administrator."
    )
    failed.get_by_role("button", name="View request").click()  # the detail is there
    drawer = page.get_by_role("dialog", name="Request sent upstream")
    expect(drawer.locator("#request-usage")).to_contain_text(
        "The provider refused the request (HTTP 500): The model is overloaded"
    )
    drawer.get_by_role("button", name="Close").click()
    failed.get_by_role("button", name="Retry").click()

    done = page.locator('article.role-assistant[data-status="complete"]')
    expect(done.locator(".message-body")).to_have_text("Fine.")
    expect(page.locator("article.role-assistant")).to_have_count(1)


def test_editing_a_message_starts_a_new_branch(server, page):
    sign_up(page, server)
    ask(page, "Tell me about cats", model="fake-model")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)

    page.locator("article.role-user").get_by_role("button", name="Edit").click()
    expect(page.get_by_label("Message")).to_have_value("Tell me about cats")
    page.get_by_label("Message").fill("Tell me about dogs")
    page.get_by_label("Message").press("Enter")

    reply = page.locator('article.role-assistant[data-status="complete"] .message-body')
    expect(reply).to_have_text("You said: Tell me about dogs")
    expect(page.locator("article.role-user .message-body")).to_have_text("Tell me about dogs")
    page.reload()
    expect(page.locator("article.role-user .message-body")).to_have_text("Tell me about dogs")


def test_a_hostile_reply_renders_harmlessly(server, page):
    dialogs, requests = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    # Every element the streaming view puts on the page, caught as each frame renders it.
    page.add_init_script("""
      window.streamed = { elements: 0, hostile: [] };
      new MutationObserver((records) => {
        for (const record of records) {
          if (!record.target.closest?.('article[data-status="streaming"] .message-body')) continue;
          for (const node of record.addedNodes) {
            if (node.nodeType !== Node.ELEMENT_NODE) continue;
            for (const element of [node, ...node.querySelectorAll("*")]) {
              window.streamed.elements += 1;
              const attributes = [...element.attributes];
              if (
                element.matches("script, img, iframe, svg, object, embed") ||
                attributes.some((a) => a.name.startsWith("on") || /^\\s*javascript:/i.test(a.value))
              ) window.streamed.hostile.push(element.outerHTML);
            }
          }
        }
      }).observe(document, { childList: true, subtree: true });
    """)
    sign_up(page, server)

    ask(page, "Say something nasty", model="hostile-model")
    streaming = page.locator('article.role-assistant[data-status="streaming"] .message-body')
    expect(streaming).to_contain_text("<script>")  # shown as text while it streams
    done = page.locator('article.role-assistant[data-status="complete"] .message-body')
    expect(done).to_contain_text("a link")
    streamed = page.evaluate("window.streamed")
    assert streamed["elements"] > 0  # the streaming view rendered markdown
    assert streamed["hostile"] == []
    assert dialogs == []
    assert [url for url in requests if not url.startswith(server)] == []
    page.reload()
    expect(done).to_contain_text("alert('fenced')")  # code stays code
    expect(done).to_contain_text("[click me](javascript:alert('link'))")  # no link made
    page.wait_for_timeout(300)  # time for any stray script or request to show itself

    assert dialogs == []
    assert [url for url in requests if not url.startswith(server)] == []
    body = page.locator("article.role-assistant .message-body")
    for tag in ("script", "img", "iframe", "svg"):
        assert body.locator(tag).count() == 0, tag
    assert body.locator("[onerror], [onload], [onclick]").count() == 0
    assert body.locator('a[href^="javascript"]').count() == 0
    injected = "iframe, script:not([src]):not([type='application/json'])"
    assert page.evaluate(f'document.querySelectorAll("{injected}").length') == 0


def test_rename_pin_delete_and_undo(server, page):
    sign_up(page, server)
    ask(page, "A conversation to tidy up", model="fake-model")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)
    page.reload()  # the page of the conversation itself, with its menu

    page.get_by_text("Manage").click()
    page.get_by_label("Title").fill("Tidy")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="Tidy")).to_be_visible()
    page.get_by_text("Manage").click()
    page.get_by_role("button", name="Pin", exact=True).click()
    expect(page.locator('li.day[data-day="pinned"]')).to_have_text("Pinned")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_text("Manage").click()
    page.locator(".conversation-menu").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status").filter(has_text="“Tidy” was deleted.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Conversations")).not_to_contain_text("Tidy")
    page.get_by_role("button", name="Undo delete").click()
    expect(page.get_by_role("heading", name="Tidy")).to_be_visible()
    expect(page.get_by_role("navigation", name="Conversations")).to_contain_text("Tidy")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_chat_page_has_no_serious_accessibility_violations(server, context, scheme):
    from axe_playwright_python.sync_playwright import Axe

    page = context.new_page()
    page.emulate_media(color_scheme=scheme)
    sign_up(page, server)
    ask(page, "Check me", model="fake-model")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)

    results = Axe().run(page)

    serious = [
        (v["id"], [n["target"] for n in v["nodes"]])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious


def test_a_phone_sized_screen_needs_no_sideways_scrolling(server, context):
    page = context.new_page()
    page.set_viewport_size({"width": 360, "height": 740})
    sign_up(page, server)
    ask(page, "A long question " * 20, model="fake-model")
    expect(page.locator('article.role-assistant[data-status="complete"]')).to_have_count(1)

    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    expect(page.get_by_label("Message")).to_be_in_viewport()
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()


def test_the_theme_follows_the_system_or_the_users_choice(server, context):
    page = context.new_page()
    page.emulate_media(color_scheme="light")
    sign_up(page, server)

    def background():
        return page.evaluate("getComputedStyle(document.body).backgroundColor")

    assert background() == "rgb(255, 255, 255)"
    toggle = page.locator("#theme-toggle")
    toggle.click()
    expect(toggle).to_have_text("Theme: light")
    toggle.click()
    expect(toggle).to_have_text("Theme: dark")
    assert background() == "rgb(22, 24, 29)"
    page.reload()
    assert background() == "rgb(22, 24, 29)"  # remembered
    page.locator("#theme-toggle").click()
    expect(page.locator("#theme-toggle")).to_have_text("Theme: system")
    assert background() == "rgb(255, 255, 255)"


def test_question_mark_lists_the_shortcuts_and_slash_goes_to_the_composer(server, page):
    sign_up(page, server)
    expect(page.locator('body[data-connection="open"]')).to_have_count(1)
    page.locator("body").click(position={"x": 5, "y": 700})

    page.keyboard.press("?")
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(shortcuts).to_be_visible()
    expect(shortcuts).to_contain_text("Shift + Enter")
    page.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()

    page.keyboard.press("/")
    expect(page.get_by_label("Message")).to_be_focused()
