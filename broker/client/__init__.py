"""The agency client: build, sign, encrypt, post, poll, open, verify, acknowledge.

An agency system holds its own keys (``AgencyCredentials``); everything it needs from the broker
(other parties' public keys) it fetches from the public directory and verifies by thumbprint.
"""

from broker.client.agency import AgencyClient, ClientError, OpenedMessage
from broker.client.credentials import AgencyCredentials

__all__ = ["AgencyClient", "AgencyCredentials", "ClientError", "OpenedMessage"]
