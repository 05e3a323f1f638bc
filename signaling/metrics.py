"""Prometheus text exposition for the few figures the server keeps (no client library needed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

ROUTE_BUCKETS_MS = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000)


@dataclass
class Metrics:
    """Counters and one latency histogram; gauges are read from the hub when rendered."""

    frames: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    route_buckets: list[int] = field(default_factory=lambda: [0] * len(ROUTE_BUCKETS_MS))
    route_count: int = 0
    route_sum_ms: float = 0.0

    def observe_route(self, ms: float) -> None:
        self.route_count += 1
        self.route_sum_ms += ms
        for i, bound in enumerate(ROUTE_BUCKETS_MS):
            if ms <= bound:
                self.route_buckets[i] += 1

    def render(self, gauges: dict[str, float]) -> str:
        lines: list[str] = []
        for name, value in gauges.items():
            lines += [f"# TYPE signaling_{name} gauge", f"signaling_{name} {value}"]
        for metric, counter, label in (("frames_total", self.frames, "type"),
                                       ("errors_total", self.errors, "code"),
                                       ("routes_total", self.routes, "outcome")):
            lines.append(f"# TYPE signaling_{metric} counter")
            for key, n in sorted(counter.items()):
                lines.append(f'signaling_{metric}{{{label}="{key}"}} {n}')
        lines.append("# TYPE signaling_route_latency_ms histogram")
        for bound, n in zip(ROUTE_BUCKETS_MS, self.route_buckets, strict=True):
            lines.append(f'signaling_route_latency_ms_bucket{{le="{bound}"}} {n}')
        lines.append(f'signaling_route_latency_ms_bucket{{le="+Inf"}} {self.route_count}')
        lines.append(f"signaling_route_latency_ms_sum {self.route_sum_ms:.3f}")
        lines.append(f"signaling_route_latency_ms_count {self.route_count}")
        return "\n".join(lines) + "\n"
