"""Who may read the metrics: callers from the allowed networks, or presenting the metrics bearer token.

Metrics carry no content, ids or personal data (``broker.ops.metrics``), but queue depths, peers' and
agencies' reachability and the rate of requests are operational intelligence about a police exchange: they
are read from where the operator says (``SPOC_METRICS_ALLOW``, loopback by default) or with
``SPOC_METRICS_TOKEN`` (compared in constant time). The address is the one the server saw: behind a reverse
proxy, uvicorn takes the client's from ``X-Forwarded-For`` only when the proxy is in its
``--forwarded-allow-ips`` (127.0.0.1 by default), so a proxy on the same host does not make every caller local.
"""

from __future__ import annotations

import hmac
import ipaddress

from broker.config import Settings


def admitted(settings: Settings, *, client: str | None, authorization: str | None) -> bool:
    """Whether a caller at address ``client`` with this ``Authorization`` header may read the metrics."""
    token = settings.metrics_token
    if token is not None and authorization is not None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()
        ):
            return True
    if client is None:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:  # not an address (a test client's name, a Unix socket)
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 caller of a dual-stack socket (``::ffff:a.b.c.d``)
    return any(address in network for network in settings.metrics_allow)
