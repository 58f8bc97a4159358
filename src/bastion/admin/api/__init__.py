"""The admin REST API under /api: one router per resource."""

from fastapi import APIRouter

from bastion.admin.api import audit, auth, clients, governance, origins, policies, servers, tokens, users

__all__ = ["router"]

router = APIRouter(prefix="/api")
for module in (audit, auth, clients, governance, origins, policies, servers, tokens, users):
    router.include_router(module.router)
