"""`python -m supervisord_lite.daemon`: the daemon's image, exec'd by `supervisord-lite run`
(runner.py)."""

import sys

from supervisord_lite.daemon.runner import main

sys.exit(main())
