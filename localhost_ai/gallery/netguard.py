"""Where the gallery may fetch from: public addresses only, checked on the addresses a
name resolves to (the ones then connected to) and on every redirect, unless the operator
allows private ones (`--allow-private-urls`, for a mirror on the LAN).  Otherwise a model
install could read services on the server's own machine or network and report on them."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL


class PrivateAddressError(aiohttp.ClientError):
    """A fetch to a loopback, link-local, private or otherwise non-public address."""

    def __init__(self, host: str) -> None:
        super().__init__(f"{host} is not a public address")
        self.host = host


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address in any spelling a connection accepts: `127.1`, `2130706433` and
    `0177.0.0.1` are 127.0.0.1 to inet_aton (and to some aiohttp versions), not names."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except (OSError, ValueError):
        return None


def is_public(address: str) -> bool:
    ip = _address(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and (ip in _NAT64 or ip in _IPV4_COMPATIBLE):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


class PublicResolver(AbstractResolver):
    """The system resolver, refusing a name when any of its addresses is not public (a
    name with one public and one private address could be made to connect to either)."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        found = await self._inner.resolve(host, port, family)
        if not found or not all(is_public(entry["host"]) for entry in found):
            raise PrivateAddressError(host)
        return found

    async def close(self) -> None:
        await self._inner.close()


def _check_literal(host: str) -> None:
    """aiohttp connects to an address written in the URL without asking the resolver."""
    if _address(host) is None:
        return  # a name: the resolver checks it
    if not is_public(host):
        raise PrivateAddressError(host)


async def _on_start(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    _check_literal(params.url.host or "")


async def _on_redirect(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    """The next request of a redirect is not announced as a start: its target is read here."""
    location = params.response.headers.get("Location")
    if location:
        _check_literal(params.url.join(URL(location)).host or "")


def guarded_session(allow_private: bool, **kwargs: Any) -> aiohttp.ClientSession:
    """An aiohttp session that reaches public addresses only (all, with `allow_private`)."""
    if allow_private:
        return aiohttp.ClientSession(**kwargs)
    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(_on_start)
    trace.on_request_redirect.append(_on_redirect)
    connector = aiohttp.TCPConnector(resolver=PublicResolver())
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace], **kwargs)
