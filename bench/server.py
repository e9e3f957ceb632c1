"""Run Confab exactly as `manage.py serve` does, counting the database queries it makes.

    python -m bench.server --port 8123 --counts /tmp/counts.json

It runs the `serve` management command itself, in this process: one daphne worker (Twisted's
asyncio reactor on asyncio's own event loop), the provider of OPENAI_BASE_URL registered,
the reaper and the heartbeat in the background, as a user's `make run` has them.

On SIGUSR1 the counts so far are written to --counts as JSON: statements by kind and table
("SELECT conversations_price", "UPDATE conversations_message", "BEGIN", ...), writes made
outside a transaction (each one its own commit), database connections opened, and channel
layer calls (group_send; send; and receive: the messages this process read from the
layer), in total and by the event each carried ("group_send message.delta"); with
channels_redis also the group messages it dropped because a member's channel was full (it
only logs them); and the CPU of accepting sends (see `count_accepting`).
Counting costs a dictionary update or two per call, which is noise next to the call itself.
"""

import argparse
import json
import logging
import os
import re
import signal
import threading
import time
from collections import Counter

WRITE = re.compile(r'^\s*(INSERT INTO|UPDATE|DELETE FROM)\s+"?(\w+)"?', re.IGNORECASE)
READ = re.compile(r'^\s*SELECT\b.*?\bFROM\s+"?(\w+)"?', re.IGNORECASE | re.DOTALL)


def statement_kind(sql):
    """'SAVEPOINT', ... or, for a read or a write, the verb and its (first) table:
    'SELECT conversations_model', 'UPDATE conversations_message'."""
    if match := WRITE.match(sql):
        return f"{match[1].split()[0].upper()} {match[2]}"
    if match := READ.match(sql):
        return f"SELECT {match[1]}"
    return sql.split(None, 1)[0].upper() if sql.strip() else "EMPTY"


class QueryCounter:
    """An execute wrapper for every connection Django opens, counting what runs through it."""

    def __init__(self):
        self.statements = Counter()
        self.autocommit_writes = 0  # each one a commit of its own
        self.connections = 0
        self.layer = Counter()  # channel layer calls: group_send, send, receive
        self.layer_events = Counter()  # the same by the event carried: "group_send message.delta"
        self.accept = Counter()  # sends accepted, and their CPU: database_s, loop_s
        # Re-entrant: the SIGUSR1 handler may interrupt the main thread inside __call__.
        self.lock = threading.RLock()

    def __call__(self, execute, sql, params, many, context):
        kind = statement_kind(sql)
        with self.lock:
            self.statements[kind] += 1
            if " " in kind and not context["connection"].in_atomic_block:
                self.autocommit_writes += 1
        return execute(sql, params, many, context)

    def on_connection_created(self, sender, connection, **kwargs):
        with self.lock:
            self.connections += 1
        # A thread's connection object reconnects whenever CONN_MAX_AGE has expired (with the
        # default 0, around every database_sync_to_async call): wrap it once.
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def write(self, path):
        with self.lock:
            counts = {
                "statements": dict(self.statements),
                "autocommit_writes": self.autocommit_writes,
                "connections": self.connections,
                "layer": dict(self.layer),
                "layer_events": dict(self.layer_events),
                "accept": dict(self.accept),
            }
        temporary = f"{path}.tmp"
        with open(temporary, "w") as file:
            json.dump(counts, file)
        os.replace(temporary, path)


def event_type(message):
    """What a layer message carries: the event a `relay` wraps, or its own type."""
    if not isinstance(message, dict):
        return "?"
    event = message.get("event")
    if message.get("type") == "relay" and isinstance(event, dict):
        return str(event.get("type"))
    return str(message.get("type"))


def count_channel_layer(counter):
    """Count the channel layer's calls: group_send, send and the messages `receive` returns.

    The in-memory layer's group_send calls its own send once per member, so there `send`
    counts deliveries; channels_redis's group_send pushes to every member in one Lua script
    and calls no send, so there deliveries show as `receive` in the processes they reach
    (every socket's reader and the runner mailbox read through `receive`).
    """
    from channels.layers import get_channel_layer

    layer_class = type(get_channel_layer())
    for name in ("send", "group_send"):
        original = getattr(layer_class, name)

        async def counted(self, *args, _original=original, _name=name, **kwargs):
            message = args[1] if len(args) > 1 else kwargs.get("message")
            with counter.lock:
                counter.layer[_name] += 1
                counter.layer_events[f"{_name} {event_type(message)}"] += 1
            return await _original(self, *args, **kwargs)

        setattr(layer_class, name, counted)

    original_receive = layer_class.receive

    async def counted_receive(self, *args, **kwargs):
        message = await original_receive(self, *args, **kwargs)
        with counter.lock:
            counter.layer["receive"] += 1
            counter.layer_events[f"receive {event_type(message)}"] += 1
        return message

    layer_class.receive = counted_receive


class DroppedMessages(logging.Handler):
    """channels_redis drops a group message for a member whose channel is full and only
    logs "N of M channels over capacity in group G" (at INFO): count those N. Confab's
    outbox logs "… is full: its tabs …" or "… too slow for …" when it gives up on a process:
    one each."""

    def __init__(self, counter):
        super().__init__(logging.INFO)
        self.counter = counter

    def emit(self, record):
        if "over capacity" in str(record.msg) and record.args:
            with self.counter.lock:
                self.counter.layer["dropped_over_capacity"] += int(record.args[0])
        elif "is full: its tabs" in str(record.msg) or "too slow for" in str(record.msg):
            with self.counter.lock:
                self.counter.layer["dropped_over_capacity"] += 1


def count_accepting(counter):
    """The CPU of accepting a send (`ChatConsumer._send`: validate, create the conversation
    and messages, start the runner, tell the tabs), in its two threads' own CPU time:
    the database hop, exact (its thread runs nothing else meanwhile), and the event loop's
    part, from the send's start to its end, which also counts whatever else the loop ran
    during the hop's await: an upper bound, close when sends come one at a time."""
    from conversations.consumers import ChatConsumer

    validate = ChatConsumer._validate_and_prepare
    send = ChatConsumer._send

    def timed_validate(self, event, prepare):
        started = time.thread_time()
        try:
            return validate(self, event, prepare)
        finally:
            with counter.lock:
                counter.accept["database_s"] += time.thread_time() - started

    async def timed_send(self, event, prepare):
        started = time.thread_time()
        try:
            return await send(self, event, prepare)
        finally:
            with counter.lock:
                counter.accept["loop_s"] += time.thread_time() - started
                counter.accept["sends"] += 1

    ChatConsumer._validate_and_prepare = timed_validate
    ChatConsumer._send = timed_send


def count_dropped_messages(counter):
    for name in ("channels_redis.core", "conversations.fanout"):
        logger = logging.getLogger(name)
        logger.addHandler(DroppedMessages(counter))
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--counts", required=True, help="where SIGUSR1 writes the counts")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db.backends.signals import connection_created

    counter = QueryCounter()
    connection_created.connect(counter.on_connection_created, weak=False)
    count_channel_layer(counter)
    count_dropped_messages(counter)
    count_accepting(counter)
    # Twisted takes over SIGINT and SIGTERM when daphne starts, not SIGUSR1.
    signal.signal(signal.SIGUSR1, lambda signum, frame: counter.write(args.counts))
    call_command("serve", host="127.0.0.1", port=args.port, workers=1)


if __name__ == "__main__":
    main()
