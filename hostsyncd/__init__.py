"""hostsyncd: keep containers' /etc/hosts in sync with links declared in labels."""

__version__ = "0.1.0"
