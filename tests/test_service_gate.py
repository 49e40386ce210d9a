"""The writer service's start gate (``mlhooks.delivery.service_gate``): read from the
page of shared memory where :mod:`mlhooks.core.activity` counts this process's fits,
as the service reads it (the fault suite runs it in real services)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from mlhooks.core import activity
from mlhooks.delivery import service_gate
from mlhooks.delivery.service_gate import StartGate

LONG = 600.0
"""A hold longer than any test: the gate opens for another reason, or not at all."""


@pytest.fixture
def page_fd() -> Iterator[int]:
    """A fresh page that this process's fit counts go to (a copy of its fd: the gate
    closes the one it takes)."""
    made = service_gate.new_page()
    assert made is not None, "Linux has memfd_create"
    fd, page = made
    activity.share(page)
    try:
        yield fd
    finally:
        activity.share(None)
        page.close()
        os.close(fd)


def _opens_within(gate: StartGate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not gate.is_open and time.monotonic() < deadline:
        time.sleep(0.01)
    return gate.is_open


def test_a_running_fit_holds_the_gate_until_it_and_another_ended(page_fd: int) -> None:
    first = activity.fit_started()
    gate = StartGate(os.dup(page_fd), defer=LONG)
    assert not _opens_within(gate, 0.3)  # a fit trains
    activity.fit_ended(first)
    second = activity.fit_started()
    assert not _opens_within(gate, 0.3)  # one ended, the next trains
    activity.fit_ended(second)
    assert _opens_within(gate, 30)  # two ended: a loop of short fits does not wait


def test_no_fit_for_a_second_opens_the_gate(page_fd: int) -> None:
    gate = StartGate(os.dup(page_fd), defer=LONG)
    assert _opens_within(gate, 30)
    assert gate.held >= service_gate.QUIET


def test_the_hold_ends_after_defer_seconds(page_fd: int) -> None:
    outer = activity.fit_started()
    try:
        gate = StartGate(os.dup(page_fd), defer=0.2)
        assert _opens_within(gate, 30)
    finally:
        activity.fit_ended(outer)


def test_open_lets_the_service_start_at_once(page_fd: int) -> None:
    outer = activity.fit_started()
    try:
        gate = StartGate(os.dup(page_fd), defer=LONG)
        assert not gate.is_open
        gate.open()  # a flush, the exit, a death
        gate.wait()
    finally:
        activity.fit_ended(outer)


@pytest.mark.parametrize("defer", [0.0, LONG])
def test_without_a_page_or_a_hold_the_gate_is_open(page_fd: int, defer: float) -> None:
    assert StartGate(None, defer=defer).is_open
    assert StartGate(os.dup(page_fd), defer=0.0).is_open


def test_a_forked_childs_fits_are_not_counted_on_its_parents_page(page_fd: int) -> None:
    outer = activity.fit_started()
    try:
        pid = os.fork()
        if pid == 0:  # the child fits twice: the parent's service must not hear of it
            for _ in range(2):
                activity.fit_ended(activity.fit_started())
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        gate = StartGate(os.dup(page_fd), defer=LONG)
        assert not _opens_within(gate, 0.3)
        gate.open()
    finally:
        activity.fit_ended(outer)
