"""Bulk enqueues pause the cyclic garbage collector and always give it back as found."""

from __future__ import annotations

import gc
import threading

from jobforge.jobs import gc_paused


def test_pauses_nest_and_restore_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_overlapping_pauses_in_threads_restore_the_collector() -> None:
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gc_paused():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    with gc_paused():
        t.start()
        inside.wait(5)
    assert not gc.isenabled()  # the thread's pause outlives ours
    release.set()
    t.join(5)
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
