"""The run stage: the supervisord-lite daemon (docs/daemon.md opens with its task tree)."""
