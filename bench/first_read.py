"""First read: is the link in /etc/hosts by the time a restarted dependent's entrypoint
reads it? The entrypoint copies /etc/hosts before doing anything else; after each restart
the copy is checked. Docker's --link writes the file during the start itself, so it sets
the bar; hostsyncd must race the entrypoint."""

from __future__ import annotations

from lib import Bench, alias_ip, run_alone, wait_for

ENTRYPOINT = ["sh", "-c", "cat /etc/hosts > /first-read; exec sleep 3600"]


def measure(bench: Bench, restarts: int = 50) -> dict[str, object]:
    db = bench.run("fr-db")
    deps = {
        "link": bench.run("fr-linked", links={bench.name("fr-db"): "db"}, cmd=ENTRYPOINT),
        "hostsyncd": bench.run(
            "fr-labelled", labels={"hostsyncd.links": f"{bench.name('fr-db')}:db"}, cmd=ENTRYPOINT
        ),
    }
    db_ip = bench.ip(db)
    wait_for(lambda: alias_ip(bench.hosts_path(deps["hostsyncd"]).read_bytes(), "db"), 10)
    hits = {side: 0 for side in deps}
    for _ in range(restarts):
        for side, cid in deps.items():
            bench.api.restart(cid, timeout=0)
            first = _first_read(bench, cid)
            hits[side] += alias_ip(first, "db") == db_ip
    return {
        "restarts": restarts,
        **{f"{side}_hits": n for side, n in hits.items()},
        **{f"{side}_pct": 100.0 * n / restarts for side, n in hits.items()},
    }


def _first_read(bench: Bench, cid: str) -> bytes:
    def copied() -> bytes | None:
        exec_id = bench.api.exec_create(cid, ["cat", "/first-read"])["Id"]
        out = bench.api.exec_start(exec_id)
        return out if bench.api.exec_inspect(exec_id)["ExitCode"] == 0 else None

    return wait_for(copied, 10, interval=0.05)  # type: ignore[return-value]


if __name__ == "__main__":
    run_alone(measure, restarts=20)
