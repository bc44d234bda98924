"""GET /v1/models (versions, metrics, lineage, aliases) and moving an alias (promotion)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from service.api.deps import AdminRole, ReadRole, Services, ServicesDep
from service.api.errors import ApiError
from service.api.schemas import (
    AliasMoveIn,
    AliasOut,
    ErrorOut,
    LiveModelOut,
    ModelOut,
    ModelsOut,
    VersionOut,
)
from service.inference.inspector import Inspector, ModelLoadError
from service.store import IntegrityError, NotFoundError
from service.store.store import validate_name

router = APIRouter(tags=["models"])


async def _model_name(name: str) -> str:
    return validate_name(name, "model")


async def _alias_name(alias: str) -> str:
    return validate_name(alias, "alias")


ModelName = Annotated[str, Depends(_model_name)]
"""The ``{name}`` of the path; 422 ``invalid_model_name`` before anything is looked up."""
AliasName = Annotated[str, Depends(_alias_name)]


def _live(services: Services) -> LiveModelOut | None:
    live: Inspector | None = services.models.inspector
    if live is None:
        return None
    return LiveModelOut(name=live.name, version=live.version, alias=services.models.alias)


@router.get("/v1/models", response_model=ModelsOut, dependencies=[ReadRole])
def list_models(services: ServicesDep) -> ModelsOut:
    """Every model in the store with its versions and aliases, and the version served here."""
    store = services.store
    return ModelsOut(
        live=_live(services),
        models=[
            ModelOut(
                name=name,
                aliases=store.aliases(name),
                versions=[
                    VersionOut.from_manifest(store.manifest(name, v)) for v in store.versions(name)
                ],
            )
            for name in store.models()
        ],
    )


@router.post(
    "/v1/admin/models/{name}/aliases/{alias}",
    response_model=AliasOut,
    responses={status: {"model": ErrorOut} for status in (401, 403, 404, 409, 422)},
    dependencies=[AdminRole],
)
async def move_alias(
    name: ModelName, alias: AliasName, move: AliasMoveIn, services: ServicesDep
) -> AliasOut:
    """Point an alias at a version (promote, or roll back); the served alias swaps live.

    The version is verified, loaded and warmed before the swap; one that fails is refused and
    the live version stays: 409 ``version_integrity_failed`` (its files do not match their
    hashes), 422 ``version_not_servable`` (it does not load or run).
    """
    try:
        previous = await services.models.move_alias(name, alias, move.version)
    except NotFoundError as error:
        raise ApiError(404, "version_not_found", str(error)) from error
    except IntegrityError as error:
        raise ApiError(409, "version_integrity_failed", str(error)) from error
    except ModelLoadError as error:
        raise ApiError(422, "version_not_servable", str(error)) from error
    return AliasOut(
        name=name,
        alias=alias,
        version=move.version,
        previous_version=previous,
        live=_live(services),
    )
