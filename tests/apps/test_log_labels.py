"""During a switch the two generations' lines are told apart: `web.1 v1 |`, `web.1 v2 |`."""

from __future__ import annotations

import shlex
import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.helpers import DAEMON, PY, run_brr, wait_until, write_app

# ticks with its release; on TERM keeps ticking for 3 s, so the generations overlap
TICKER = """\
import os, signal, sys, time
release = os.environ["BRR_RELEASE"]
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.monotonic()))
while not stopping or time.monotonic() - stopping[0] < 3:
    print(f"tick from {release}" + (" (stopping)" if stopping else ""), flush=True)
    time.sleep(0.1)
"""


def test_two_generations_are_labelled_while_both_live(
    root: Path, tmp_path: Path, live_daemon: Any
) -> None:
    src = write_app(
        tmp_path / "src",
        f"processes:\n  web:\n    cmd: {shlex.quote(PY)} ticker.py\n    ready: {{after: 0.5}}\n",
        {"ticker.py": TICKER},
    )
    run_brr(root, "deploy", str(src), "--no-signal")
    d = live_daemon(root)
    wait_until(lambda: "web.1 | tick from v1\n" in d.output(), what="v1 ticking, unlabelled")
    follower = subprocess.Popen(
        [DAEMON, "--root", str(root), "logs", "-f", "-n", "0", "web"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(follower.stdout.readline, "")))
    reader.start()
    try:
        run_brr(root, "config", "set", "X=1", "--activate", "--wait")
        labelled = ("web.1 v1 | tick from v1 (stopping)", "web.1 v2 | tick from v2")
        for text in labelled:
            wait_until(lambda t=text: t in d.output(), what=text)
            wait_until(lambda t=text: t + "\n" in seen, what=f"logs -f: {text}")
        # once v1 is gone, one generation is left: plain labels again
        after = len(d.output())
        wait_until(lambda: "web.1 | tick from v2\n" in d.output()[after:], what="plain again")
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        reader.join(timeout=30)
        follower.stdout.close()
