"""The [cluster] TLS keys (`ca`, `cert`, `key`) and etcd users (`username`, `password`,
`password_file`) against a real etcd, with real daemons.

Each module-scoped etcd here is a single member of its own (not the suite's 3-member
cluster), a child of this pytest run on loopback ports of its own, its data dir under
tmp_path; it is killed at teardown (and with pytest, should pytest die):

- `tls_etcd`: https only, `--client-cert-auth`: a throwaway CA (openssl) signs its server
  certificate (subjectAltName IP:127.0.0.1) and a client certificate;
- `auth_etcd`: plain http, auth enabled with etcdctl (root, and user `hostsyncd` whose role
  may read and write /hsdtest/ only), simple tokens that expire after AUTH_TOKEN_TTL s.

Nothing here skips: if openssl or etcd cannot do its part, the test fails and shows why.
The daemons are the `nodes` machinery of conftest.py (`Nodes`), pointed at these etcds.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _test_failed
from integration.util import block, block_is, line, read

from hostsyncd._etcd import EtcdClient, PermissionDenied
from hostsyncd.config import ClusterConfig

from .conftest import PUBLISH, Nodes

pytestmark = pytest.mark.engine

HOST = "127.0.0.1"
AUTH_TOKEN_TTL = 2  # seconds; etcd drops an idle simple token within TTL + 1 s
ROOT_PASSWORD = "root-" + secrets.token_hex(6)
HSD_PASSWORD = "hsd-" + secrets.token_hex(6)
# The system's CA bundle variables. requests lets them win over a Session's `verify`, so
# the tests that prove `ca` works run the daemon without them, as systemd does; one test
# below sets one on purpose.
NO_CA_BUNDLE_ENV = {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""}
# The dependents' links label: other test runs' daemons may share these engines, and with
# the default label they would take our dependents for theirs (and rewrite their blocks).
LABEL = "hsdsecured.links"


# -- certificates ---------------------------------------------------------------------------

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
# clientAuth as well: etcd's JSON gateway dials etcd's gRPC with the server certificate.
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl not found (apt-get install openssl)", pytrace=False)
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=30)  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"openssl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}",
                    pytrace=False)  # fmt: skip


class Pki:
    """A throwaway CA in `directory`, and certificates it signs (EC P-256 keys)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cnf = self.dir / "openssl.cnf"
        self.cnf.write_text(OPENSSL_CNF)
        self.name = name
        self.ca = self.dir / f"{name}-ca.crt"
        self.ca_key = self.dir / f"{name}-ca.key"
        _openssl("req", "-x509", "-config", str(self.cnf), "-extensions", "ca",
                 "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", "2",
                 "-subj", f"/CN=hostsyncd test CA {name} {secrets.token_hex(3)}",
                 cwd=self.dir)  # fmt: skip

    def issue(self, stem: str, cn: str, kind: str) -> tuple[Path, Path]:
        """(certificate, key) for `cn`; kind is "server" or "client" (the cnf section)."""
        crt, key, csr = (self.dir / f"{stem}.{ext}" for ext in ("crt", "key", "csr"))
        _openssl("req", "-new", "-config", str(self.cnf), "-newkey", "ec",
                 "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
                 "-out", str(csr), "-subj", f"/CN={cn}", cwd=self.dir)  # fmt: skip
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey",
                 str(self.ca_key), "-set_serial", "0x" + secrets.token_hex(8), "-days", "2",
                 "-extfile", str(self.cnf), "-extensions", kind, "-out", str(crt),
                 cwd=self.dir)  # fmt: skip
        return crt, key


# -- one etcd member --------------------------------------------------------------------------


def _free_port_pair(first: int, last: int) -> tuple[int, int]:
    """Two consecutive free loopback ports (client, peer) in [first, last]."""
    for port in range(first, last, 2):
        try:
            for p in (port, port + 1):
                with socket.socket() as s:
                    s.bind((HOST, p))
        except OSError:
            continue
        return port, port + 1
    pytest.fail(f"no two free loopback ports in {first}-{last}", pytrace=False)


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: SIGKILL the etcd if pytest dies without its teardown.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _post(url: str, body: dict[str, Any], context: ssl.SSLContext | None = None,
          headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """POST JSON to etcd's gateway; the reply's JSON (HTTPError on a refusal)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=3, context=context) as resp:
        out: dict[str, Any] = json.loads(resp.read() or b"{}")
    return out


class SoloEtcd:
    """A single-member etcd, child of this process. Duck-types what `Nodes` needs of the
    suite's EtcdCluster (endpoints, get, range_prefix, delete_prefix, log_tail), reading
    and writing through etcdctl with the credentials etcd asks for."""

    def __init__(self, root: Path, ports: tuple[int, int], *, tls: dict[str, Path] | None = None,
                 args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.root = root
        self.client_port, self.peer_port = ports
        self.tls = tls  # ca, cert, key (the server's), client_cert, client_key
        self.args = args
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://{HOST}:{self.client_port}"
        self.logfile = root / "etcd.log"
        self.user: str | None = None  # "name:password" for etcdctl, once auth is on
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoints(self) -> list[str]:
        return [self.url]

    def start(self, timeout: float = 15) -> None:
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        if not Path(etcd).exists():
            pytest.fail("etcd not found: run scripts/ensure-deps.sh etcd", pytrace=False)
        peer = f"http://{HOST}:{self.peer_port}"
        cmd = [
            etcd, "--name", "solo", "--data-dir", str(self.root / "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"solo={peer}", "--initial-cluster-state", "new",
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-level", "warn", *self.args,
        ]  # fmt: skip
        if self.tls:
            cmd += ["--cert-file", str(self.tls["cert"]), "--key-file", str(self.tls["key"]),
                    "--trusted-ca-file", str(self.tls["ca"]), "--client-cert-auth"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with self.logfile.open("ab") as log:
            log.write(f"=== starting: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, preexec_fn=_die_with_parent)  # fmt: skip
        deadline = time.monotonic() + timeout
        last: Any = "no answer"
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"etcd at {self.url} exited with {self.proc.returncode} while "
                            f"starting\n{self.log_tail()}", pytrace=False)  # fmt: skip
            try:  # the JSON gateway (what hostsyncd uses) answers, not only gRPC
                if _post(self.url + "/v3/kv/range", {"key": "Lw=="}, self.ssl_context()):
                    return
            except (OSError, ValueError) as exc:
                last = exc
            if time.monotonic() >= deadline:
                pytest.fail(f"etcd at {self.url} not answering within {timeout}s: {last}\n"
                            f"{self.log_tail()}", pytrace=False)  # fmt: skip
            time.sleep(0.05)

    def ssl_context(self, **overrides: Path | None) -> ssl.SSLContext | None:
        """A client context with the test CA and client certificate (or overrides)."""
        if not self.tls:
            return None
        files = {"ca": self.tls["ca"], "cert": self.tls["client_cert"],
                 "key": self.tls["client_key"], **overrides}  # fmt: skip
        context = ssl.create_default_context(cafile=str(files["ca"]))
        if files["cert"] is not None and files["key"] is not None:
            context.load_cert_chain(str(files["cert"]), str(files["key"]))
        return context

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def etcdctl(self, *args: str, check: bool = True, user: str | None = None,
                timeout: float = 10) -> subprocess.CompletedProcess[str]:  # fmt: skip
        cmd = ["etcdctl", "--endpoints", self.url, "--dial-timeout", "2s"]
        if self.tls:
            cmd += ["--cacert", str(self.tls["ca"]), "--cert", str(self.tls["client_cert"]),
                    "--key", str(self.tls["client_key"])]  # fmt: skip
        if user or self.user:
            cmd += ["--user", user or self.user or ""]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        env["ETCDCTL_API"] = "3"
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=timeout)  # fmt: skip
        if check and proc.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    # what Nodes reads and deletes
    def _kvs(self, key: str, *flags: str) -> dict[str, str]:
        out = json.loads(self.etcdctl("get", key, *flags, "-w", "json").stdout)
        return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", ""))
                .decode(errors="replace") for kv in out.get("kvs") or []}  # fmt: skip

    def get(self, key: str) -> str | None:
        return self._kvs(key).get(key)

    def range_prefix(self, prefix: str) -> dict[str, str]:
        return self._kvs(prefix, "--prefix")

    def delete_prefix(self, prefix: str) -> int:
        return int(self.etcdctl("del", "--prefix", prefix).stdout.strip() or 0)

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            pytest.fail(f"etcd at {self.url} is not running\n{self.log_tail()}", pytrace=False)

    def log_text(self) -> str:
        return self.logfile.read_bytes().decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"--- {self.logfile} ---\n{tail}"


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    good, other = Pki(d, "good"), Pki(d, "other")
    server_crt, server_key = good.issue("server", HOST, "server")
    client_crt, client_key = good.issue("client", "hostsyncd", "client")
    stranger_crt, stranger_key = other.issue("stranger", "hostsyncd", "client")
    return {"ca": good.ca, "cert": server_crt, "key": server_key, "client_cert": client_crt,
            "client_key": client_key, "other_ca": other.ca, "other_client_cert": stranger_crt,
            "other_client_key": stranger_key}  # fmt: skip


@pytest.fixture(scope="module")
def tls_etcd(tls_pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[SoloEtcd]:  # fmt: skip
    etcd = SoloEtcd(tmp_path_factory.mktemp("tls-etcd"), _free_port_pair(23811, 23849),
                    tls=tls_pki)  # fmt: skip
    try:
        etcd.start()
        yield etcd
    finally:
        etcd.stop()


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoloEtcd]:
    etcd = SoloEtcd(tmp_path_factory.mktemp("auth-etcd"), _free_port_pair(23851, 23889),
                    args=("--auth-token", "simple", "--auth-token-ttl", str(AUTH_TOKEN_TTL),
                          "--bcrypt-cost", "4"))  # fmt: skip
    try:
        etcd.start()
        for args in (
            ("user", "add", f"root:{ROOT_PASSWORD}"),
            ("user", "add", f"hostsyncd:{HSD_PASSWORD}"),
            ("role", "add", "hsd"),
            ("role", "grant-permission", "hsd", "--prefix=true", "readwrite", "/hsdtest/"),
            ("user", "grant-role", "hostsyncd", "hsd"),
            ("auth", "enable"),
        ):
            etcd.etcdctl(*args)
        etcd.user = f"root:{ROOT_PASSWORD}"
        yield etcd
    finally:
        etcd.stop()


def _nodes(etcd: SoloEtcd, request: pytest.FixtureRequest, tmp_path: Path,
           prefix: str) -> Iterator[Nodes]:  # fmt: skip
    etcd.ensure_running()
    n = Nodes(etcd, request, tmp_path, prefix)
    yield n
    n.cleanup(dump=_test_failed(request))


@pytest.fixture
def tls_nodes(tls_etcd: SoloEtcd, request: pytest.FixtureRequest, tmp_path: Path,
              prefix: str) -> Iterator[Nodes]:  # fmt: skip
    yield from _nodes(tls_etcd, request, tmp_path, prefix)


@pytest.fixture
def auth_nodes(auth_etcd: SoloEtcd, request: pytest.FixtureRequest, tmp_path: Path,
               prefix: str) -> Iterator[Nodes]:  # fmt: skip
    yield from _nodes(auth_etcd, request, tmp_path, prefix)


# -- helpers ----------------------------------------------------------------------------------


def tls_keys(pki: dict[str, Path], **overrides: Any) -> dict[str, Any]:
    keys: dict[str, Any] = {"ca": pki["ca"], "cert": pki["client_cert"],
                            "key": pki["client_key"]}  # fmt: skip
    keys.update(overrides)
    return {k: v for k, v in keys.items() if v is not None}


def connected(nodes: Nodes, *names: str):
    def check() -> bool:
        return all(nodes.cluster_state(n).get("connected") is True for n in names)

    check.__name__ = f"cluster connected on {names}"
    return check


def degraded(nodes: Nodes, node: str, needle: str):
    """A wait_until condition: the node's state shows the cluster down for a reason that
    mentions `needle` (and so is not the initial "connecting"); returns its cluster state."""

    def check() -> dict[str, Any] | None:
        state = nodes.cluster_state(node)
        reason = state.get("reason") or ""
        ok = state.get("connected") is False and needle.lower() in reason.lower()
        return state if ok else None

    check.__name__ = f"node {node} degraded, reason mentioning {needle!r}"
    return check


def rejections(etcd: SoloEtcd, text: str) -> int:
    """How many lines of etcd's log mention `text` (a refused TLS handshake or login)."""
    return sum(text in entry for entry in etcd.log_text().splitlines())


def keeps_retrying(d, etcd: SoloEtcd, text: str, before: int, wait_until) -> None:
    """The daemon goes on trying (etcd refuses it at least 3 more times) and runs on."""
    wait_until(lambda: rejections(etcd, text) >= before + 3, timeout=10,
               what=f"3 more refusals in etcd's log ({text!r})",
               show=lambda: etcd.log_tail(5))  # fmt: skip
    assert d.alive(), d.stderr_text()[-2000:]


def cross_host_link(nodes: Nodes, containers, containers_b, wait_until, *,
                    a: dict[str, Any], b: dict[str, Any],
                    env: dict[str, str] | None = None):  # fmt: skip
    """b publishes db on a network of its own; a's web links to b/db. Returns
    (net, db, web, hosts path of web) once the line is there and both daemons say so."""
    net = containers_b.networks.create("n")
    db = containers_b.run("db", "--ip", net.addr(10), labels={PUBLISH: "true"},
                          network=net.name)  # fmt: skip
    web = containers.run("web", labels={LABEL: f"b/{db}"})
    nodes.start("b", env=env, cluster=b, label=LABEL)
    nodes.start("a", env=env, cluster=a, label=LABEL)
    ip = containers_b.ip(db, net.name)
    assert ip == net.addr(10)
    record = nodes.wait_record("b", db, ipv4=ip, timeout=10)  # read back through etcdctl
    assert record["node"] == "b" and record["name"] == db
    path = containers.hosts_path(web)
    wait_until(block_is(path, [line(ip, db)]), timeout=10,
               show=lambda: (read(path), nodes.state("a")))  # fmt: skip
    nodes.wait_addresses("a", web, [ip])
    wait_until(connected(nodes, "a", "b"), timeout=5,
               show=lambda: (nodes.cluster_state("a"), nodes.cluster_state("b")))  # fmt: skip
    assert block(containers.hosts(web)) == [line(ip, db)]  # as the container sees it
    return net, db, web, path


# -- TLS ----------------------------------------------------------------------------------------


def test_tls_etcd_demands_a_client_certificate_from_its_ca(tls_etcd, tls_pki):
    """The harness itself: only a client with the right CA and a client certificate it
    signed gets an answer, so a daemon that works below really uses ca, cert and key."""
    url = tls_etcd.url + "/v3/kv/range"
    assert "header" in _post(url, {"key": "Lw=="}, tls_etcd.ssl_context())
    for refused in (
        tls_etcd.ssl_context(cert=None, key=None),
        tls_etcd.ssl_context(cert=tls_pki["other_client_cert"], key=tls_pki["other_client_key"]),
        tls_etcd.ssl_context(ca=tls_pki["other_ca"]),
    ):
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _post(url, {"key": "Lw=="}, refused)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _post(url.replace("https://", "http://"), {"key": "Lw=="})


def test_link_across_hosts_over_tls_with_client_certificates(tls_nodes, tls_etcd, tls_pki,
                                                             containers, containers_b,
                                                             wait_until):  # fmt: skip
    keys = tls_keys(tls_pki, endpoints=tls_etcd.endpoints)
    net, db, web, _ = cross_host_link(tls_nodes, containers, containers_b, wait_until,
                                      a=keys, b=keys, env=NO_CA_BUNDLE_ENV)  # fmt: skip
    for node in ("a", "b"):
        state = tls_nodes.cluster_state(node)
        assert state["endpoint"] == tls_etcd.url and state["endpoint"].startswith("https://")
        assert state["reason"] == ""
    # The record, read with etcdctl over TLS, and what a's daemon made of it.
    raw = tls_etcd.etcdctl("get", "--prefix", tls_nodes.prefix + "/nodes/b/").stdout
    assert tls_nodes.key("b", db) in raw and containers_b.ip(db, net.name) in raw
    assert tls_nodes.links_of("a", web)[0]["problem"] is None


def test_wrong_ca_or_missing_client_certificate_degrades_but_the_daemon_runs_on(
    tls_nodes, tls_etcd, tls_pki, containers, wait_until
):
    cases = [
        # (what, [cluster] TLS keys, what the reason must mention, etcd's log about it)
        ("another CA", tls_keys(tls_pki, ca=tls_pki["other_ca"]), "SSL",
         '"rejected connection"'),
        ("no client certificate", tls_keys(tls_pki, cert=None, key=None), tls_etcd.url,
         '"rejected connection"'),
    ]  # fmt: skip
    for what, keys, needle, etcd_says in cases:
        rejected = rejections(tls_etcd, etcd_says)
        d = tls_nodes.start("a", env=NO_CA_BUNDLE_ENV, label=LABEL, cluster={
            **keys, "endpoints": tls_etcd.endpoints, "timeout": 1})  # fmt: skip
        state = wait_until(degraded(tls_nodes, "a", needle), timeout=10, what=what,
                           show=lambda: tls_nodes.state("a"))  # fmt: skip
        print(f"{what}: reason {state['reason']!r}")
        d.wait_log(lambda e: "etcd unreachable" in str(e.get("event")), timeout=5,
                   what=f"{what}: the 'etcd unreachable' warning")  # fmt: skip
        keeps_retrying(d, tls_etcd, etcd_says, rejected, wait_until)
        assert tls_nodes.cluster_state("a")["connected"] is False
        assert d.stop() == 0


def test_ca_key_is_used_even_when_the_environment_names_a_ca_bundle(
    tls_nodes, tls_etcd, tls_pki, containers, wait_until
):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE win over a Session's `verify`: a
    daemon started from a shell or unit with either set would ignore `cluster.ca`."""
    env = {"REQUESTS_CA_BUNDLE": str(tls_pki["other_ca"]), "CURL_CA_BUNDLE": ""}
    tls_nodes.start("a", env=env, label=LABEL,
                    cluster=tls_keys(tls_pki, endpoints=tls_etcd.endpoints))

    def settled() -> dict[str, Any] | None:  # connected, or down for a real reason
        state = tls_nodes.cluster_state("a")
        failing = [part for part in state["reason"].split("; ") if part]
        up = state["connected"] is True
        return state if up or (failing and "connecting" not in state["reason"]) else None

    state = wait_until(settled, timeout=10, what="node a connected or failing")
    assert state["connected"] is True, (
        f"cluster.ca = {tls_pki['ca']} ignored while REQUESTS_CA_BUNDLE names another CA: "
        f"{state['reason']}")


# -- users ----------------------------------------------------------------------------------------


def _invalid_tokens(etcd: SoloEtcd) -> int:
    """How often etcd refused an expired (or unknown) token so far."""
    return etcd.log_text().count('"msg":"invalid auth token"')


def test_link_across_hosts_as_an_etcd_user_survives_token_expiry(
    auth_nodes, auth_etcd, containers, containers_b, wait_until, tmp_path
):
    password_file = tmp_path / "etcd-password"
    password_file.write_text(HSD_PASSWORD + "\nthe first line only\n")
    password_file.chmod(0o600)
    # A silent watch is reopened after `timeout` seconds: 5 s, longer than the tokens'
    # 2 s TTL, so the reopened watches present expired tokens.
    common = {"endpoints": auth_etcd.endpoints, "username": "hostsyncd", "timeout": 5}
    # b keeps its lease alive only every 10 s: its publisher's token idles out between.
    net, db, web, path = cross_host_link(
        auth_nodes, containers, containers_b, wait_until,
        a={**common, "password_file": password_file},
        b={**common, "password": HSD_PASSWORD, "lease_ttl": 30},
    )  # fmt: skip
    since = {n: auth_nodes.cluster_state(n)["since"] for n in ("a", "b")}

    # etcd really refuses what the user may not touch, and anyone without a login.
    denied = auth_etcd.etcdctl("get", "/elsewhere", user=f"hostsyncd:{HSD_PASSWORD}",
                               check=False)  # fmt: skip
    assert denied.returncode != 0 and "permission denied" in denied.stderr, denied
    anonymous = urllib.request.Request(auth_etcd.url + "/v3/kv/range", method="POST",
                                       data=b'{"key":"L2hzZHRlc3Qv"}')  # fmt: skip
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(anonymous, timeout=3)

    # Idle: the watches reopen every 5 s and then present tokens etcd has dropped (it says
    # so in its log). Wait for that, so the publisher's token (last used for the put of
    # db's record) is expired too.
    before = _invalid_tokens(auth_etcd)
    wait_until(lambda: _invalid_tokens(auth_etcd) > before, timeout=10, interval=0.1,
               what="etcd refusing a daemon's expired token (a renewed watch)",
               show=lambda: auth_etcd.log_tail(10))  # fmt: skip
    refused = _invalid_tokens(auth_etcd)
    idle = time.monotonic()

    # db gets a new IP: b's publisher must log in again to write it, and a must follow.
    new_ip = net.addr(20)
    containers_b.docker("network", "disconnect", net.name, db)
    containers_b.docker("network", "connect", "--ip", new_ip, net.name, db)
    auth_nodes.wait_record("b", db, ipv4=new_ip, timeout=5)
    wait_until(block_is(path, [line(new_ip, db)]), timeout=5, what="a follows db's new IP",
               show=lambda: (read(path), auth_nodes.state("a")))  # fmt: skip
    auth_nodes.wait_addresses("a", web, [new_ip])
    print(f"token expired -> new IP on a after {time.monotonic() - idle:.2f}s; etcd refused "
          f"{_invalid_tokens(auth_etcd)} expired tokens in all")
    assert _invalid_tokens(auth_etcd) > refused, "the publisher's write used a live token"
    # ... transparently: neither daemon ever saw the cluster as down.
    for node in ("a", "b"):
        state = auth_nodes.cluster_state(node)
        assert state["connected"] is True and state["since"] == since[node], state
        d = auth_nodes.daemon(node)
        assert not [e for e in d.logs() if "etcd unreachable" in str(e.get("event"))]


def test_wrong_password_degrades_with_an_authentication_reason(
    auth_nodes, auth_etcd, containers, wait_until
):
    etcd_says = "invalid authentication was requested"
    rejected = rejections(auth_etcd, etcd_says)
    d = auth_nodes.start("a", label=LABEL, cluster={
        "endpoints": auth_etcd.endpoints, "timeout": 1, "username": "hostsyncd",
        "password": "not-it"})  # fmt: skip
    state = wait_until(degraded(auth_nodes, "a", "authentication"), timeout=10,
                       show=lambda: auth_nodes.state("a"))  # fmt: skip
    print(f"wrong password: reason {state['reason']!r}")
    d.wait_log(lambda e: "etcd unreachable" in str(e.get("event")), timeout=5,
               what="the 'etcd unreachable' warning")  # fmt: skip
    keeps_retrying(d, auth_etcd, etcd_says, rejected, wait_until)
    assert auth_nodes.cluster_state("a")["connected"] is False
    assert d.stop() == 0


def test_a_password_readable_by_others_is_warned_about_at_start(
    auth_nodes, auth_etcd, containers, wait_until
):
    """The daemon still runs and logs in: the warning is for the operator to act on."""
    keys = {"endpoints": auth_etcd.endpoints, "username": "hostsyncd", "password": HSD_PASSWORD}
    config = auth_nodes.write_config("a", cluster=keys, label=LABEL)
    config.chmod(0o644)
    d = auth_nodes.factory("a").start(config=config)
    auth_nodes.last["a"] = d
    entry = d.wait_log(lambda e: e.get("event") == "secret readable by group or others",
                       timeout=10, what="the warning about the config's mode")  # fmt: skip
    assert str(config) in entry["problem"] and "0644" in entry["problem"]
    assert HSD_PASSWORD not in json.dumps(d.logs()) + d.stderr_text()
    wait_until(connected(auth_nodes, "a"), timeout=10, show=lambda: auth_nodes.state("a"))
    assert HSD_PASSWORD not in auth_nodes.state_file("a").read_text()
    assert d.stop() == 0

    config.chmod(0o600)
    d = auth_nodes.factory("a").start(config=config)
    auth_nodes.last["a"] = d
    wait_until(lambda: auth_nodes.cluster_state("a").get("connected") is True
               and auth_nodes.state("a")["pid"] == d.pid, timeout=10,
               what="the second daemon connected")  # fmt: skip
    assert not [e for e in d.logs() if e.get("event") == "secret readable by group or others"]
    assert d.stop() == 0



# -- one etcd user and role per node (the README's commands) -------------------------------------


def _node_user(etcd: SoloEtcd, prefix: str, node: str) -> tuple[str, str]:
    """The README's commands for one node: a role with readwrite on its own
    <prefix>/nodes/<node>/ and read on <prefix>/nodes/, and a user with that role."""
    user, password = f"hostsyncd-{node}-{secrets.token_hex(3)}", secrets.token_hex(8)
    for args in (
        ("role", "add", user),
        ("role", "grant-permission", user, "--prefix=true", "readwrite",
         f"{prefix}/nodes/{node}/"),
        ("role", "grant-permission", user, "--prefix=true", "read", f"{prefix}/nodes/"),
        ("user", "add", f"{user}:{password}"),
        ("user", "grant-role", user, user),
    ):  # fmt: skip
        etcd.etcdctl(*args)
    return user, password


def test_one_user_and_role_per_node(auth_nodes, auth_etcd, containers, containers_b,
                                    wait_until):  # fmt: skip
    prefix = auth_nodes.prefix
    users = {node: _node_user(auth_etcd, prefix, node) for node in ("a", "b")}
    keys = {node: {"endpoints": auth_etcd.endpoints, "username": user, "password": password}
            for node, (user, password) in users.items()}  # fmt: skip

    # Both daemons work under these roles: b publishes, a follows, and both hold their name.
    net, db, _, path = cross_host_link(auth_nodes, containers, containers_b, wait_until,
                                       a=keys["a"], b=keys["b"])  # fmt: skip
    for node in ("a", "b"):
        state = auth_nodes.cluster_state(node)
        assert state["connected"] and state["claimed"] and not state["reason"], state
    new_ip = net.addr(30)
    containers_b.docker("network", "disconnect", net.name, db)
    containers_b.docker("network", "connect", "--ip", new_ip, net.name, db)
    wait_until(block_is(path, [line(new_ip, db)]), timeout=5, what="a follows db's new IP")

    # a's credentials cannot write under nodes/b/ (nor elsewhere outside nodes/a/), but
    # may write its own and read everyone's.
    user_a, password_a = users["a"]
    as_a = f"{user_a}:{password_a}"
    for key in (f"{prefix}/nodes/b/containers/{db}", f"{prefix}/nodes/b/owner",
                f"{prefix}/nodes/c/containers/x", f"{prefix}/elsewhere"):
        denied = auth_etcd.etcdctl("put", key, "{}", user=as_a, check=False)
        assert denied.returncode != 0 and "permission denied" in denied.stderr, (key, denied)
    denied = auth_etcd.etcdctl("del", "--prefix", f"{prefix}/nodes/b/", user=as_a,
                               check=False)  # fmt: skip
    assert denied.returncode != 0 and "permission denied" in denied.stderr, denied
    assert auth_etcd.etcdctl("put", f"{prefix}/nodes/a/containers/probe", "{}",
                             user=as_a).returncode == 0  # fmt: skip
    auth_etcd.etcdctl("del", f"{prefix}/nodes/a/containers/probe", user=as_a)
    read = auth_etcd.etcdctl("get", "--prefix", f"{prefix}/nodes/b/", user=as_a)
    assert auth_nodes.key("b", db) in read.stdout
    assert auth_nodes.record("b", db)["ipv4"] == new_ip  # b's record, untouched

    # hostsyncd's own client, with a's credentials, gets a permission error too.
    client = EtcdClient(ClusterConfig(node="a", prefix=prefix, **keys["a"]))
    try:
        with pytest.raises(PermissionDenied, match="permission denied"):
            client.put(auth_nodes.key("b", db), b"{}", 0)
    finally:
        client.close()

    # A daemon that uses a's credentials under another node's name says clearly why it
    # cannot publish, keeps following the other nodes, and runs on.
    d = auth_nodes.start("c", cluster={**keys["a"], "node": "c"}, label=LABEL)
    state = wait_until(degraded(auth_nodes, "c", "permission denied"), timeout=10,
                       show=lambda: auth_nodes.state("c"))  # fmt: skip
    print(f"misassigned credentials: reason {state['reason']!r}")
    assert (f"publisher: permission denied: etcd user '{user_a}' may not write "
            f"{prefix}/nodes/c/") in state["reason"]
    assert "README" in state["reason"]
    # Reading is allowed: the watcher connects, and only the publisher stays refused.
    state = wait_until(lambda: (st := auth_nodes.cluster_state("c")) and "watcher" not in
                       st["reason"] and st, timeout=10, what="only the publisher refused",
                       show=lambda: auth_nodes.state("c"))  # fmt: skip
    assert state["reason"].startswith("publisher: permission denied"), state
    warning = d.wait_log(lambda e: e.get("event", "").startswith(
        "etcd refuses this node's user"), timeout=5)  # fmt: skip
    assert "permission denied" in warning["reason"]
    status = auth_nodes.status("c").stdout
    assert "permission denied" in status and f"may not write {prefix}/nodes/c/" in status
    assert db in auth_nodes.cluster_state("c")["remote"].get("b", [])
    assert d.alive()
    assert "c" not in auth_nodes.records()
