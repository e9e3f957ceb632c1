"""PostgreSQL and Redis for the several-processes phases (`bench.relay --redis`).

A fresh database on the PostgreSQL server and a Redis database number of the run's own,
flushed before and after; both are removed even when the run fails. Neither server is
started here (a team runs them as services; `.ci/run` starts them for the tests), and
neither is pinned: their CPU is read from /proc and reported apart.
"""

import contextlib
import os
import uuid
from pathlib import Path

from bench import procs

POSTGRES = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/5"


class Services:
    """`with Services(...) as services:` a fresh PostgreSQL database and a flushed Redis db."""

    def __init__(self, postgres=POSTGRES, redis_url=REDIS_URL):
        self.postgres = postgres.rstrip("/")
        self.redis_url = redis_url
        self.database = f"confab_bench_{uuid.uuid4().hex[:8]}"
        self.database_url = f"{self.postgres}/{self.database}"
        self.created = False
        self.redis_pid = None

    def __enter__(self):
        return self.open()

    def open(self):
        try:
            self._flush_redis()
            self.created = True  # from here on close() drops it (IF EXISTS)
            with self._admin() as db:
                db.execute(f'CREATE DATABASE "{self.database}"')
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to see
                self.close()
            raise
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        """Drop the database and flush the Redis db; each step tried even if one fails."""
        errors = []
        if self.created:
            try:
                with self._admin() as db:
                    db.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
                self.created = False
            except Exception as error:
                errors.append(f"dropping {self.database}: {error}")
        try:
            self._flush_redis()
        except Exception as error:
            errors.append(f"flushing {self.redis_url}: {error}")
        if errors:
            raise RuntimeError("; ".join(errors))

    def _admin(self):
        import psycopg

        return psycopg.connect(f"{self.postgres}/postgres", autocommit=True, connect_timeout=10)

    def _flush_redis(self):
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=10)
        try:
            client.flushdb()
            self.redis_pid = client.info("server").get("process_id")
        finally:
            client.close()

    def env(self):
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}


def processes_named(name):
    """{pid: CPU seconds} of every process whose command name is `name`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == name:
                found[int(entry.name)] = procs.cpu_seconds(int(entry.name))
        except OSError:  # it ended meanwhile, or is not ours to read
            continue
    return found


class ServiceClock:
    """CPU seconds the Redis server and all PostgreSQL processes spent since it was made.

    PostgreSQL backends come and go: one that started meanwhile counts from zero, one that
    ended meanwhile is missed (Confab keeps its connections, CONN_MAX_AGE). Other programs'
    use of the same servers counts too, so these are upper bounds.
    """

    def __init__(self, redis_pid):
        self.redis_pid = redis_pid if redis_pid and Path(f"/proc/{redis_pid}").exists() else None
        self.redis_before = procs.cpu_seconds(self.redis_pid) if self.redis_pid else None
        self.postgres_before = processes_named("postgres")

    def read(self):
        redis_s = None
        if self.redis_pid and os.path.exists(f"/proc/{self.redis_pid}"):
            redis_s = procs.cpu_seconds(self.redis_pid) - self.redis_before
        postgres_now = processes_named("postgres")
        postgres_s = sum(
            spent - self.postgres_before.get(pid, 0.0) for pid, spent in postgres_now.items()
        )
        return {"redis": redis_s, "postgres": postgres_s}
