"""The example worker: does a unit of "work" every few seconds and says so."""

from __future__ import annotations

import os
import signal
import sys
import time

RELEASE = os.environ.get("BRR_RELEASE", "dev")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    n = 0
    while True:
        n += 1
        print(f"worker of {RELEASE}: job {n} done", flush=True)
        time.sleep(5)


if __name__ == "__main__":
    main()
