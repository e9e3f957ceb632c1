"""Confab's streaming benchmark: what relaying a reply costs, against the direct-upstream floor.

Run `.venv/bin/python -m bench.relay` (see bench/relay.py and docs/performance.md).
"""
