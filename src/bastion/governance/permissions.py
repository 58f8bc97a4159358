"""Permissions and roles.

A permission is an action, optionally narrowed to a target:

    origins:manage                         anywhere in the caller's tenant
    tools:call@server:demo                 every tool of virtual server `demo`
    tools:call@origin:inventory            every tool that comes from origin `inventory`
    tools:call@tool:inventory/refund_order one tool of one origin (the origin's name for it)

Control-plane actions take no target. Data-plane actions (`tools:call`,
`resources:read`, `prompts:get`) take `server:<slug>`, `origin:<name>` or
`<kind>:<origin>/<name>` (kind `tool`, `resource` or `prompt`). A role is a
named set of permissions: the built-in roles below, or custom roles stored per
tenant. Nothing is allowed unless a permission says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bastion.errors import BadRequest

__all__ = [
    "BUILTIN_ROLES",
    "CONTROL_ACTIONS",
    "DATA_ACTIONS",
    "PLATFORM_ACTIONS",
    "PLATFORM_ADMIN",
    "Grants",
    "parse_permission",
    "parse_permissions",
    "permission_text",
]

# Control plane: what the admin API and the CLI may change or read.
CONTROL_ACTIONS: Mapping[str, str] = {
    "origins:read": "see origins, their discovered items and connector requests",
    "origins:manage": "register, refresh and delete origins (each registration is a connector request)",
    "connectors:approve": "approve or reject connector requests",
    "servers:read": "see virtual servers",
    "servers:manage": "create, compose and delete virtual servers",
    "servers:publish": "publish and unpublish virtual servers",
    "users:read": "see users, teams and roles",
    "users:manage": "create and unlock users, assign roles, manage teams",
    "roles:manage": "create and delete custom roles",
    "tokens:create": "create API tokens for oneself",
    "tokens:manage": "see and revoke every API token of the tenant, create them for others",
    "clients:manage": "create, see and delete OAuth service clients",
    "audit:read": "read the audit trail: login events and API token use",
    "policies:read": "see the policy pipeline's settings per scope",
    "policies:manage": "set the policy pipeline's settings: rate limits, approval, DLP, response checks",
    "tenants:manage": "create and list tenants (platform administrators only)",
    "metrics:read": "read the Prometheus metrics at /metrics: counts over every tenant (platform administrators only)",
}
# Data plane: per item, on a virtual server, an origin or one item.
DATA_ACTIONS: Mapping[str, str] = {
    "tools:call": "call tools",
    "resources:read": "read resources",
    "prompts:get": "get prompts",
}
_ITEM_KINDS = {"tool": "tools:call", "resource": "resources:read", "prompt": "prompts:get"}

PLATFORM_ADMIN = "platform-admin"
_DATA_ALL = tuple(DATA_ACTIONS)
# What spans every tenant: only platform-admin holds it, and no custom role may grant it.
PLATFORM_ACTIONS = frozenset({"tenants:manage", "metrics:read"})
_CONTROL_TENANT = tuple(a for a in CONTROL_ACTIONS if a not in PLATFORM_ACTIONS)

BUILTIN_ROLES: Mapping[str, tuple[str, ...]] = {
    PLATFORM_ADMIN: (*CONTROL_ACTIONS, *_DATA_ALL),
    "tenant-admin": (*_CONTROL_TENANT, *_DATA_ALL),
    "connector-admin": ("origins:read", "origins:manage", "connectors:approve", "servers:read", "tokens:create"),
    "publisher": ("origins:read", "servers:read", "servers:manage", "servers:publish", "tokens:create"),
    "member": ("tokens:create", *_DATA_ALL),
    "auditor": ("audit:read", "origins:read", "servers:read", "users:read", "policies:read"),
}


def parse_permission(text: str) -> tuple[str, str]:
    """(action, target) from `action` or `action@target`; BadRequest names what is wrong."""
    action, _, target = text.strip().partition("@")
    if action in CONTROL_ACTIONS:
        if target:
            raise BadRequest(f"permission {text!r}: control-plane actions take no target")
        return action, "*"
    if action not in DATA_ACTIONS:
        known = ", ".join([*CONTROL_ACTIONS, *DATA_ACTIONS])
        raise BadRequest(f"permission {text!r}: unknown action {action!r} (known: {known})")
    if not target:
        return action, "*"
    kind, _, name = target.partition(":")
    if not name:
        raise BadRequest(
            f"permission {text!r}: a target is 'server:<slug>', 'origin:<name>' or '<kind>:<origin>/<name>'"
        )
    if kind in ("server", "origin"):
        return action, target
    if _ITEM_KINDS.get(kind) != action or "/" not in name:
        raise BadRequest(
            f"permission {text!r}: an item target is '{_target_kind(action)}:<origin>/<name>' for {action!r}"
        )
    return action, target


def permission_text(pair: tuple[str, str]) -> str:
    """The text `parse_permission` reads back as `pair`."""
    action, target = pair
    return action if target == "*" else f"{action}@{target}"


def parse_permissions(texts: Iterable[str]) -> frozenset[tuple[str, str]]:
    return frozenset(parse_permission(t) for t in texts)


def _target_kind(action: str) -> str:
    return next(kind for kind, a in _ITEM_KINDS.items() if a == action)


@dataclass(frozen=True, slots=True)
class Grants:
    """A set of (action, target) pairs and the questions asked of it. Deny unless one matches."""

    pairs: frozenset[tuple[str, str]]

    @classmethod
    def of_roles(cls, roles: Iterable[str], custom: Mapping[str, frozenset[tuple[str, str]]]) -> Grants:
        """The union of the roles' permissions; an unknown role name grants nothing."""
        pairs: set[tuple[str, str]] = set()
        for role in roles:
            if role in BUILTIN_ROLES:
                pairs.update((action, "*") for action in BUILTIN_ROLES[role])
            else:
                pairs.update(custom.get(role, ()))
        return cls(frozenset(pairs))

    def covers(self, pair: tuple[str, str]) -> bool:
        """Whether these grants include `pair` itself or something wider: `*` covers every target,
        `origin:<o>` covers that origin's items."""
        action, target = pair
        if (action, "*") in self.pairs or pair in self.pairs:
            return True
        kind, _, name = target.partition(":")
        origin = name.split("/", 1)[0]
        return kind in _ITEM_KINDS and (action, f"origin:{origin}") in self.pairs

    def may(self, action: str) -> bool:
        """A control-plane action (no target)."""
        return (action, "*") in self.pairs

    def may_use(self, kind: str, server_slug: str, origin_name: str, item_name: str) -> bool:
        """A data-plane use of one item: `kind` is tool, resource or prompt."""
        action = _ITEM_KINDS[kind]
        pairs = self.pairs
        return (
            (action, "*") in pairs
            or (action, "server:" + server_slug) in pairs
            or (action, "origin:" + origin_name) in pairs
            or (action, f"{kind}:{origin_name}/{item_name}") in pairs
        )
