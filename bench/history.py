"""Pages on big histories: the sidebar of a user with 10,000 conversations and a
conversation of 1,000 messages.

Seeds a fresh SQLite database (as `make run` uses), then times each page in-process with
Django's test client (the server's own time: middleware, queries, templates) and counts
its queries. Run: `.venv/bin/python -m bench.history [--conversations N] [--messages N]`.
Prints a table, writes JSON, and a one-line summary last.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPLY = """Here is a function that does it:

```python
def total(values):
    return sum(v for v in values if v is not None)
```

It skips **missing** values; 中文也可以。"""


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--output", default="bench/results/history.json")
    return parser.parse_args(argv)


def setup_django(var_dir):
    os.environ["CONFAB_VAR_DIR"] = str(var_dir)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed(conversations, messages):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from conversations.models import Conversation, LanguageModel, Message, Provider

    user = get_user_model().objects.create_user("heavy", password="x")
    provider = Provider.objects.create(name="p", base_url="http://127.0.0.1:9/v1")
    model = LanguageModel.objects.create(provider=provider, upstream_id="m")
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(owner=user, title=f"Conversation {i}", updated=now - timedelta(minutes=i))
        for i in range(conversations - 1)
    )
    big = Conversation.objects.create(owner=user, title="A long one", model=model, updated=now)
    parent = None
    rows = []
    for i in range(messages):
        assistant = i % 2 == 1
        message = Message(
            conversation=big,
            parent=parent,
            role="assistant" if assistant else "user",
            content=REPLY if assistant else f"Question {i}: how do I add up a list?",
            model_name="m" if assistant else "",
            prompt_tokens=40,
            completion_tokens=60,
            total_tokens=100,
            duration_ms=1200,
            created=now - timedelta(seconds=messages - i),
        )
        rows.append(message)
        parent = message
    Message.objects.bulk_create(rows, batch_size=500)
    return user, big


def measure(client, url, repeat):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm: templates compiled, caches filled
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {
        "url": url,
        "ms_p50": round(statistics.median(times), 1),
        "ms_max": round(max(times), 1),
        "queries": len(queries),
        "kb": round(len(response.content) / 1024, 1),
    }


def main(argv=None):
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="confab-history-") as var_dir:
        setup_django(var_dir)
        from django.test import Client

        started = time.perf_counter()
        user, big = seed(args.conversations, args.messages)
        seeded_s = time.perf_counter() - started
        client = Client(SERVER_NAME="127.0.0.1")
        client.force_login(user)
        last_page = -(-args.conversations // 30)
        pages = {
            f"sidebar, first page ({args.conversations:,} conversations)": "/",
            "sidebar, last page": f"/?page={last_page}",
            f"conversation of {args.messages:,} messages": f"/c/{big.id}/",
            f"export.json of {args.messages:,} messages": f"/c/{big.id}/export.json",
        }
        results = {name: measure(client, url, args.repeat) for name, url in pages.items()}

    print(f"Seeded in {seeded_s:.1f} s; {args.repeat} requests each, in-process.\n")
    print("| page | server ms p50 | max | queries | KB |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['ms_p50']} | {r['ms_max']} | {r['queries']} | {r['kb']} |")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    summary = ", ".join(
        f"{name}: {r['ms_p50']} ms, {r['queries']} queries" for name, r in results.items()
    )
    print(f"\nhistory: {summary} -> {args.output}")


if __name__ == "__main__":
    sys.exit(main())
