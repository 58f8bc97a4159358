"""Pipeline policies: which stage does what at which scope (global, server, origin, tool)."""

from typing import Any

from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from bastion.admin.deps import PoliciesManage, PoliciesRead, PolicyDep
from bastion.admin.policies import PolicyIn, PolicyOut

router = APIRouter(prefix="/policies", tags=["policies"])

_SCOPE = Query("global", max_length=600, description="global, server:<slug>, origin:<name> or tool:<origin>/<name>")


@router.get("", response_model=list[PolicyOut])
async def list_policies(policies: PolicyDep, actor: PoliciesRead) -> list[PolicyOut]:
    return await policies.list(actor)


@router.get("/stages")
async def list_stages(policies: PolicyDep, actor: PoliciesRead) -> dict[str, Any]:
    """Each stage's settings (JSON Schema, with defaults): what a policy may set."""
    return policies.stages()


@router.put("/{stage}", response_model=PolicyOut)
async def put_policy(
    stage: str, data: PolicyIn, policies: PolicyDep, actor: PoliciesManage, scope: str = _SCOPE
) -> PolicyOut:
    """Set a stage's fields at a scope; the most specific scope wins, field by field."""
    try:
        return await policies.put(actor, scope, stage, data)
    except ValidationError as exc:  # the stage's own model: a 422 naming the field, as for any body
        errors = [{**e, "loc": ("body", "settings", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


@router.delete("/{stage}", status_code=204)
async def delete_policy(stage: str, policies: PolicyDep, actor: PoliciesManage, scope: str = _SCOPE) -> Response:
    await policies.delete(actor, scope, stage)
    return Response(status_code=204)
