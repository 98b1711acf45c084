"""What the app does to its process at start and stop, beyond the gateway's own runtime."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from gateway.app.factory import SERVING_GC_THRESHOLD
from tests.inprocess import in_process_gateway


def test_startup_freezes_its_heap_out_of_the_collectors_sight(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> None:
    # Under load a full collection with the startup heap in it stopped the event loop for
    # ~100 ms; frozen at start, it scans only what requests made (and is undone at stop).
    gc.unfreeze()
    with in_process_gateway(tmp_path_factory.mktemp("lifespan"), keys_dir) as gateway:
        frozen = gc.get_freeze_count()
        assert gateway.http.get(gateway.url + "/healthz").status_code == 200
    assert frozen > 10_000  # the app, its runtime, policies and keys: all startup loaded
    assert gc.get_freeze_count() == 0


def test_serving_raises_the_young_generations_threshold_and_stopping_restores_it(
    tmp_path_factory: pytest.TempPathFactory, keys_dir: Path
) -> None:
    # At CPython's 700 the requests in flight set off a young collection every few lookups
    # and a full one (a pause of milliseconds) every thousand or so.
    before = gc.get_threshold()
    assert before[0] < SERVING_GC_THRESHOLD
    with in_process_gateway(tmp_path_factory.mktemp("gc-threshold"), keys_dir) as gateway:
        assert gateway.http.get(gateway.url + "/healthz").status_code == 200
        serving = gc.get_threshold()
    assert serving == (SERVING_GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
