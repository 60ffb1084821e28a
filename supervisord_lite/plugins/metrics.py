"""`--plugin metrics [--plugin-opt metrics.address=127.0.0.1:9180]`: Prometheus metrics.

prometheus-client serves the text exposition format from its own thread on `address`,
from a registry of this plugin's own (no global state). Everything comes from events,
the plugin API every plugin has; per-process RSS and CPU are read with psutil at scrape
time, for the pids the events named, so nothing is polled between scrapes.

Metrics: supervisord_lite_process_state{name,release,state} (1 for the current state),
_process_restarts_total{name}, _process_uptime_seconds{name}, _process_rss_bytes{name},
_process_cpu_seconds_total{name}, _release_info{release,build}, _switch_seconds (a
histogram), _switch_failures_total, _events_total{kind}.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from supervisord_lite.daemon import bus
from supervisord_lite.errors import BadInput


@dataclass
class Proc:
    pid: int | None = None
    state: str = "STARTING"
    since: float = 0.0
    restarts: int = 0


class ProcessCollector(Collector):
    def __init__(self, plugin: MetricsPlugin) -> None:
        self.plugin = plugin

    def collect(self) -> Iterator[Any]:
        state = GaugeMetricFamily(
            "supervisord_lite_process_state",
            "1 for the state each process is in",
            labels=["name", "release", "state"],
        )
        restarts = GaugeMetricFamily(
            "supervisord_lite_process_restarts_total",
            "restarts of each process",
            labels=["name", "release"],
        )
        uptime = GaugeMetricFamily(
            "supervisord_lite_process_uptime_seconds",
            "seconds since ready",
            labels=["name", "release"],
        )
        rss = GaugeMetricFamily(
            "supervisord_lite_process_rss_bytes", "resident memory", labels=["name", "release"]
        )
        cpu = GaugeMetricFamily(
            "supervisord_lite_process_cpu_seconds_total",
            "user + system CPU",
            labels=["name", "release"],
        )
        info = GaugeMetricFamily(
            "supervisord_lite_release_info", "the release that runs", labels=["release", "build"]
        )
        now = time.time()
        for (name, release), p in sorted(self.plugin.procs.items()):
            state.add_metric([name, release, p.state], 1)
            restarts.add_metric([name, release], p.restarts)
            if p.state == "RUNNING":
                uptime.add_metric([name, release], now - p.since)
            if p.pid is not None and p.state in ("STARTING", "RUNNING"):
                try:
                    proc = psutil.Process(p.pid)
                    rss.add_metric([name, release], proc.memory_info().rss)
                    times = proc.cpu_times()
                    cpu.add_metric([name, release], times.user + times.system)
                except psutil.Error:
                    pass
        if self.plugin.release:
            info.add_metric(list(self.plugin.release), 1)
        yield from (state, restarts, uptime, rss, cpu, info)


class MetricsPlugin:
    def __init__(self, options: dict[str, str]) -> None:
        address = options.get("address", "127.0.0.1:9180")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise BadInput(f"plugin metrics: address={address!r}: expected HOST:PORT")
        extra = set(options) - {"address"}
        if extra:
            raise BadInput(f"plugin metrics: unknown option {sorted(extra)[0]!r}")
        # keyed by (name, release): during a start-first switch web.1 runs in both
        self.procs: dict[tuple[str, str], Proc] = {}
        self.release: tuple[str, str] | None = None
        self.registry = CollectorRegistry()
        self.events = Counter(
            "supervisord_lite_events", "events seen", ["kind"], registry=self.registry
        )
        self.switch_seconds = Histogram(
            "supervisord_lite_switch_seconds",
            "duration of release switches",
            registry=self.registry,
        )
        self.switch_failures = Counter(
            "supervisord_lite_switch_failures", "failed release switches", registry=self.registry
        )
        self.registry.register(ProcessCollector(self))
        try:
            self.server, self.thread = start_http_server(int(port), host, registry=self.registry)
        except OSError as exc:
            raise BadInput(f"plugin metrics: cannot listen on {address}: {exc.strerror}") from None

    async def on_event(self, event: bus.Event) -> None:
        self.events.labels(event.kind).inc()
        match event:
            case bus.ProcessSpawned(name=name, release=release, pid=pid):
                old = self.procs.get((name, release))
                restarts = old.restarts + 1 if old else 0
                self.procs[(name, release)] = Proc(pid, "STARTING", event.at, restarts)
            case bus.ProcessStateChanged(name=name, release=release, new=new):
                # the daemon's own states, one event per transition: no second machine here
                if p := self.procs.get((name, release)):
                    p.state = new
                    if new == "RUNNING":
                        p.since = event.at
            case bus.ReleaseLoaded(release=release, build=build):
                self.release = (release, build)
            case bus.SwitchDone(to_release=to, seconds=seconds):
                self.switch_seconds.observe(seconds)
                self._forget_other_releases(to)
            case bus.SwitchFailed(seconds=seconds, from_release=old):
                self.switch_seconds.observe(seconds)
                self.switch_failures.inc()
                if old:
                    self._forget_other_releases(old)

    def _forget_other_releases(self, keep: str) -> None:
        for key in [k for k in self.procs if k[1] != keep]:
            del self.procs[key]

    async def aclose(self) -> None:
        self.server.shutdown()
        self.server.server_close()
