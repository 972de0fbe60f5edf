"""Churn: 300 create/start/remove cycles of dependents and targets; everything the daemon
keeps per container goes with the container.

The cycles are bench/soak.py's (`make soak` runs 5,000 of them): two in three run a
dependent with a label of its own and remove it once its block is written, every third
does the same to a target that three stable dependents link to. RSS after 300 cycles must
be within 5 MB of RSS after the first 50, and the state file must follow the live
dependents: at the end it lists the stable ones only, and is no larger than after 50.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import docker
import pytest
from conftest import OWNER_LABEL

pytestmark = [pytest.mark.engine, pytest.mark.one_engine]

CYCLES = 300
CHECKPOINT = 50


def load_soak() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("hsd_bench_soak", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_churn_keeps_rss_and_state_flat(engine, containers, daemon, results):
    soak = load_soak()
    api = docker.APIClient(base_url=engine.host, version="auto", timeout=60)
    churn = soak.Churn(api, containers.prefix, containers.image,
                       Path(engine.containers_root),
                       labels={OWNER_LABEL: containers.prefix})  # fmt: skip
    d = daemon.start(level="info")
    d.wait_log(lambda e: e.get("event") == "ready", what="ready")
    churn.setup()
    try:
        figures = soak.measure(churn, d.pid, daemon.tmp / "state.json", CYCLES, CHECKPOINT)
    finally:
        api.close()
        results.update(
            fault=f"{CYCLES} create/start/remove cycles of dependents and targets",
            tried=churn.cycles, survived=churn.cycles if d.alive() else 0, data_lost=0,
        )  # fmt: skip
    figures.pop("ok")
    results.update(figures)
    marks = figures["marks"]
    assert d.alive()
    assert figures["rss_growth_kib"] <= soak.RSS_SLACK_KIB, (
        f"RSS grew {figures['rss_growth_kib']} KiB between cycle {CHECKPOINT} and {CYCLES}")
    assert marks["end"]["state_dependents"] == len(churn.stable), marks
    assert figures["state_growth_bytes"] <= soak.STATE_SLACK_BYTES, marks
