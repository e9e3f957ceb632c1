"""Chinese, complete: every page and every admin page, rendered in zh-hans, shows no English
word of its interface. Data people typed stays as typed, so the data here is Chinese too."""

import json
import re
import uuid
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from conversations.models import (
    ApiKey,
    Conversation,
    LanguageModel,
    Message,
    Preferences,
    Provider,
    Quota,
    SiteSettings,
    UsageRecord,
)

pytestmark = pytest.mark.django_db

# Words that are the same in a Chinese interface: names, formats, protocols, units, keys.
KEPT = {
    "Confab", "JSON", "Markdown", "API", "URL", "URLs", "HTTP", "HTTPS", "GET", "POST", "CSV",
    "token", "tokens", "ID", "id", "USD", "CNY", "EUR", "OpenAI", "SmolLM2", "English", "ms",
    "Enter", "Shift", "Esc", "UTC", "TLS", "DNS", "docs", "md", "Bearer", "qwen", "sk",
    "Temml", "UUID", "JavaScript", "Chat", "Completions", "https", "http", "example", "com",
    "chat", "v1", "HTTP-Referer", "Referer", "top_p", "top_k", "max_tokens", "logit_bias",
    "reasoning_effort", "high", "json_object", "json_schema", "type", "text", "temperature",
    "min_p", "stop", "seed", "n", "none", "auto", "required", "user", "presence_penalty",
    "frequency_penalty", "response_format", "tool_choice", "tools", "max_completion_tokens",
    "SmolLM", "completions", "Token", "providers", "LDAP",
    # The API's own names for what the settings set, kept beside their Chinese ("Top p",
    # "Logit 偏置", "Auto：由模型决定"), and an example of the tools' JSON.
    "Top", "Logit", "Schema", "schema", "Auto", "None", "Required", "description", "function",
    "name", "parameters", "presence", "frequency", "penalty",
    # Keys, as Django's own Chinese names them ("按住 Control 键，或者 Mac 上的 Command 键").
    "Control", "Command", "Mac",
    # Django admin's yes/no icons: their alt text is not translatable in Django.
    "True", "False",
    # Units and file formats; a tool server's examples: a header, a tool's approval in JSON;
    # MCP's name for its transport.
    "MB", "PDF", "DOCX", "HTML", "Authorization", "delete_file", "ask", "MCP", "Streamable",
}  # fmt: skip
WORD = re.compile(r"[A-Za-z][A-Za-z_'’-]*[A-Za-z]")
# Not words of the interface: addresses, and the placeholders of a string for a script.
NOT_WORDS = re.compile(r"\S+://\S+|(?<![\w.])/[\w/.-]+|%\(\w+\)s|%s|[0-9a-f-]{36}|\b[0-9a-f]{8,}\b")
# Django stores permission names in English, in the database, when it migrates.
PERMISSIONS = {"permissions", "user_permissions"}
SHOWN_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "label"}


class Words(HTMLParser):
    """The words a person reads: text, labels in attributes, button values, and the
    interface's strings a page hands its script (ui-text)."""

    def __init__(self):
        super().__init__()
        self.found, self.skip, self.ui_text = [], 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        # bdi: where Django's admin shows a value as it is (a password's hash).
        if tag in ("script", "style", "bdi") or (
            tag == "select" and attrs.get("name") in PERMISSIONS
        ):
            self.skip += 1
            self.ui_text = attrs.get("id") == "ui-text"
        for name, value in attrs.items():
            if value and name in SHOWN_ATTRIBUTES:
                self.found.append(value)
            if value and name == "data-names":  # the theme button's names for each theme
                self.found += json.loads(value).values()
        if tag == "input" and attrs.get("type") in ("submit", "button") and attrs.get("value"):
            self.found.append(attrs["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style", "select", "bdi") and self.skip:
            self.skip -= 1
            self.ui_text = False

    def handle_data(self, data):
        if self.ui_text:
            self.found += [v for v in json.loads(data).values() if isinstance(v, str)]
        elif not self.skip:
            self.found.append(data)


def english(html):
    parser = Words()
    parser.feed(html)
    words = {w for text in parser.found for w in WORD.findall(NOT_WORDS.sub(" ", text))}
    return sorted(w for w in words if w not in KEPT and not w.startswith("sk-"))


@pytest.fixture
def everything(db, fake_upstream):
    """One of each thing, named in Chinese, for every page to have something to show."""
    boss = get_user_model().objects.create_superuser("管理员", "", "correct horse 42")
    member = get_user_model().objects.create_user("小明", "", "correct horse 42")
    group = Group.objects.create(name="研究组")
    member.groups.add(group)
    provider = Provider.objects.create(name="本地服务", base_url=fake_upstream.url)
    Provider.objects.create(
        name="备用服务", base_url="http://127.0.0.1:9/v1", status="unreachable",
        status_reason="refused",
    )  # fmt: skip
    model = LanguageModel.objects.create(
        provider=provider, upstream_id="qwen3", display_name="千问"
    )
    model.prices.create(effective_from=timezone.now() - timedelta(days=1), input=1, output=2)
    Preferences.objects.create(user=boss, model=model, system_prompt="简洁地回答。")
    SiteSettings.objects.create(pk=1, default_model=model, title_model=model)
    conversation = Conversation.objects.create(owner=boss, title="茶的历史", model=model)
    question = Message.objects.create(conversation=conversation, role="user", content="讲讲茶。")
    request_id = uuid.uuid4()
    answer = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", content="茶起源于中国。",
        model=model, model_name="qwen3", request_id=request_id, prompt_tokens=6000,
        completion_tokens=2301, total_tokens=8301, cached_tokens=1200, reasoning_tokens=300,
        cost="0.01060200", currency="USD", ttft_ms=240, duration_ms=900, finish_reason="length",
        request={"model": "qwen3", "messages": []},
    )  # fmt: skip
    Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="failed",
        model=model, model_name="qwen3", failure="unreachable", error="Could not reach …",
    )  # fmt: skip
    UsageRecord.objects.create(
        request_id=request_id, user=boss, conversation=conversation, message=answer,
        provider=provider, model=model, model_name="qwen3", status="complete",
        prompt_tokens=6000, completion_tokens=2301, total_tokens=8301, cost="0.0106",
    )  # fmt: skip
    Quota.objects.create(user=boss, max_tokens=100_000, max_cost=5)
    Quota.objects.create(group=group, max_tokens=50_000)
    ApiKey.objects.create(user=boss, name="我的脚本", prefix="12345678", digest="x" * 64)
    return {"boss": boss, "conversation": conversation, "answer": answer}


def chinese_client(user=None):
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    if user is not None:
        client.force_login(user)
    return client


def pages(everything):
    conversation = everything["conversation"]
    yield reverse("chat")
    yield reverse("conversation", args=[conversation.id])
    yield reverse("settings", args=[conversation.id])
    yield reverse("settings", args=[conversation.id]) + "?panel=1"
    yield reverse("preferences")
    yield reverse("my_usage")
    yield reverse("search") + "?q=茶"
    yield reverse("api_keys")
    yield reverse("password_change")
    yield reverse("password_change_done")
    yield reverse("admin:index")
    yield reverse("admin:conversations_usagerecord_dashboard")
    for model, model_admin in admin.site._registry.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        yield reverse(f"{name}_changelist")
        if model_admin.has_add_permission(_as(everything["boss"])):
            yield reverse(f"{name}_add")
        first = model.objects.order_by("pk").first()
        if first is not None:
            yield reverse(f"{name}_change", args=[first.pk])


def _as(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


def test_every_page_and_the_admin_speak_chinese(everything):
    client = chinese_client(everything["boss"])
    untranslated = {}
    for url in pages(everything):
        response = client.get(url, follow=True)
        assert response.status_code == 200, url
        if words := english(response.content.decode()):
            untranslated[url] = words

    assert untranslated == {}, json.dumps(untranslated, ensure_ascii=False, indent=0)


def test_the_pages_before_signing_in_speak_chinese(everything):
    client = chinese_client()
    untranslated = {}
    for url in (reverse("login"), reverse("signup"), reverse("admin:login")):
        if words := english(client.get(url).content.decode()):
            untranslated[url] = words

    assert untranslated == {}, json.dumps(untranslated, ensure_ascii=False, indent=0)


def test_every_model_has_a_name_and_a_plural_in_chinese(everything):
    client = chinese_client(everything["boss"])
    index = client.get(reverse("admin:index")).content.decode()

    for model in apps.get_app_config("conversations").get_models():
        assert {"verbose_name", "verbose_name_plural"} <= model._meta.original_attrs.keys()
    with translation.override("zh-hans"):
        for model in admin.site._registry:
            name, plural = str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
            assert english(f"<p>{name} {plural}</p>") == [], model._meta.label
            assert plural in index
    assert "模型s" not in index and "配额s" not in index and "用量记录s" not in index
