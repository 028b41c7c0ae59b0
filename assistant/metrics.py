"""A small Prometheus text-format registry: counters, gauges and histograms with labels.

Only what ``/metrics`` needs, without a dependency: values live in plain dicts keyed by the label
values, and ``render()`` writes the exposition format (version 0.0.4) that Prometheus scrapes.
Everything runs on the event loop thread, so no locking.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

LATENCY_BUCKETS_MS: tuple[float, ...] = (25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
"""Histogram bounds for stage latencies, in milliseconds (the targets sit at 500 and 1500)."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def samples(self) -> Iterable[str]:
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        if not self._values and not self.label_names:
            yield f"{self.name} 0"
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS_MS
    ) -> None:
        super().__init__(name, help_text, labels)
        self.bounds = tuple(sorted(buckets))
        # per label key: [count per bucket (non-cumulative, last = +Inf)], sum, count
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        counts, total = self._series.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
        counts[bisect.bisect_left(self.bounds, value)] += 1
        total[0] += value

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return sum(series[0]) if series else 0

    def samples(self) -> Iterable[str]:
        for key, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
                running += n
                le = 'le="' + _number(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(round(total[0], 3))}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {running}"


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help_text, labels))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help_text, labels))  # type: ignore[return-value]

    def histogram(
        self, name: str, help_text: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS_MS
    ) -> Histogram:
        return self._add(Histogram(name, help_text, labels, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        return "".join(m.render() for m in self._metrics.values())


class DaemonMetrics:
    """The daemon's metrics, named once so the server and the daemon agree on them."""

    CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.turns = r.counter("assistant_turns_total", "Turns finished, by how they ended.", ["outcome"])
        self.routes = r.counter("assistant_routes_total", "Answers by route (faq, generated, fallback).", ["route"])
        self.errors = r.counter("assistant_errors_total", "Errors sent to clients, by stable code.", ["code"])
        self.stage_ms = r.histogram(
            "assistant_stage_latency_ms",
            "Per-turn latency after the end of speech (or the typed question), by stage, in milliseconds.",
            ["stage"],
        )
        self.clients = r.gauge("assistant_clients", "Connected WebSocket clients.")
        self.sessions = r.gauge("assistant_sessions", "Live sessions (kiosk and visitors).")
        self.dropped = r.counter(
            "assistant_clients_dropped_total", "Clients closed by the server, by reason.", ["reason"]
        )
        self.messages_in = r.counter("assistant_messages_in_total", "Client messages received, by type.", ["type"])
        self.unanswered = r.counter(
            "assistant_unanswered_turns_total",
            "Turns that got no answer (the fallback line, or a generated reply that declined), by route and language.",
            ["route", "language"],
        )
        self.queued = r.counter(
            "assistant_queued_turns_total",
            "Turns that need an owner's eye (the unanswered queue), by reason; counted even with [queue] record off.",
            ["reason"],
        )
        self.echo_dropped = r.counter(
            "assistant_echo_transcripts_dropped_total", "Transcripts dropped because they matched our own reply."
        )

    def render(self) -> str:
        return self.registry.render()
