"""[metrics] with the cluster on: hostsyncd_cluster_up says whether etcd answers."""

from __future__ import annotations

import pytest
from integration.util import read_metrics, value

pytestmark = pytest.mark.engine


def _check_cluster_up(nodes, endpoints: list[str] | None, expected: bool, wait_until) -> None:
    textfile = nodes.factory("a").tmp / "hostsyncd.prom"
    textfile.unlink(missing_ok=True)
    d = nodes.start("a", cluster={"endpoints": endpoints} if endpoints else None,
                    extra={"metrics": {"textfile": str(textfile), "interval": 1}})
    d.wait_log(lambda e: e.get("event") == "ready", what="ready")
    # The state file and the textfile agree on the cluster's health.
    wait_until(lambda: nodes.cluster_state("a").get("connected") is expected
               and value(read_metrics(textfile), "hostsyncd_cluster_up") == int(expected),
               what=f"cluster connected = {expected} in the state file and the textfile")
    assert d.stop() == 0
    assert value(read_metrics(textfile), "hostsyncd_cluster_up") == int(expected)


def test_cluster_up_follows_etcd(nodes, wait_until):
    _check_cluster_up(nodes, None, True, wait_until)
    # Nothing listens on the discard port: etcd never answers.
    _check_cluster_up(nodes, ["http://127.0.0.1:9"], False, wait_until)
