"""Precision and recall of the baseline DLP detectors on the labelled corpus.

Run: `python -m bench.dlp_corpus [path] [--misses]` prints a table per detector and an overall
line; `--misses` also lists each false positive and false negative (the corpus is all fake data).
`tests/pipeline/test_dlp_corpus.py` reuses `measure` and holds the floors.

Scoring is per line and per detector, on `find_all(text, BASELINE)` (so overlaps are resolved as
callers see them): TP when the detector is labelled and fires, FP when it fires unlabelled, FN when
it is labelled and does not fire. A detector that never fires has precision 1.0, one that is never
labelled has recall 1.0: no evidence against it.

How far to trust the numbers: most of the corpus was written alongside the detectors, so it is
their tuning set, not a held-out test; about fifty lines near the end were written before the
detectors were run on them, and hold most of the misses. Lines are labelled by how they were made
(a generated test card is a payment_card), never by running a detector.

Labelling choices the numbers depend on:
- A 40-hex git SHA (and any hex-only string: SHA-256 digests, MD5s, UUIDs) is a high_entropy
  *negative*. Tool output is full of them and they are public identifiers; redacting them would
  break answers for nothing. Hex secrets are caught when they carry a known prefix (api_token).
- Certificates, public keys and `ssh-rsa AAAA...` lines are high_entropy negatives: public material.
- A near-miss for one detector that still contains a random 32+ character string (`ghp_` with 35
  characters, `sk_test_...`) is labelled high_entropy: that is what the fallback is for.
- us_ssn is the dashed form only: a bare nine-digit number is a negative, it could be anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bastion.pipeline.dlp_detectors import BASELINE, find_all

__all__ = ["CORPUS", "Score", "main", "measure", "total"]

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "pipeline" / "dlp_corpus.jsonl"


@dataclass(frozen=True, slots=True)
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    text: str
    labels: frozenset[str]
    fired: frozenset[str]


def lines(path: Path) -> Iterator[Line]:
    names = {d.name for d in BASELINE}
    with path.open(encoding="utf-8") as corpus:
        for number, raw in enumerate(corpus, 1):
            row = json.loads(raw)
            labels = frozenset(row["labels"])
            if not labels <= names:
                raise ValueError(f"{path}:{number}: unknown labels {sorted(labels - names)}")
            fired = frozenset(f.detector for f in find_all(row["text"], BASELINE))
            yield Line(number, row["text"], labels, fired)


def measure(path: Path = CORPUS) -> dict[str, Score]:
    """Per detector of BASELINE, in its order: TP, FP and FN over the corpus at `path`."""
    counts = {d.name: [0, 0, 0] for d in BASELINE}
    for line in lines(path):
        for name, c in counts.items():
            labelled, fired = name in line.labels, name in line.fired
            c[0] += labelled and fired
            c[1] += fired and not labelled
            c[2] += labelled and not fired
    return {name: Score(*c) for name, c in counts.items()}


def total(scores: dict[str, Score]) -> Score:
    """Micro-average: every detector's counts summed."""
    return sum(scores.values(), Score())


def table(scores: dict[str, Score]) -> str:
    rows = [f"{'detector':<16}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}"]
    for name, s in [*scores.items(), ("overall", total(scores))]:
        rows.append(f"{name:<16}{s.tp:>5}{s.fp:>5}{s.fn:>5}{s.precision:>11.3f}{s.recall:>8.3f}")
    return "\n".join(rows)


def misses(path: Path) -> Iterator[str]:
    for line in lines(path):
        for name in sorted(line.fired - line.labels):
            yield f"FP {name:<15} line {line.number}: {line.text[:100]!r}"
        for name in sorted(line.labels - line.fired):
            yield f"FN {name:<15} line {line.number}: {line.text[:100]!r}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dlp_corpus", description=__doc__.split("\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=CORPUS)
    parser.add_argument("--misses", action="store_true", help="list every false positive and false negative")
    args = parser.parse_args(argv)
    scores = measure(args.path)
    print(f"{sum(1 for _ in args.path.open(encoding='utf-8'))} lines in {args.path}")
    print(table(scores))
    if args.misses:
        for miss in misses(args.path):
            print(miss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
