"""The rehearsal's network: hosts reach each other and the root namespace, nothing else."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from health import http_status

from tests.cluster.conftest import Rehearsal


def bound_address(local: str) -> str:
    """Return the IPv4 address of ss's local address (Java binds IPv4-mapped IPv6)."""
    address = ipaddress.ip_address(local.rsplit(":", 1)[0].strip("[]"))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def test_no_namespace_has_a_way_out(rehearsal: Rehearsal) -> None:
    subnet = str(rehearsal.inventory.network)
    for host in rehearsal.inventory.hosts:
        routes = rehearsal.netns_run(host, "ip", "-4", "route", "show").splitlines()
        assert [route.split()[0] for route in routes] == [subnet], (host.name, routes)
        assert rehearsal.netns_run(host, "ip", "-4", "route", "show", "default") == ""


def test_the_root_namespace_reaches_the_entry_url(rehearsal: Rehearsal) -> None:
    url = urlsplit(rehearsal.entry_url)
    assert url.hostname == rehearsal.inventory.with_role("nginx")[0].address
    for path in ("/myapp/fibo", "/myapp/fibotask"):
        status = http_status(url.hostname, url.port or 80, path)
        assert 400 <= status < 500, (path, status)


def test_every_listener_binds_to_its_host_address(rehearsal: Rehearsal) -> None:
    for host in rehearsal.inventory.hosts:
        listeners = rehearsal.netns_run(host, "ss", "-H", "-l", "-t", "-n").splitlines()
        local = {bound_address(line.split()[3]) for line in listeners}
        # every role listens (workers for their metrics), on its host's address only
        assert local == {host.address}, (host.name, listeners)
