"""A 100-page text PDF made ready: its text read page by page in a worker process, cut into
passages, as an upload is (conversations.files.processing), on one core.

The goal (issue 23): under 10 s. Run: `.venv/bin/python -m bench.files [--pages N] [--runs N]`.
Prints each run's time, and a one-line summary last; nothing is asserted.
"""

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from conversations.files import extraction
from tests.documents import long_report

BATCH = 25  # pages per call, as processing.PDF_BATCH


def ready(pool, data):
    """What processing does with a PDF, less the database: pages in batches, passages."""
    total = pool.submit(extraction.page_count, data).result()
    parts = []
    for first in range(0, total, BATCH):
        parts += pool.submit(extraction.extract, "pdf", data, first, first + BATCH).result()
    return total, pool.submit(extraction.passages, parts).result()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = long_report(args.pages)
    print(f"a {args.pages}-page text PDF, {len(data) / 1024:.0f} KiB")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(extraction.page_count, data).result()  # the worker started, as in a server
        times = []
        for run in range(args.runs):
            started = time.perf_counter()
            pages, passages = ready(pool, data)
            times.append(time.perf_counter() - started)
            print(f"run {run + 1}: {times[-1]:.2f} s, {pages} pages, {len(passages)} passages")
    print(f"files: {args.pages}-page PDF ready in {statistics.median(times):.2f} s "
          f"(median of {args.runs}, one worker; goal < 10 s)")  # fmt: skip


if __name__ == "__main__":
    main()
