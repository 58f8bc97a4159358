"""Ids for labels (request, correlation, audit record, token use): 128 bits, unique, in time order, and
different in a forked child."""

from __future__ import annotations

import os
import re
import time

import pytest

from bastion.ids import unique_id


def test_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    ids = [unique_id() for _ in range(100_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_ids_begin_with_the_time_so_later_ones_sort_after() -> None:
    before = time.time_ns() // 1_000_000
    first = unique_id()
    time.sleep(0.002)
    second = unique_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(first[:12], 16) < int(second[:12], 16) <= after
    assert first < second  # as strings too: what an index orders them by


# The child only writes to a pipe and exits: forking beside the suite's other threads is safe here.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next ids, to the parent
        os.write(write, "".join(unique_id() for _ in range(8)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read().decode()
    ours = "".join(unique_id() for _ in range(8))
    assert len(theirs) == len(ours) == 256 and theirs != ours
