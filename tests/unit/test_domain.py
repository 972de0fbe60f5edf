"""links.domain and the hostsyncd.domain label: every line also carries the names with the
search domain, the dependent's label overrides the config, and a bad label falls back with
one message that names the label and quotes the value bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import LINKS, ctr, net

from hostsyncd.config import load
from hostsyncd.core.graph import Snapshot, plan
from hostsyncd.core.hostsblock import render_block
from hostsyncd.core.links import link_domain
from hostsyncd.core.model import DOMAIN_LABEL, HostLine
from hostsyncd.core.reconcile import reconcile

DB = ctr("mysql", net("n1", "10.0.0.2", "fd00::2"))


def _lines(domain: str = "", label: str | None = None, links: str = "mysql:db") -> list:
    web = ctr("web", net("n1", "10.0.0.3"), links=links,
              labels={DOMAIN_LABEL: label} if label is not None else None)
    found = plan(Snapshot([DB, web]), web, LINKS, domain=domain)
    assert found is not None
    return found.lines()


def test_every_line_also_carries_the_alias_and_the_target_with_the_domain() -> None:
    names = ("db", "mysql", "db.internal", "mysql.internal")
    assert _lines("internal") == [HostLine("10.0.0.2", names), HostLine("fd00::2", names)]


def test_no_domain_no_suffix() -> None:
    assert _lines("") == [HostLine("10.0.0.2", ("db", "mysql")),
                          HostLine("fd00::2", ("db", "mysql"))]


def test_an_alias_that_is_the_name_is_said_once_with_the_domain_too() -> None:
    assert _lines("svc.local", links="mysql")[0].names == ("mysql", "mysql.svc.local")


@pytest.mark.parametrize(("config", "label", "suffix"), [
    ("", "corp", "corp"), ("internal", "corp.example", "corp.example"),
    ("internal", "", None), ("", None, None), ("internal", " lab ", "lab"),
])
def test_the_dependents_label_overrides_the_config(config: str, label: str | None,
                                                   suffix: str | None) -> None:
    names = _lines(config, label)[0].names
    assert names[-1] == (f"mysql.{suffix}" if suffix else "mysql")


def test_a_bad_label_falls_back_to_the_config_and_says_so_bounded() -> None:
    web = ctr("web", net("n1", "10.0.0.3"), links="mysql:db",
              labels={DOMAIN_LABEL: "bad domain\x00" + "x" * 10_000})
    found = plan(Snapshot([DB, web]), web, LINKS, domain="internal")
    assert found is not None
    assert found.lines()[0].names[-1] == "mysql.internal"
    assert found.domain_error is not None
    assert DOMAIN_LABEL in found.domain_error and "links.domain (internal)" in found.domain_error
    assert "\\x00" in found.domain_error and len(found.domain_error) < 200


def test_a_name_the_domain_would_make_too_long_keeps_only_its_short_form() -> None:
    long = "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 60  # 243 characters
    target = ctr(long, net("n1", "10.0.0.2"))
    web = ctr("web", net("n1", "10.0.0.3"), links=f"{long}:db")
    found = plan(Snapshot([target, web]), web, LINKS, domain="internal.example")
    assert found is not None
    assert found.lines()[0].names == ("db", long, "db.internal.example")


def test_the_block_carries_the_domain(tmp_path: Path) -> None:
    web = ctr("web", net("n1", "10.0.0.3"), links="mysql:db")
    decided = reconcile(Snapshot([DB, web]), {}, LINKS, domain="internal")
    assert decided.blocks[web.id] == render_block(_lines("internal"))
    assert b"10.0.0.2\tdb mysql db.internal mysql.internal\n" in decided.blocks[web.id]


@pytest.mark.parametrize("value", ["internal", "corp.example", "svc_1.local", ""])
def test_links_domain_values(tmp_path: Path, value: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[links]\ndomain = "{value}"\n')
    assert load(path).links.domain == value


def test_a_domain_label_as_long_as_a_host_name_can_be_is_taken_and_no_longer() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters: the most DNS allows
    assert link_domain(name, "corp") == (name, None)
    # One more character, even a blank one, is refused before it is stripped or copied.
    assert link_domain(f" {name}", "corp")[0] == "corp"
    assert link_domain("", "corp") == ("", None)  # the label's "" means no domain


def test_a_bad_domain_label_names_the_default_and_quotes_the_value_cut_at_40() -> None:
    assert link_domain("a b", "") == ("", f"label {DOMAIN_LABEL}='a b' is not a host name; "
                                          "using links.domain (none)")
    forty, more = "x y" + "z" * 37, "x y" + "z" * 38
    assert link_domain(forty, "corp")[1] == (
        f"label {DOMAIN_LABEL}={forty!r} is not a host name; using links.domain (corp)")
    assert link_domain(more, "corp")[1] == (
        f"label {DOMAIN_LABEL}={(forty + '...')!r} is not a host name; using links.domain "
        "(corp)")
