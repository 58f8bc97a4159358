"""Turning phase measurements into the table, the three ratios and honest PASS/MISS verdicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Phase", "Verdict", "summarize", "table"]


@dataclass(frozen=True)
class Phase:
    """One (target, concurrency) run: what the client saw and what each process spent."""

    target: str
    concurrency: int
    seconds: float
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    bastion_cpu_s: float
    origin_cpu_s: float
    loadgen_cpu_s: float
    bastion_peak_rss_mb: float
    origin_peak_rss_mb: float
    machine_busy_s: float
    machine_steal_s: float
    error_samples: list[str]

    @property
    def other_cpu_s(self) -> float:
        """Busy CPU not spent by the three bench processes: anything above ~0.05 cores is noise."""
        return max(0.0, self.machine_busy_s - self.bastion_cpu_s - self.origin_cpu_s - self.loadgen_cpu_s)

    @property
    def noise_cpu_s(self) -> float:
        """CPU the bench did not get: other processes plus time the hypervisor stole."""
        return self.other_cpu_s + self.machine_steal_s

    @property
    def calls(self) -> int:
        return self.ok + self.errors

    def us_per_call(self, cpu_seconds: float) -> float:
        return cpu_seconds / self.calls * 1e6 if self.calls else float("nan")

    def cores(self, cpu_seconds: float) -> float:
        """CPU time over wall time: 1.0 means one core fully busy."""
        return cpu_seconds / self.seconds if self.seconds else float("nan")

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data |= {
            "calls": self.calls,
            "bastion_cpu_us_per_call": self.us_per_call(self.bastion_cpu_s),
            "origin_cpu_us_per_call": self.us_per_call(self.origin_cpu_s),
            "loadgen_cpu_us_per_call": self.us_per_call(self.loadgen_cpu_s),
            "other_cpu_s": self.other_cpu_s,
        }
        return data


@dataclass(frozen=True)
class Verdict:
    name: str
    value: float
    unit: str
    target: str
    passed: bool

    def line(self) -> str:
        mark = "PASS" if self.passed else "MISS"
        return f"  {mark}  {self.name}: {self.value:.2f} {self.unit}  (target {self.target})"


def _find(phases: list[Phase], target: str, concurrency: int) -> Phase:
    return next(p for p in phases if p.target == target and p.concurrency == concurrency)


def summarize(phases: list[Phase], low: int, high: int) -> tuple[dict[str, float], list[Verdict]]:
    """The three headline numbers: Bastion's added p50 (low c), throughput kept (high c), CPU/call."""
    d_low, b_low = _find(phases, "direct", low), _find(phases, "bastion", low)
    d_high, b_high = _find(phases, "direct", high), _find(phases, "bastion", high)
    added_p50 = b_low.p50_ms - d_low.p50_ms
    kept = b_high.rps / d_high.rps * 100 if d_high.rps else 0.0
    cpu_low, cpu_high = b_low.us_per_call(b_low.bastion_cpu_s), b_high.us_per_call(b_high.bastion_cpu_s)
    cpu = max(cpu_low, cpu_high)  # judged on the worse of the two concurrency levels
    summary = {
        "added_p50_ms_c_low": added_p50,
        "throughput_kept_pct_c_high": kept,
        "bastion_cpu_us_per_call_c_low": cpu_low,
        "bastion_cpu_us_per_call_c_high": cpu_high,
        "bastion_cpu_us_per_call": cpu,
    }
    for relay in ("floor", "lean"):  # the lean relays, for scale (bench.floor); not judged
        if not any(p.target == relay for p in phases):
            continue
        r_low, r_high = _find(phases, relay, low), _find(phases, relay, high)
        summary |= {
            f"{relay}_added_p50_ms_c_low": r_low.p50_ms - d_low.p50_ms,
            f"{relay}_kept_pct_c_high": r_high.rps / d_high.rps * 100 if d_high.rps else 0.0,
            f"{relay}_cpu_us_per_call_c_low": r_low.us_per_call(r_low.bastion_cpu_s),
            f"{relay}_cpu_us_per_call_c_high": r_high.us_per_call(r_high.bastion_cpu_s),
        }
    verdicts = [
        Verdict(f"Bastion added p50 at c={low}", added_p50, "ms", "<= 1 ms", added_p50 <= 1.0),
        Verdict(f"throughput kept at c={high}", kept, "% of direct", ">= 60 %", kept >= 60.0),
        Verdict(
            f"Bastion CPU per call (c={low}: {cpu_low:.0f}, c={high}: {cpu_high:.0f}; worse one judged)",
            cpu,
            "µs",
            "<= 250 µs",
            cpu <= 250.0,
        ),
    ]
    return summary, verdicts


def table(phases: list[Phase]) -> str:
    head = (
        f"{'target':<8} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'calls':>7} "
        f"{'RSS MB b/o':>11} {'CPU µs/call b/o/gen':>20} {'cores b/o/gen/other/steal':>26}"
    )
    rows = [head, "-" * len(head)]
    for p in phases:
        cpu = (
            f"{p.us_per_call(p.bastion_cpu_s):.0f}/{p.us_per_call(p.origin_cpu_s):.0f}/"
            f"{p.us_per_call(p.loadgen_cpu_s):.0f}"
        )
        cores = "/".join(
            f"{p.cores(s):.2f}"
            for s in (p.bastion_cpu_s, p.origin_cpu_s, p.loadgen_cpu_s, p.other_cpu_s, p.machine_steal_s)
        )
        rows.append(
            f"{p.target:<8} {p.concurrency:>3} {p.rps:>8.0f} {p.p50_ms:>7.2f} {p.p99_ms:>7.2f} {p.errors:>6} "
            f"{p.calls:>7} {f'{p.bastion_peak_rss_mb:.0f}/{p.origin_peak_rss_mb:.0f}':>11} {cpu:>20} {cores:>26}"
        )
    return "\n".join(rows)
