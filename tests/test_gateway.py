"""The team gateway (/v1), driven by the official `openai` SDK against a running Confab
(`manage.py serve`, SQLite, the fake upstream as its provider), as a member's script
would: personal keys, every shape of answer, OpenAI's errors, quotas and the ledger."""

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import httpx
import openai
import pytest

from conversations.management.commands.serve import free_port
from tests.fake_upstream import chunk, http_error, reply, sse, stream_headers
from tests.helpers import API_KEY

ROOT = Path(__file__).resolve().parent.parent
SLOW = [f"w{i} " for i in range(40)]


class Confab:
    """`manage.py serve` on a database of its own, and its management commands."""

    def __init__(self, tmp_path, upstream_url):
        self.tmp_path = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "CONFAB_VAR_DIR": str(tmp_path),
            "OPENAI_BASE_URL": upstream_url,
            "OPENAI_API_KEY": API_KEY,
            "CONFAB_AUTO_TITLE": "false",
            "CONFAB_KEEP_ALIVE_S": "1",
            "CONFAB_USER_SENDS_PER_MINUTE": "1000",
            "CONFAB_USER_MAX_CONCURRENT": "50",
            # A provider that cannot be reached is tried three times: quickly, in tests.
            "CONFAB_RETRY_BASE_MS": "50",
        }
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def manage(self, *args):
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args], env=self.env, cwd=ROOT,
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip

    def sql(self, statement, *params):
        with sqlite3.connect(self.tmp_path / "confab.sqlite3") as db:
            return db.execute(statement, params).fetchall()

    def start(self):
        self.manage("migrate", "--noinput", "-v0")
        self.log = (self.tmp_path / "server.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port)],
            env=self.env, cwd=ROOT, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:  # another process: nothing to wait on but its port
            try:
                urlopen(self.url + "/accounts/login/", timeout=1).close()
                return self
            except (URLError, OSError):
                assert time.monotonic() < deadline and self.process.poll() is None
                time.sleep(0.2)

    def stop(self):
        self.process.terminate()
        self.process.wait(20)
        self.log.close()
        return (self.tmp_path / "server.log").read_text()

    def user_with_key(self, name, **quota):
        """A new user and a key of theirs (with a quota, when given)."""
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from conversations.models import Quota\n"
            f"user = get_user_model().objects.create_user({name!r}, password='pw-{name}-42')\n"
            f"if {quota!r}: Quota.objects.create(user=user, **{quota!r})\n"
        )
        self.manage("shell", "-c", script)
        return self.manage("create_api_key", name, "--name", "tests").strip().splitlines()[-1]

    def client(self, key, **options):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, **options)

    def key_from_form(self, username, **fields):
        """A key `username` (a user of user_with_key) makes on Settings → API keys, signed
        in with their password, filling the form's `fields`."""
        with httpx.Client(base_url=self.url, follow_redirects=True) as browser:
            login = browser.get("/accounts/login/").text
            browser.post("/accounts/login/", data={
                "username": username, "password": f"pw-{username}-42",
                "csrfmiddlewaretoken": token(login),
            }).raise_for_status()  # fmt: skip
            form = browser.get("/settings/keys/").text
            made = browser.post(
                "/settings/keys/", data={"csrfmiddlewaretoken": token(form), **fields}
            ).text
        return made.split('<code id="new-key">')[1].split("</code>")[0]

    def priced_model(self, upstream_id, input, output):
        """A model of the provider's, at `input` and `output` per million tokens."""
        self.manage("shell", "-c", (
            "from conversations.models import Provider\n"
            "provider = Provider.objects.get(name='Default')\n"
            f"model = provider.models.create(upstream_id={upstream_id!r})\n"
            f"model.prices.create(input={input}, output={output})\n"
        ))  # fmt: skip

    def settled(self, name):
        """`name`'s ledger rows once none is a reservation still streaming: (status,
        reached_provider, estimated, prompt_tokens, completion_tokens, cost)."""
        deadline = time.monotonic() + 10
        while True:  # another process settles: its ledger, looked at
            rows = self.sql(
                "SELECT r.status, r.reached_provider, r.estimated, r.prompt_tokens,"
                " r.completion_tokens, r.cost FROM conversations_usagerecord r"
                " JOIN auth_user u ON u.id = r.user_id WHERE u.username = ?",
                name,
            )
            if rows and all(row[0] != "streaming" for row in rows):
                return rows
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)

    def ledger(self, name):
        return self.sql(
            "SELECT r.status, r.source, r.estimated, r.prompt_tokens, r.completion_tokens,"
            " k.name FROM conversations_usagerecord r JOIN auth_user u ON u.id = r.user_id"
            " LEFT JOIN conversations_apikey k ON k.id = r.api_key_id WHERE u.username = ?",
            name,
        )


def token(page):
    """The CSRF token of a page's form."""
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


@pytest.fixture(scope="module")
def confab(tmp_path_factory, fake_upstream_server):
    server = Confab(tmp_path_factory.mktemp("gateway"), fake_upstream_server.url).start()
    yield server
    log = server.stop()
    assert "Traceback" not in log, log
    assert "ck-" not in log and API_KEY not in log, "no key in the server's log"


@pytest.fixture
def upstream(fake_upstream_server):
    fake_upstream_server.reset()
    return fake_upstream_server


@pytest.fixture
def key(confab, request):
    return confab.user_with_key(request.node.name.split("[")[0][5:40].replace("_", "")[:30])


def hello(**extra):
    return {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}], **extra}


def test_it_lists_the_models_its_key_may_use(confab, upstream, key):
    models = confab.client(key).models.list()

    assert "fake-model" in [m.id for m in models.data]


def test_a_whole_answer_with_its_usage(confab, upstream, key):
    answer = confab.client(key).chat.completions.create(**hello())

    assert answer.choices[0].message.content == "You said: hello"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, 7)


def test_a_streamed_answer_ends_with_usage_when_asked(confab, upstream, key):
    stream = confab.client(key).chat.completions.create(
        **hello(stream=True, stream_options={"include_usage": True})
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 18


def test_usage_is_not_passed_on_unless_asked(confab, upstream, key):
    chunks = list(confab.client(key).chat.completions.create(**hello(stream=True)))

    assert all(c.usage is None for c in chunks)
    assert confab.ledger(key and confab_user(confab, key))[0][:3] == ("complete", "api", 0)


def confab_user(confab, key):
    [(name,)] = confab.sql(
        "SELECT u.username FROM conversations_apikey k JOIN auth_user u ON u.id = k.user_id"
        " WHERE k.prefix = ?",
        key[:9],
    )
    return name


def test_two_choices(confab, upstream, key):
    upstream.script("fake-model", [
        stream_headers(),
        sse(chunk({"role": "assistant", "content": "One"}, index=0)),
        sse(chunk({"role": "assistant", "content": "Two"}, index=1)),
        sse(chunk(finish_reason="stop", index=0)), sse(chunk(finish_reason="stop", index=1)),
        sse(chunk(choices=False, usage={"prompt_tokens": 5, "completion_tokens": 2,
                                        "total_tokens": 7})),
        sse("[DONE]"),
    ])  # fmt: skip

    answer = confab.client(key).chat.completions.create(**hello(n=2))

    assert [c.message.content for c in answer.choices] == ["One", "Two"]
    assert confab.sql("SELECT count(*) FROM conversations_message")[0][0] == 0  # no chat


def test_tool_calls_carry_their_index_though_the_provider_gave_none(confab, upstream, key):
    def call(call_id, arguments):
        fragment = {"id": call_id, "type": "function",
                    "function": {"name": "lookup", "arguments": arguments}}  # fmt: skip
        return sse(chunk({"tool_calls": [fragment]}))

    upstream.script("fake-model", [
        stream_headers(), call("c1", '{"q": 1}'), call("c2", '{"q": 2}'),
        sse(chunk(finish_reason="tool_calls")), sse("[DONE]"),
    ])  # fmt: skip
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]

    stream = confab.client(key).chat.completions.create(**hello(stream=True, tools=tools))
    calls = [
        c.choices[0].delta.tool_calls for c in stream if c.choices and c.choices[0].delta.tool_calls
    ]

    assert [(c[0].index, c[0].id, c[0].function.arguments) for c in calls] == [
        (0, "c1", '{"q": 1}'), (1, "c2", '{"q": 2}'),
    ]  # fmt: skip


def test_json_mode_is_passed_on(confab, upstream, key):
    upstream.script("fake-model", reply(['{"a": 1}']))

    answer = confab.client(key).chat.completions.create(
        **hello(response_format={"type": "json_object"})
    )

    assert json.loads(answer.choices[0].message.content) == {"a": 1}
    assert upstream.requests[-1]["body"]["response_format"] == {"type": "json_object"}


def test_a_wrong_key_is_401(confab, upstream):
    with pytest.raises(openai.AuthenticationError) as refused:
        confab.client("ck-not-a-key").chat.completions.create(**hello())

    assert refused.value.code == "invalid_api_key"


def test_an_unknown_model_is_404(confab, upstream, key):
    with pytest.raises(openai.NotFoundError) as refused:
        confab.client(key).chat.completions.create(**hello(model="no-such-model"))

    assert refused.value.code == "model_not_found"


def test_a_bad_parameter_is_400_naming_it(confab, upstream, key):
    with pytest.raises(openai.BadRequestError) as refused:
        confab.client(key).chat.completions.create(**hello(temperature=5))

    assert refused.value.param == "temperature"
    assert upstream.requests == []


def test_over_quota_is_429_insufficient_quota_and_not_retried(confab, upstream):
    key = confab.user_with_key("poor", max_tokens=50)

    with pytest.raises(openai.RateLimitError) as refused:
        confab.client(key, max_retries=2).chat.completions.create(**hello())

    assert refused.value.code == "insufficient_quota"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert upstream.requests == []


def test_twenty_requests_at_once_against_a_quota_for_one(confab, upstream):
    # Held 3 s: every request arrives while the first is in flight, however loaded the machine.
    upstream.script("fake-model", reply(["ok"], delay=3, usage=(5, 1)))
    # One request reserves its prompt (about 5) and the site's bound (4,096): room for one.
    key = confab.user_with_key("racer", max_tokens=6000)
    client = confab.client(key, max_retries=0)
    outcomes = []

    def ask():
        try:
            outcomes.append(client.chat.completions.create(**hello()).choices[0].message.content)
        except openai.RateLimitError as refusal:
            outcomes.append(refusal.code)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["insufficient_quota"] * 19 + ["ok"]
    assert len(upstream.requests) == 1


def test_a_provider_error_mid_stream_reaches_the_caller(confab, upstream, key):
    upstream.script("fake-model", [stream_headers(), sse(chunk({"content": "Half"})),
                                   sse({"error": {"message": f"boom {API_KEY}"}})])  # fmt: skip

    with pytest.raises(openai.APIError) as failed:
        list(confab.client(key).chat.completions.create(**hello(stream=True)))

    assert "boom" in str(failed.value) and API_KEY not in str(failed.value)


def test_a_provider_that_refuses_is_a_502_with_its_message(confab, upstream, key):
    upstream.script("fake-model", http_error(400, f"context too long for {API_KEY}"))

    with pytest.raises(openai.APIStatusError) as failed:
        confab.client(key, max_retries=0).chat.completions.create(**hello())

    assert failed.value.status_code == 502
    assert "context too long" in str(failed.value) and API_KEY not in str(failed.value)


def test_a_caller_that_goes_away_stops_the_provider_and_is_charged_once(confab, upstream):
    upstream.script("fake-model", reply(SLOW, delay=0.1, usage=(9, 40)))
    key = confab.user_with_key("leaver")

    stream = confab.client(key).chat.completions.create(**hello(stream=True))
    first = next(iter(stream))
    stream.close()  # the script's process ends, its connection with it

    assert first.choices[0].delta.role == "assistant"
    assert upstream.wait_hung_up("fake-model")
    deadline = time.monotonic() + 10
    while not (rows := confab.ledger("leaver")) or rows[0][0] == "streaming":
        assert time.monotonic() < deadline, rows  # another process: its ledger, looked at
        time.sleep(0.1)
    [(status, source, estimated, _, completion, key_name)] = rows
    assert (status, source, estimated, key_name) == ("cancelled", "api", 1, "tests")
    assert 0 < completion < 40


def test_keep_alive_comments_while_the_model_thinks(confab, upstream, key):
    upstream.script("fake-model", [stream_headers(), 2.5, *reply(["late"])[1:]])

    with httpx.stream(
        "POST", confab.url + "/v1/chat/completions", json=hello(stream=True),
        headers={"Authorization": f"Bearer {key}"}, timeout=10,
    ) as response:  # fmt: skip
        lines = [line for line in response.iter_lines() if line]

    assert lines[0] == ": keep-alive"  # before the first token
    assert lines[-1] == "data: [DONE]"
    assert any('"late"' in line for line in lines)


def test_the_curl_example_of_the_docs_runs(confab, upstream, key):
    docs = (ROOT / "docs" / "api.md").read_text()
    example = docs.split("```sh\n", 1)[1].split("```", 1)[0]
    command = example.replace("http://127.0.0.1:8000", confab.url).replace("$CONFAB_KEY", key)

    answer = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)

    assert json.loads(answer.stdout)["choices"][0]["message"]["content"].startswith("You said")


def test_a_key_over_its_requests_per_minute_is_429_with_retry_after(confab, upstream):
    key = confab.user_with_key("hasty")
    confab.sql("UPDATE conversations_apikey SET requests_per_minute = 1 WHERE prefix = ?", key[:9])
    client = confab.client(key, max_retries=0)
    # The count restarts on the clock's minute: both requests within one.
    if (into_the_minute := time.time() % 60) > 50:
        time.sleep(60 - into_the_minute)
    client.chat.completions.create(**hello())

    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**hello())

    assert refused.value.code == "rate_limit_exceeded"
    assert 0 < int(refused.value.response.headers["retry-after"]) <= 60


def test_two_providers_offering_one_id_are_told_apart_by_alias(confab, upstream, key):
    confab.manage("shell", "-c", (
        "from conversations.models import Provider\n"
        f"relay = Provider.objects.create(name='Relay', base_url={upstream.url!r})\n"
        "relay.models.create(upstream_id='fake-model', display_name='fake-model-via-relay')\n"
    ))  # fmt: skip
    client = confab.client(key)

    listed = [m.id for m in client.models.list().data]
    answer = client.chat.completions.create(**hello(model="fake-model-via-relay"))

    # The one without an alias keeps the provider's id; the other goes by its alias.
    assert listed.count("fake-model") == 1 and "fake-model-via-relay" in listed
    assert answer.model == "fake-model-via-relay"
    assert upstream.requests[-1]["body"]["model"] == "fake-model"


def test_an_expired_key_is_401(confab, upstream):
    key = confab.user_with_key("lapsed")
    confab.sql("UPDATE conversations_apikey SET expires = '2000-01-01 00:00:00' WHERE prefix = ?",
               key[:9])  # fmt: skip

    with pytest.raises(openai.AuthenticationError) as refused:
        confab.client(key).models.list()

    assert refused.value.code == "invalid_api_key"


def test_a_key_limited_to_a_model_sees_and_uses_only_that_one(confab, upstream):
    key = confab.user_with_key("narrow")
    confab.manage("shell", "-c", (
        "from conversations.models import ApiKey, LanguageModel, Provider\n"
        "provider = Provider.objects.get(name='Default')\n"
        "other, _ = provider.models.get_or_create(upstream_id='other-model')\n"
        f"ApiKey.objects.get(prefix={key[:9]!r}).allowed_models.set([other])\n"
    ))  # fmt: skip
    client = confab.client(key)

    assert [m.id for m in client.models.list().data] == ["other-model"]
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(**hello())
    assert refused.value.code == "model_not_found"


def test_a_key_with_one_reply_at_once_refuses_a_second(confab, upstream):
    upstream.script("fake-model", reply(["s", "l", "o", "w"], delay=1, usage=(5, 1)))
    key = confab.user_with_key("single")
    confab.sql("UPDATE conversations_apikey SET max_concurrent = 1 WHERE prefix = ?", key[:9])
    client = confab.client(key, max_retries=0)

    stream = client.chat.completions.create(**hello(stream=True))
    next(iter(stream))  # the first is under way
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**hello())
    stream.close()

    assert refused.value.code == "rate_limit_exceeded"
    assert int(refused.value.response.headers["retry-after"]) > 0


def test_the_relayed_stream_is_well_formed_whatever_the_provider_sent(confab, upstream, key):
    text = "héllo 你好"
    odd = sse(chunk({"content": text})).replace(b"\n", b"\r\n")
    cut = odd.index("你".encode()) + 1  # inside the character's three bytes
    upstream.script("fake-model", [
        stream_headers(), sse(chunk({"role": "assistant", "content": ""})),
        b": a provider's own comment\r\n\r\n", odd[:cut], 0.05, odd[cut:],
        sse(chunk(finish_reason="stop")), b"data: [DONE]\r\n\r\n",
    ])  # fmt: skip

    stream = confab.client(key).chat.completions.create(**hello(stream=True))
    deltas = [c.choices[0].delta.content or "" for c in stream if c.choices]

    assert "".join(deltas) == text


def test_the_provider_is_always_asked_for_usage(confab, upstream, key):
    client = confab.client(key)

    client.chat.completions.create(**hello())  # not streamed
    list(client.chat.completions.create(**hello(stream=True)))  # streamed, usage not asked

    # Without it, most providers report no usage: every request would be settled estimated.
    for request in upstream.requests:
        assert request["body"]["stream"] is True
        assert request["body"]["stream_options"] == {"include_usage": True}
    assert len(upstream.requests) == 2


GONE_KEY = "sk-gone-provider-secret-7e1d"


@pytest.fixture(scope="module")
def gone(confab):
    """A provider with a key, at a port nothing listens on, offering `gone-model`: its host."""
    url = f"http://127.0.0.1:{free_port()}/v1"
    confab.manage("shell", "-c", (
        "from conversations.models import Provider\n"
        f"gone = Provider.objects.create(name='Gone', base_url={url!r}, api_key={GONE_KEY!r})\n"
        "gone.models.create(upstream_id='gone-model')\n"
    ))  # fmt: skip
    return url.removeprefix("http://").removesuffix("/v1")


def test_an_unreachable_provider_is_a_503_naming_it_without_a_key(confab, upstream, gone, key):
    with pytest.raises(openai.InternalServerError) as failed:
        confab.client(key, max_retries=0).chat.completions.create(**hello(model="gone-model"))

    assert failed.value.status_code == 503
    assert failed.value.code == "connection"
    message = failed.value.message
    assert f"Could not reach {gone}" in message and "connection was refused" in message
    body = failed.value.response.text
    assert GONE_KEY not in body and API_KEY not in body and key not in body


def test_a_request_the_provider_refused_is_settled_once_on_its_estimated_prompt(confab, upstream):
    confab.priced_model("refusing-model", input=500000, output=250000)  # 0.5 and 0.25 a token
    upstream.script("refusing-model", http_error(400, "context too long"))
    key = confab.user_with_key("refused")

    with pytest.raises(openai.APIStatusError):
        confab.client(key, max_retries=0).chat.completions.create(**hello(model="refusing-model"))

    # It reached the provider, which reported no usage: the prompt, estimated, is charged;
    # of the reservation's output (the site's bound) nothing is left.
    [(status, reached, estimated, prompt, completion, cost)] = confab.settled("refused")
    assert (status, reached, estimated, completion) == ("failed", 1, 1, 0)
    assert prompt > 0 and cost == pytest.approx(prompt * 0.5)


def test_a_request_that_never_reached_the_provider_is_settled_once_at_no_cost(
    confab, upstream, gone
):
    key = confab.user_with_key("unreached")

    with pytest.raises(openai.InternalServerError):
        confab.client(key, max_retries=0).chat.completions.create(**hello(model="gone-model"))

    [(status, reached, estimated, prompt, completion, cost)] = confab.settled("unreached")
    assert (status, reached, estimated, prompt, completion, cost) == ("failed", 0, 0, 0, 0, 0)


def test_a_caller_gone_after_the_usage_came_is_charged_what_was_reported(confab, upstream):
    confab.priced_model("reporting-model", input=500000, output=250000)  # 0.5 and 0.25 a token
    usage = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    upstream.script("reporting-model", [
        stream_headers(), sse(chunk({"role": "assistant", "content": "All done"})),
        # The usage on the finishing chunk (as many providers send it), then a stream that
        # stays open: the caller leaves before [DONE].
        sse(chunk(finish_reason="stop", usage=usage)), 30.0, sse("[DONE]"),
    ])  # fmt: skip
    key = confab.user_with_key("reported")

    stream = confab.client(key).chat.completions.create(**hello(model="reporting-model",
                                                                stream=True))  # fmt: skip
    for part in stream:
        if part.choices and part.choices[0].finish_reason:
            break  # the gateway had the usage: it came in the same chunk
    stream.close()

    assert upstream.wait_hung_up("reporting-model")
    [(status, reached, estimated, prompt, completion, cost)] = confab.settled("reported")
    assert (status, reached, estimated, prompt, completion) == ("cancelled", 1, 0, 9, 3)
    assert cost == pytest.approx(9 * 0.5 + 3 * 0.25)


def test_limits_set_on_the_key_form_are_enforced(confab, upstream):
    confab.user_with_key("formal")
    key = confab.key_from_form("formal", name="cron", requests_per_minute="1")
    client = confab.client(key, max_retries=0)
    client.chat.completions.create(**hello())
    refusals = []

    # Minutes are counted on the clock: three requests in a row cross at most one minute's
    # end, so two of them fall in one minute.
    for _ in range(2):
        try:
            client.chat.completions.create(**hello())
        except openai.RateLimitError as refusal:
            refusals.append(refusal.code)

    assert refusals and set(refusals) == {"rate_limit_exceeded"}
    assert confab.sql("SELECT name, requests_per_minute FROM conversations_apikey"
                      " WHERE prefix = ?", key[:9]) == [("cron", 1)]  # fmt: skip


def test_no_error_body_holds_a_key(confab, upstream, key):
    broke = confab.user_with_key("broke", max_tokens=50)
    # A provider that quotes the key it was sent, as some do in their refusals.
    upstream.script("fake-model", http_error(401, f"Incorrect API key provided: {API_KEY}"))

    def ask(bearer, **extra):
        return httpx.post(confab.url + "/v1/chat/completions", json=hello(**extra),
                          headers={"Authorization": f"Bearer {bearer}"}, timeout=10)  # fmt: skip

    wrong = key[:-1] + ("y" if key.endswith("x") else "x")  # one character off
    answers = {
        401: ask(wrong),
        404: ask(key, model="no-such-model"),
        429: ask(broke),
        502: ask(key),
    }

    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert "error" in answer.json()
        for secret in (key, wrong, broke, API_KEY):
            assert secret not in answer.text, (status, answer.text)
    assert "Incorrect API key provided" in answers[502].json()["error"]["message"]
