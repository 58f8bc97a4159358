"""The lock-free per-request metric families expose what prometheus-client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bastion.observability.loop_metrics import LoopCounter, LoopHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)
VALUES = (0.0005, 0.001, 0.002, 0.01, 0.5, 1.0, 7.0)  # on a bound counts in that bucket (`le`)


def _samples(registry: CollectorRegistry, skip: str = "_created") -> list[tuple[str, list[tuple[str, str]], float]]:
    return sorted(
        (sample.name, sorted(sample.labels.items()), sample.value)
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith(skip)
    )


def test_a_loop_histogram_has_the_buckets_count_and_sum_of_a_prometheus_histogram() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    lean = LoopHistogram("stage_seconds", "time", ["stage"], BUCKETS, ours)
    reference = Histogram("stage_seconds", "time", ["stage"], buckets=BUCKETS, registry=theirs)
    for value in VALUES:
        lean.observe(("forward",), value)
        reference.labels("forward").observe(value)
    lean.observe(("audit",), 0.02)
    reference.labels("audit").observe(0.02)
    assert _samples(ours) == _samples(theirs)
    assert ours.get_sample_value("stage_seconds_bucket", {"stage": "forward", "le": "0.001"}) == 2
    assert ours.get_sample_value("stage_seconds_count", {"stage": "forward"}) == len(VALUES)
    assert b'stage_seconds_bucket{le="+Inf",stage="forward"} 7.0' in generate_latest(ours)


def test_a_loop_counter_counts_like_a_prometheus_counter() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    lean = LoopCounter("calls", "calls", ["method", "outcome"], ours)
    reference = Counter("calls", "calls", ["method", "outcome"], registry=theirs)
    for labels in (("tools/call", "ok"), ("tools/call", "ok"), ("tools/call", "forbidden")):
        lean.inc(labels)
        reference.labels(*labels).inc()
    assert _samples(ours) == _samples(theirs)
    assert ours.get_sample_value("calls_total", {"method": "tools/call", "outcome": "ok"}) == 2
