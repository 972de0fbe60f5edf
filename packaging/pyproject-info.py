#!/usr/bin/python3
"""Read pyproject.toml for the packaging scripts (stdlib only, runs on Debian's python3).

  pyproject-info.py version        [project] version
  pyproject-info.py requirements   runtime requirements of the .deb: [project] dependencies
                                   and the "journald" extra, one per line
  pyproject-info.py inputs-sha256  sha256 of those requirements: the lock file records it,
                                   so a build notices a lock that no longer matches
"""

import hashlib
import sys
import tomllib
from pathlib import Path

EXTRAS = ("journald",)


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]
    reqs = list(project.get("dependencies", []))
    for extra in EXTRAS:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    what = sys.argv[1] if len(sys.argv) == 2 else ""
    if what == "version":
        print(project["version"])
    elif what == "requirements":
        print("\n".join(reqs))
    elif what == "inputs-sha256":
        print(hashlib.sha256("\n".join(sorted(reqs)).encode()).hexdigest())
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
