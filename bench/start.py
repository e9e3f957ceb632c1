"""What starting and settling a reply costs in the database thread, exactly, in-process.

    python -m bench.start                 # 300 sends, about 20 s
    python -m bench.start --sends 1000 --profile /tmp/start.prof [--part settle]

The relay benchmark prices a reply start from the server's CPU in 10 ms ticks; this one
times the same code with the process's CPU clock, send by send, with nothing else running:

- **accept**: the websocket consumer's one database hop for a send
  (`ChatConsumer._validate_and_prepare` with `prepare_send`): the session checked, the form
  validated, the user authorised (rate, replies at once, quotas, the reservation), the
  conversation, the user's message and the reply written. A new conversation each time,
  as the relay benchmark's sends are.
- **settle, 1 token** and **settle, 500 tokens**: `settle()` ending that reply complete with
  the provider's usage, its HTML rendered (bench.text's reply: English, Chinese, code).
- **floor**: what a start must do at least, measured in the same run: one transaction
  inserting the conversation and two messages with Django's ORM.

Each part prints its CPU per call (median and mean, in ms), its ratio to the floor, and its
statements by kind and table. SQLite in a fresh CONFAB_VAR_DIR, DJANGO_DEBUG off: what
`make run` gives a user. No time is asserted anywhere: `tests/test_bench_quick.py` runs it
briefly and checks what a start writes.
"""

import argparse
import cProfile
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter


def setup(var_dir):
    os.environ.update(
        CONFAB_VAR_DIR=var_dir,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        DJANGO_DEBUG="False",
        # Every send is one user's: no per-minute limit may refuse the run's.
        CONFAB_USER_SENDS_PER_MINUTE="1000000",
    )
    for name in ("DATABASE_URL", "REDIS_URL", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def site():
    """A provider, its model with a price, and one signed-in user: (user, session key, model)."""
    from datetime import timedelta

    from django.utils import timezone

    from bench.seed import create_sessions
    from bench.text import MODEL
    from conversations.models import LanguageModel, Provider, SiteSettings

    provider = Provider.objects.create(
        name="Bench", base_url="http://127.0.0.1:9/v1", api_key="sk-bench"
    )
    model = LanguageModel.objects.create(provider=provider, upstream_id=MODEL)
    model.prices.create(
        effective_from=timezone.now() - timedelta(days=1), input="2.00", output="8.00"
    )
    SiteSettings.objects.update_or_create(pk=1, defaults={"default_model": model})
    (session,) = create_sessions(1)
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="bench0"), session, model


class Part:
    """One measured operation: CPU per call, and its statements by kind and table."""

    def __init__(self, name):
        self.name = name
        self.cpu = []
        self.statements = Counter()
        self.calls = 0

    def run(self, call, *args, profile=None):
        from django.db import connection

        from bench.server import statement_kind

        def counted(execute, sql, params, many, context):
            self.statements[statement_kind(sql)] += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counted):
            if profile:
                profile.enable()
            started = time.process_time()
            result = call(*args)
            self.cpu.append(time.process_time() - started)
            if profile:
                profile.disable()
        self.calls += 1
        return result

    def ms(self):
        return statistics.median(self.cpu) * 1000, statistics.fmean(self.cpu) * 1000

    def per_call(self):
        return {kind: count / self.calls for kind, count in sorted(self.statements.items())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--output", help="also write the figures here, as JSON")
    parser.add_argument("--profile", help="write cProfile stats of one part here")
    parser.add_argument(
        "--part", choices=["accept", "settle"], default="accept", help="the part --profile takes"
    )
    args = parser.parse_args()
    setup(tempfile.mkdtemp(prefix="confab-bench-start-"))

    from django.db import transaction

    from bench.text import reply_tokens
    from conversations.consumers import ChatConsumer
    from conversations.generation.sending import prepare_send
    from conversations.generation.settle import Outcome, Reply, settle
    from conversations.models import Conversation, Message, UsageRecord
    from conversations.usage import Usage

    user, session_key, model = site()
    consumer = ChatConsumer()
    consumer.user, consumer.session_key = user, session_key
    long_text = "".join(reply_tokens("start-bench", 500))
    profile = cProfile.Profile() if args.profile else None

    def send(index):
        event = {
            "type": "send", "conversation": None, "content": f"Question {index}",
            "model": str(model.public_id), "params": {"max_tokens": 500},
            "client_id": str(uuid.uuid4()),
        }  # fmt: skip
        return consumer._validate_and_prepare(event, prepare_send)[1]

    def ended(prepared, text, tokens):
        usage = Usage(prompt_tokens=20, completion_tokens=tokens, total_tokens=20 + tokens)
        return settle(prepared.request, Outcome("complete", (Reply(content=text),), usage=usage))

    def floor(index):
        with transaction.atomic():
            conversation = Conversation.objects.create(owner=user, title="t", model=model)
            question = Message.objects.create(
                conversation=conversation, role="user", content=f"Question {index}"
            )
            Message.objects.create(
                conversation=conversation, parent=question, role="assistant", model=model
            )

    accept, short, long, least = (
        Part(name) for name in ("accept", "settle, 1 token", "settle, 500 tokens", "floor")
    )
    for index in range(-3, args.sends):  # three to warm up, not counted
        warm = index < 0
        parts = [Part("warm-up")] * 4 if warm else [accept, short, long, least]
        taken = None if warm else profile
        prepared = parts[0].run(send, index, profile=taken if args.part == "accept" else None)
        parts[1].run(ended, prepared, "Hi", 1, profile=taken if args.part == "settle" else None)
        parts[2].run(ended, parts[0].run(send, index), long_text, 500)
        parts[3].run(floor, index)
        # The replies have ended: the user's replies at once free again.
        UsageRecord.objects.filter(status="streaming").update(status="complete")
    if profile:
        profile.dump_stats(args.profile)

    floor_ms = least.ms()[0]
    print(f"bench.start: {args.sends} sends, CPU per call (median / mean ms, × floor median)")
    print("| part | median ms | mean ms | × floor | statements | by kind and table |")
    print("|---|---|---|---|---|---|")
    for part in (accept, short, long, least):
        median, mean = part.ms()
        kinds = part.per_call()
        listed = ", ".join(f"{kind} {count:g}" for kind, count in kinds.items())
        print(
            f"| {part.name} | {median:.2f} | {mean:.2f} | {median / floor_ms:.1f} "
            f"| {sum(kinds.values()):g} | {listed} |"
        )
    if args.output:
        figures = {
            part.name: {"median_ms": part.ms()[0], "mean_ms": part.ms()[1],
                        "statements": part.per_call()}
            for part in (accept, short, long, least)
        }  # fmt: skip
        with open(args.output, "w") as file:
            json.dump({"sends": args.sends, "parts": figures}, file, indent=1)
    accept_ms = accept.ms()[0]
    print(
        f"bench.start: accept {accept_ms:.2f} ms ({accept_ms / floor_ms:.1f} × floor "
        f"{floor_ms:.2f}), settle {short.ms()[0]:.2f} / {long.ms()[0]:.2f} ms (1 / 500 tokens)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
