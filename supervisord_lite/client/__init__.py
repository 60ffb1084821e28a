"""Everything that runs in the operator's shell, never in the daemon: the control client
(connection.py), the `supervisord-lite` client commands (ctl.py), the log-file readers
(logread.py) and the one wait for the daemon to settle (settle.py).

Stdlib only, besides the contract modules: no anyio, no psutil, nothing of
supervisord_lite.daemon, so a client command starts in the time Python takes to start.
"""
