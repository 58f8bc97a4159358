"""Outbound network policy: which addresses Bastion may connect to (SSRF defence)."""

from bastion.net.egress import (
    EgressPolicy,
    EgressRefused,
    EgressResolver,
    FetchedDocument,
    egress_session,
    fetch_limited,
)

__all__ = ["EgressPolicy", "EgressRefused", "EgressResolver", "FetchedDocument", "egress_session", "fetch_limited"]
