"""Parse a dependent's link label: `[node/]target[:alias][@network]` specs.

The label is written by whoever starts the container, so every byte is untrusted: a spec
is accepted only when every part is a plain name that cannot smuggle anything into a
hosts file line (no whitespace, `#`, control characters or non-ASCII). The one `/` a spec
may hold separates a cluster node's name from the target.

Imports: core.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from hostsyncd.core.model import DOMAIN_LABEL, HEALTH_LABEL, LinkSpec

# Longer label values are cut: nobody links a container to thousands of others, and the
# bound keeps one hostile label from costing the daemon memory or time.
MAX_LABEL_CHARS = 16384
MAX_SPECS = 256

_SEPARATORS = re.compile(r"[ \t\r\n,]+")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Docker's own rule for container and network names.
_DOCKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class SpecError:
    spec: str
    reason: str

    def __str__(self) -> str:
        shown = self.spec if len(self.spec) <= 80 else self.spec[:77] + "..."
        return f"invalid link spec {shown!r}: {self.reason}"


@lru_cache(maxsize=1 << 16)
def is_host_name(name: str) -> bool:
    """True for dot-separated labels of [A-Za-z0-9_-], none starting or ending with '-'."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def is_docker_name(name: str) -> bool:
    return (
        0 < len(name) <= 253
        and name.isascii()
        and ".." not in name
        and _DOCKER_NAME.fullmatch(name) is not None
    )


def parse_spec(text: str) -> LinkSpec | SpecError:
    def bad(reason: str) -> SpecError:
        return SpecError(text, reason)

    if not text.isascii():
        return bad("non-ASCII character")
    if not text.isprintable():
        return bad("control character")
    if "#" in text:
        return bad("'#' is not allowed")
    node, slash, text_rest = text.rpartition("/")
    if slash and (not node or not text_rest or "/" in node):
        return bad("'/' must separate one node name from the target")
    if slash and not is_docker_name(node):
        return bad("node is not a valid node name")
    rest, at, network = text_rest.partition("@")
    if at and (not network or "@" in network):
        return bad("'@' must be followed by one network name")
    if at and not is_docker_name(network):
        return bad("network is not a valid network name")
    target, colon, alias = rest.partition(":")
    if not target:
        return bad("empty target")
    if colon and (not alias or ":" in alias):
        return bad("':' must be followed by one alias")
    if not is_docker_name(target):
        return bad("target is not a valid container name")
    alias = alias or target
    if not is_host_name(alias):
        return bad("alias is not a valid host name")
    return LinkSpec(target=target, alias=alias, network=network or None, node=node or None)


def parse_links(value: str) -> tuple[tuple[LinkSpec, ...], tuple[SpecError, ...]]:
    """Split a label value into valid specs (first occurrence kept) and errors."""
    errors: list[SpecError] = []
    if len(value) > MAX_LABEL_CHARS:
        errors.append(SpecError(value[:40] + "...", f"label longer than {MAX_LABEL_CHARS} chars"))
        cut = value[:MAX_LABEL_CHARS]
        if not _SEPARATORS.match(value, MAX_LABEL_CHARS):
            # The cut fell inside a spec: drop that piece rather than link to a prefix of it.
            cut = _SEPARATORS.split(cut)
            cut = " ".join(cut[:-1])
        value = cut
    specs: dict[LinkSpec, None] = {}
    for token in _SEPARATORS.split(value):
        if not token:
            continue
        if len(specs) + len(errors) >= MAX_SPECS:
            errors.append(SpecError(token, f"more than {MAX_SPECS} specs in one label"))
            break
        parsed = parse_spec(token)
        if isinstance(parsed, SpecError):
            errors.append(parsed)
        else:
            specs.setdefault(parsed)
    return tuple(specs), tuple(errors)


HEALTH_MODES = ("ignore", "wait")
# How much of a bad health label a message quotes: the value is untrusted and unbounded.
_MAX_QUOTED = 40


def link_domain(value: str | None, default: str) -> tuple[str, str | None]:
    """The search domain a dependent's lines also carry: its DOMAIN_LABEL value ("" for
    none), else `default` (`links.domain`). A value that is not a host name falls back to
    the default, with a message that quotes it cut and escaped."""
    if value is None:
        return default, None
    # Only a short value can be valid: a long one is not copied (this runs every pass).
    domain = value.strip() if len(value) <= 253 else "-"
    if not domain or is_host_name(domain):
        return domain, None
    return default, (f"label {DOMAIN_LABEL}={_quoted(value)} is not a host name; using "
                     f"links.domain ({default or 'none'})")


def _quoted(value: str) -> str:
    shown = value[:_MAX_QUOTED].encode("ascii", "backslashreplace").decode("ascii")
    return repr(shown + ("..." if len(value) > _MAX_QUOTED else ""))


def health_wait(value: str | None, default: str) -> tuple[bool, str | None]:
    """Whether a dependent's links wait for their targets' health: its HEALTH_LABEL value,
    else `default` (`links.health`). An invalid value falls back to the default, with a
    message that quotes it cut and escaped (it is the container creator's text)."""
    if value is None:
        return default == "wait", None
    # Only a short value can be valid: a long one is not copied (this runs every pass).
    mode = value.strip().lower() if len(value) <= _MAX_QUOTED else ""
    if mode in HEALTH_MODES:
        return mode == "wait", None
    shown = _quoted(value)
    return default == "wait", (f"label {HEALTH_LABEL}={shown} is not 'wait' or 'ignore'; "
                               f"using links.health ({default})")
