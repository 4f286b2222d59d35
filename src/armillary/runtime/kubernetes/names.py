"""Kubernetes' rules for names, checked before anything is rendered.

Armillary's own names are DNS-1123 labels already; what Kubernetes asks beyond that
is checked here and refused with the field path: a Service name must start with a
letter (DNS-1035), a container port name is an IANA service name (at most 15
characters, a letter in it, no '--'), a CronJob name leaves room for the 11 characters
its Jobs add (at most 52), a host is a DNS-1123 subdomain of labels of at most 63.
"""

from __future__ import annotations

import re

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

LABEL_MAX = 63
SUBDOMAIN_MAX = 253
PORT_NAME_MAX = 15
CRONJOB_NAME_MAX = 52


def service_name(value: str) -> str | None:
    """Why `value` cannot name a Service (DNS-1035 label), or None."""
    if len(value) > LABEL_MAX or not _DNS_1035.fullmatch(value):
        return (
            f"{value!r} cannot name a Kubernetes Service: expected a DNS-1035 label (a-z, 0-9 "
            f"and '-', starting with a letter, at most {LABEL_MAX} characters)"
        )
    return None


def port_name(value: str) -> str | None:
    """Why `value` cannot name a container port (IANA service name), or None."""
    if (
        len(value) > PORT_NAME_MAX
        or not _PORT_NAME.fullmatch(value)
        or "--" in value
        or not re.search("[a-z]", value)
    ):
        return (
            f"{value!r} cannot name a Kubernetes container port: expected at most "
            f"{PORT_NAME_MAX} characters of a-z, 0-9 and '-', with a letter and no '--'"
        )
    return None


def cronjob_name(value: str) -> str | None:
    if len(value) > CRONJOB_NAME_MAX:
        return (
            f"{value!r} cannot name a Kubernetes CronJob: at most {CRONJOB_NAME_MAX} characters "
            f"(its Jobs add 11), got {len(value)}"
        )
    return None


def host(value: str) -> str | None:
    """Why `value` cannot be a host name (DNS-1123 subdomain), or None."""
    labels = value.split(".")
    if len(value) > SUBDOMAIN_MAX or not all(
        len(part) <= LABEL_MAX and _DNS_LABEL.fullmatch(part) for part in labels
    ):
        return (
            f"the host {value!r} is not a valid DNS name: expected labels of at most "
            f"{LABEL_MAX} characters (a-z, 0-9, '-') joined by '.', at most {SUBDOMAIN_MAX} in all"
        )
    return None
