"""A small bounded HTTP client for the demo: requests until told to stop, then counts.

Usage: demo_client.py URL STOP_FILE [MAX_SECONDS]. Stops when STOP_FILE exists or after
MAX_SECONDS (default 120), then prints requests served and failed and which releases
answered.
"""

from __future__ import annotations

import collections
import sys
import time
import urllib.request
from pathlib import Path


def main() -> int:
    url, stop_file = sys.argv[1], Path(sys.argv[2])
    deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 120.0)
    served = failed = 0
    answers: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    while not stop_file.exists() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read().decode()
            served += 1
            answers[body.split(" from ")[-1].split(" ")[0]] += 1
        except OSError as exc:
            failed += 1
            errors[type(exc).__name__] += 1
        time.sleep(0.02)  # a steady trickle, not a load test
    by_release = ", ".join(f"{rel}: {n}" for rel, n in sorted(answers.items()))
    print(f"requests served: {served}, failed: {failed} (answered by {by_release or 'none'})")
    if errors:
        print("failures: " + ", ".join(f"{k} x{v}" for k, v in errors.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
