"""The small etcd v3 client hostsyncd needs: its JSON gateway (`POST /v3/...`), which
etcd 3.4 and newer serve on the client port, across the configured members.

Why hand-written, and not python-etcd3 or etcd3gw:
- python-etcd3 speaks gRPC, pulls in grpcio (tens of MB of native code in a root daemon),
  and is unmaintained; etcd3gw fails over in ways we do not choose.
- A daemon that runs as root and holds etcd credentials must decide itself what its HTTP
  client does: it ignores proxy variables and netrc, follows no redirect (a 307 would send
  the credentials on), bounds every reply it buffers (a range read is paged, a watch
  message is capped at MAX_WATCH_MESSAGE), and tries the next member on any failure.
- The calls used are few (range, put, delete, txn, lease grant/keepalive/revoke, watch,
  authenticate), and each is one JSON POST.

Nothing here knows hostsyncd's record format: that is core/records.py, and the
cluster edge (cluster.py) joins the two.

Imports: config; requests.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
from collections.abc import Iterator
from typing import Any

import requests

from hostsyncd.config import ClusterConfig

# A range read asks for a page of keys at a time, so that a prefix holding a flood of keys
# never arrives as one reply. The first page is small; the next ones are sized from the
# bytes per key seen so far to about RANGE_PAGE_BYTES, between 1 and RANGE_PAGE keys
# (records are a few hundred bytes: 10,000 of them take about 11 requests).
RANGE_FIRST_PAGE = 20
RANGE_PAGE = 1000
RANGE_PAGE_BYTES = 2 << 20
# A watch message larger than this is not buffered further: the watch is dropped and
# everything is read again, page by page. A message carries one revision's events; one
# this large comes only from a transaction written to flood the watchers.
MAX_WATCH_MESSAGE = 16 << 20


class EtcdError(Exception):
    """No member answered the request, or etcd refused it."""


class PermissionDenied(EtcdError):
    """etcd refused the user what it asked: every member would say the same."""


class WatchTooLarge(Exception):
    """A watch message grew beyond MAX_WATCH_MESSAGE."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text) if text else b""


def kv_key(kv: dict[str, Any]) -> str:
    return unb64(kv.get("key", "")).decode("utf-8", "replace")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that covers every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


class EtcdClient:
    """etcd's JSON gateway across the configured members. One per thread: a requests
    Session is not thread-safe."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.endpoints = list(config.endpoints)
        self._index = 0
        self._token: str | None = None
        self._session = requests.Session()
        # Nothing from the environment: no proxy variables (a proxy would see every record
        # and the credentials), no ~/.netrc credentials sent along, no CA bundle variables
        # (the configured `ca` alone decides).
        self._session.trust_env = False
        # Given with each request: requests lets REQUESTS_CA_BUNDLE override a session's
        # verify, and the configured CA must win.
        self._verify: str | bool = str(config.ca) if config.ca is not None else True
        if config.cert is not None and config.key is not None:
            self._session.cert = (str(config.cert), str(config.key))

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._index]

    def close(self) -> None:
        self._session.close()

    # -- requests -------------------------------------------------------------------------

    def call(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        response = self._post(path, body, timeout or self.config.timeout, stream=False)
        try:
            return response.json()
        except ValueError as exc:
            raise EtcdError(f"{self.endpoint}: reply is not JSON") from exc

    def _post(self, path: str, body: dict[str, Any], timeout: float | tuple[float, float],
              stream: bool) -> requests.Response:
        """POST to the current member, then to each other one; the first that answers
        becomes current."""
        errors = []
        for _ in range(len(self.endpoints)):
            try:
                return self._post_one(path, body, timeout, stream)
            except PermissionDenied:
                raise
            except EtcdError as exc:
                errors.append(f"{self.endpoint}: {exc}")
                self._index = (self._index + 1) % len(self.endpoints)
        raise EtcdError("; ".join(errors))

    def _post_one(self, path: str, body: dict[str, Any], timeout: float | tuple[float, float],
                  stream: bool) -> requests.Response:
        for attempt in range(2):
            if self.config.username and self._token is None:
                self._authenticate()
            headers = {"Authorization": self._token} if self._token else {}
            try:
                # No redirects: a 307 would send the token (or the password) on to
                # wherever it points.
                response = self._session.post(self.endpoint + path, json=body, headers=headers,
                                              timeout=timeout, stream=stream,
                                              verify=self._verify, allow_redirects=False)
            except requests.RequestException as exc:
                raise EtcdError(_request_error(exc)) from exc
            if response.status_code == 200:
                return response
            reason = _error_text(response)
            response.close()
            if response.status_code == 401 and self.config.username and attempt == 0:
                self._token = None  # expired token: log in again, once
                continue
            if "permission denied" in reason.lower():
                raise PermissionDenied(reason)
            raise EtcdError(f"HTTP {response.status_code}: {reason}")
        raise EtcdError("authentication failed")

    def _authenticate(self) -> None:
        password = self.config.password.get_secret_value()
        if self.config.password_file is not None:
            try:
                password = self.config.password_file.read_text().splitlines()[0]
            except (OSError, IndexError, UnicodeDecodeError) as exc:
                raise EtcdError(f"cannot read password_file: {exc}") from None
        try:
            response = self._session.post(
                self.endpoint + "/v3/auth/authenticate",
                json={"name": self.config.username, "password": password},
                timeout=self.config.timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise EtcdError(_request_error(exc)) from exc
        if response.status_code != 200:
            raise EtcdError(f"authentication refused: {_error_text(response)}")
        self._token = response.json().get("token") or None

    # -- the calls hostsyncd makes --------------------------------------------------------

    def range(self, prefix: bytes) -> tuple[int, list[dict[str, Any]]]:
        """Every key under prefix: (revision, kvs)."""
        revision, kvs = 0, []
        for at, page in self.range_pages(prefix):
            revision = at
            kvs += page
        return revision, kvs

    def range_pages(self, prefix: bytes) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Every key under prefix, a page per request, all at the first page's revision:
        (revision, kvs) per page."""
        end = b64(prefix_end(prefix))
        key, revision = prefix, 0
        page, seen_keys, seen_bytes = RANGE_FIRST_PAGE, 0, 0
        while True:
            body: dict[str, Any] = {"key": b64(key), "range_end": end, "limit": str(page)}
            if revision:
                body["revision"] = str(revision)
            reply = self.call("/v3/kv/range", body)
            if not revision:
                revision = int(reply.get("header", {}).get("revision", 0))
            kvs = reply.get("kvs", [])
            yield revision, kvs
            if not reply.get("more") or not kvs:
                return
            key = unb64(kvs[-1].get("key", "")) + b"\0"  # the next key after the last
            seen_keys += len(kvs)
            seen_bytes += sum(len(kv.get("key", "")) + len(kv.get("value", "")) for kv in kvs)
            page = max(1, min(RANGE_PAGE, RANGE_PAGE_BYTES * seen_keys // max(1, seen_bytes)))

    def put(self, key: str, value: bytes, lease: int) -> None:
        self.call("/v3/kv/put", {"key": b64(key.encode()), "value": b64(value),
                                 "lease": str(lease)})

    def delete(self, key: str) -> None:
        self.call("/v3/kv/deleterange", {"key": b64(key.encode())})

    def grant(self, ttl: int) -> int:
        reply = self.call("/v3/lease/grant", {"TTL": str(ttl)})
        if reply.get("error"):
            raise EtcdError(f"lease grant refused: {reply['error']}")
        return int(reply["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's remaining TTL; 0 once it has expired."""
        reply = self.call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    def claim(self, key: str, value: bytes, lease: int) -> tuple[bool, dict[str, Any]]:
        """Put key on the lease only if it does not exist (one transaction): (True, {})
        when this lease holds it now, else (False, the holder's key-value)."""
        raw = b64(key.encode())
        reply = self.call("/v3/kv/txn", {
            "compare": [{"key": raw, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": raw, "value": b64(value),
                                         "lease": str(lease)}}],
            "failure": [{"request_range": {"key": raw}}],
        })  # fmt: skip
        if reply.get("succeeded"):
            return True, {}
        responses = reply.get("responses") or [{}]
        kvs = (responses[0].get("response_range") or {}).get("kvs") or [{}]
        holder = kvs[0]
        # Ours already (a claim whose answer was lost, then retried): still ours.
        return int(holder.get("lease", 0)) == lease, holder

    def revoke(self, lease: int, timeout: float) -> None:
        self.call("/v3/lease/revoke", {"ID": str(lease)}, timeout=timeout)

    def watch(self, prefix: bytes, start_revision: int) -> Iterator[dict[str, Any]]:
        """The watch's messages, one `result` object each, until the stream breaks."""
        body = {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        # The gateway passes no progress notifications, so a silent watch may sit on a hung
        # member. After `timeout` seconds of silence it ends and is reopened from the last
        # revision seen: cheap, and a hung member fails the reopen within the same timeout,
        # which moves the watch to the next member.
        response = self._post("/v3/watch", body, self.config.timeout, stream=True)
        decoder = json.JSONDecoder()
        text = codecs.getincrementaldecoder("utf-8")()
        buffer = ""
        try:
            for chunk in response.iter_content(chunk_size=None):
                buffer += text.decode(chunk)
                if len(buffer) > MAX_WATCH_MESSAGE:
                    raise WatchTooLarge(f"a watch message larger than "
                                        f"{MAX_WATCH_MESSAGE >> 20} MiB")
                while True:
                    buffer = buffer.lstrip()
                    if not buffer:
                        break
                    try:
                        message, end = decoder.raw_decode(buffer)
                    except ValueError:
                        break  # the rest of this message is still on its way
                    buffer = buffer[end:]
                    if "error" in message:
                        raise EtcdError(f"watch failed: {message['error']}")
                    yield message.get("result", {})
        except requests.RequestException:
            return  # a broken or silent stream: the caller reopens it
        finally:
            response.close()


def _request_error(exc: requests.RequestException) -> str:
    """The exception's kind and its innermost reason ("[Errno 111] Connection refused",
    "[SSL: CERTIFICATE_VERIFY_FAILED] ..."), without urllib3's pool and URL noise."""
    text = str(exc)
    found = _REASON.search(text)
    return f"{type(exc).__name__}: {(found.group(0) if found else text).strip()[:160]}"


_REASON = re.compile(r"\[(?:Errno \d+|SSL[^\]]*)\][^'\")(]*")


def _error_text(response: requests.Response) -> str:
    if response.is_redirect:
        return "a redirect, which is not followed (it could take the credentials elsewhere)"
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:200]
    return str(body)[:200]
