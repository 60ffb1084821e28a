"""A command of plain words skips the shell (directexec.py) and runs exactly as
`/bin/sh -c "exec <cmd>"` would run it: same program, argv, cwd and environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from supervisord_lite.daemon.directexec import direct_exec, find_program, plain_words
from tests.daemon.conftest import Root, proc, running
from tests.helpers import wait_until

# the words, or None where the shell must read the command
WORDS = [
    ("sleep 100", ["sleep", "100"]),
    ("./bin/web --port 5000 -w 2", ["./bin/web", "--port", "5000", "-w", "2"]),
    ("worker  a=b  x,y:z@h%1+2", ["worker", "a=b", "x,y:z@h%1+2"]),
    ("gunicorn -b 0.0.0.0:$PORT app:app", None),  # $: expansion
    ("web 'a b'", None),  # quotes
    ('web "a"', None),
    ("web a\\ b", None),  # backslash
    ("web *.py", None),  # glob
    ("web ~/x", None),  # tilde
    ("web > log", None),  # redirection
    ("a; b", None),
    ("a && b", None),
    ("a | b", None),
    ("VAR=1 web", None),  # an assignment before the program
    ("-x web", None),  # an option to exec
    ("web\nother", None),
    ("web\tx", None),
    (" web", None),
    ("web #comment", None),
    ("", None),
]


@pytest.mark.parametrize(("cmd", "words"), WORDS)
def test_only_plain_words_skip_the_shell(cmd: str, words: list[str] | None) -> None:
    assert plain_words(cmd) == words


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_program_is_found_as_the_shell_finds_it(tmp_path: Path) -> None:
    app = tmp_path / "app"
    tool = executable(app / "bin" / "tool", "#!/bin/sh\n")
    (app / "data").write_text("not executable")
    (app / "dir").mkdir()
    env = {"PATH": f"{tmp_path / 'none'}::bin:/usr/bin"}
    assert find_program("tool", env, app) == "bin/tool"  # a relative entry: from the app
    assert find_program("./bin/tool", env, app) == "./bin/tool"
    assert find_program(str(tool), env, app) == str(tool)
    assert find_program("tool", {"PATH": ":/usr/bin"}, app / "bin") == "tool"
    assert find_program("data", {"PATH": ""}, app) is None  # "" is the app: not executable
    assert find_program("dir", {"PATH": ""}, app) is None  # a directory
    assert find_program("sleep", env, app) == "/usr/bin/sleep"
    assert find_program("no-such-program", env, app) is None  # the shell says "not found"
    assert find_program("sleep", {}, app) is None  # no PATH: the shell's default
    assert find_program("sleep", {"PATH": "/usr/bin%builtin"}, app) is None
    assert direct_exec("sleep 5", env, app, fds=False) == ("/usr/bin/sleep", ["sleep", "5"])
    assert direct_exec("sleep 5", env, app, fds=True) is None  # LISTEN_PID needs the shell


SHOW = """#!/bin/sh
# what a program can see of how it was started
out="$OUT_DIR/$BRR_PROCESS"
{ echo "argv: $0 $*"; echo "cwd: $(pwd -P)"; env | grep -v '^BRR_PROCESS=' | sort; } > "$out.tmp"
mv "$out.tmp" "$out"
exec sleep 3600
"""


def test_a_plain_command_runs_as_through_the_shell(
    droot: Root, daemon: Any, tmp_path: Path
) -> None:
    build = droot.build()
    app = droot.path / "builds" / build / "app"
    executable(app / "show", SHOW)
    executable(app / "noshebang", 'echo "ran by a shell: $0"\nexec sleep 3600\n')
    out = tmp_path / "out"
    out.mkdir()
    env = {"OUT_DIR": str(out)}
    droot.release(
        proc("direct", "./show one two", env=env),
        proc("shell", "./show 'one' two", env=env),  # quoted: through the shell
        proc("script", "./noshebang"),  # ENOEXEC without the shell: it retries with it
    )
    d = daemon()
    wait_until(lambda: len(running(d)) == 3, what="3 running")
    seen = {
        name: wait_until(lambda n=name: (out / n).exists() and (out / n).read_text(), what=name)
        for name in ("direct.1", "shell.1")
    }
    assert seen["direct.1"] == seen["shell.1"]
    assert f"cwd: {os.path.realpath(app)}" in seen["direct.1"]
    assert "argv: ./show one two" in seen["direct.1"]
    wait_until(lambda: "ran by a shell" in d.output(), what="the script without #! ran")
