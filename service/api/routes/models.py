"""GET /v1/models: the model store's models, versions (metrics, lineage) and aliases."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import ServicesDep
from service.api.schemas import LiveModelOut, ModelOut, ModelsOut, VersionOut

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelsOut)
def list_models(services: ServicesDep) -> ModelsOut:
    """Every model in the store with its versions and aliases, and the version served here."""
    store, live = services.store, services.models.inspector
    return ModelsOut(
        live=None
        if live is None
        else LiveModelOut(
            name=live.name, version=live.version, alias=services.settings.model_alias
        ),
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
