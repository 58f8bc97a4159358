"""What an API token created through another API token may be: never more than that token.

A token limited to some permissions, source networks, a start time or a quota, that may create
tokens (`tokens:create`), would otherwise mint one without its limits: a limit that lasts only as
long as its holder does not try. So the new token takes the creating token's permission limit
(or a part of it), its scopes and servers (or some of them), its networks (or networks inside
them), its start time, and expires no later.
A token with a quota creates none: the new token's uses would not count against the quota.
"""

from __future__ import annotations

from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from bastion.admin.schemas import TokenIn
from bastion.errors import Forbidden
from bastion.governance.permissions import parse_permission, permission_text
from bastion.identity.principal import Principal, scope_satisfied
from bastion.identity.token_rules import Network

__all__ = ["bounded", "unbounded_only", "within_servers"]


def bounded(parent: Principal | None, data: TokenIn, expires_at: datetime) -> tuple[TokenIn, datetime]:
    """`data` and `expires_at` within what `parent` (the token the request came with) may do;
    Forbidden for what cannot be narrowed (a wider permission or network asked for explicitly)."""
    if parent is None or not _limited(parent):
        return data, expires_at
    rules = parent.rules
    changes: dict[str, Any] = {}
    wider_scopes = [scope for scope in data.scopes if not scope_satisfied(scope, parent.scopes)]
    if wider_scopes:
        raise Forbidden(
            f"this token does not carry the scope {', '.join(wider_scopes)}: a token it creates cannot either"
        )
    if parent.limit is not None:
        if data.permissions is None:
            changes["permissions"] = sorted(permission_text(pair) for pair in parent.limit.pairs)
        else:
            wider = [text for text in data.permissions if not parent.limit.covers(parse_permission(text))]
            if wider:
                raise Forbidden(
                    f"this token is limited to fewer permissions than {', '.join(wider[:5])}: "
                    "a token it creates cannot have more"
                )
    if rules is not None:
        if rules.max_uses is not None:
            raise Forbidden("a token with a use quota cannot create tokens: their uses would not count against it")
        if rules.networks:
            if not data.allowed_cidrs:
                changes["allowed_cidrs"] = [str(network) for network in rules.networks]
            else:
                outside = [
                    cidr
                    for cidr in data.allowed_cidrs
                    if not any(_inside(ip_network(cidr), network) for network in rules.networks)
                ]
                if outside:
                    raise Forbidden(
                        f"this token may be used only from {', '.join(str(n) for n in rules.networks[:5])}: "
                        f"a token it creates cannot be used from {', '.join(outside[:5])}"
                    )
        if rules.not_before is not None:
            start = datetime.fromtimestamp(rules.not_before, UTC)
            if data.not_before is None or data.not_before < start:
                changes["not_before"] = start
    return data.model_copy(update=changes), min(expires_at, datetime.fromtimestamp(parent.expires_at, UTC))


def within_servers(parent: Principal | None, server_ids: list[str]) -> None:
    """Forbidden when a limited token names servers it may not reach itself."""
    if parent is None or not _limited(parent):
        return
    if beyond := [server for server in server_ids if server not in parent.server_ids]:
        raise Forbidden(
            f"this token may not reach {len(beyond)} of the servers named: a token it creates cannot reach them"
        )


def unbounded_only(parent: Principal | None, what: str) -> None:
    """Forbidden when `parent` is a limited token: for what cannot carry its limits (a service
    client's tokens act with their owner's roles, from anywhere, without a quota)."""
    if parent is not None and _limited(parent):
        raise Forbidden(f"a token with limits cannot create {what}: it would act without them")


def _limited(token: Principal) -> bool:
    rules = token.rules
    return token.limit is not None or (
        rules is not None and (bool(rules.networks) or rules.not_before is not None or rules.max_uses is not None)
    )


def _inside(network: Network, within: Network) -> bool:
    if isinstance(network, IPv4Network):
        return isinstance(within, IPv4Network) and network.subnet_of(within)
    return isinstance(within, IPv6Network) and network.subnet_of(within)
