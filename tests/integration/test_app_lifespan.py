"""What the app does to its process at start and stop, beyond the gateway's own runtime."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

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
