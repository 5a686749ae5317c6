"""The rehearsal's network: one bridge, one namespace per host, veth pairs.

Addresses live on the bridge only: no default route, no NAT, nothing
forwarded out, so every process of the rehearsal reaches the other hosts
and the root namespace (the bridge's own address) and nothing else. Every
call is `ip`, as root.
"""

from __future__ import annotations

import subprocess

#: Prefix of the host-side veth of each namespace ("vf-<host>", 15 bytes at most).
VETH_PREFIX = "vf-"


class NetError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str, check: bool = True) -> str:
    """Run `ip ARGS`; return its output, raise NetError on failure if check."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def links() -> set[str]:
    """Return the names of the root namespace's network interfaces."""
    return {line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link").splitlines()}


def namespaces(prefix: str) -> list[str]:
    """Return the network namespaces whose name starts with prefix."""
    names = (line.split()[0] for line in ip("netns", "list").splitlines() if line.strip())
    return [name for name in names if name.startswith(prefix)]


def create_bridge(bridge: str, address: str, prefix_len: int) -> None:
    """Make the bridge with the root namespace's address on it, and bring it up."""
    ip("link", "add", bridge, "type", "bridge")
    # Bridged frames skip iptables (br_netfilter may be loaded for other
    # work on this machine, with a FORWARD policy that drops them).
    ip("link", "set", bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
    ip("addr", "add", f"{address}/{prefix_len}", "dev", bridge)
    ip("link", "set", bridge, "up")


def add_namespace(bridge: str, namespace: str, veth: str, address: str, prefix_len: int) -> None:
    """Make a namespace with lo up and eth0 = address, wired to the bridge."""
    ip("netns", "add", namespace)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
    ip("link", "set", veth, "master", bridge, "up")
    ip("-n", namespace, "addr", "add", f"{address}/{prefix_len}", "dev", "eth0")
    ip("-n", namespace, "link", "set", "lo", "up")
    ip("-n", namespace, "link", "set", "eth0", "up")


def veth(host_name: str) -> str:
    """Return the host-side veth of a host's namespace."""
    return VETH_PREFIX + host_name


def set_link(name: str, up: bool) -> None:
    """Bring a root-namespace link up or down (down on the host side cuts a host off).

    The route inside the namespace stays (`linkdown`), so both directions
    time out as on a real network cut, rather than failing at once.
    """
    ip("link", "set", name, "up" if up else "down")


def link_is_up(name: str) -> bool:
    """Tell whether a root-namespace link is administratively up."""
    return "UP" in ip("-o", "link", "show", name).split(">")[0]


def pids(namespace: str) -> list[int]:
    """Return the pids of the processes in the namespace (none if it is gone)."""
    return [int(p) for p in ip("netns", "pids", namespace, check=False).split()]


def delete(bridge: str, namespace_prefix: str) -> None:
    """Delete the host-side veths, the namespaces and the bridge; fine if absent.

    The veths go first: deleting a namespace removes its veth pair only
    asynchronously, so an immediate new `add_namespace` would find the
    name still taken.
    """
    present = links()
    for name in sorted(present):
        if name.startswith(VETH_PREFIX):
            ip("link", "del", name, check=False)
    for namespace in namespaces(namespace_prefix):
        ip("netns", "del", namespace)
    if bridge in present:
        ip("link", "del", bridge)


def exec_argv(namespace: str, argv: list[str]) -> list[str]:
    """Return argv run inside the namespace (`ip netns exec` execs it: same pid)."""
    return ["ip", "netns", "exec", namespace, *argv]
