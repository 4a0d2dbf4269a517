"""The Hugging Face Hub protocol (read and write paths), served at the root beside /v1: huggingface_hub,
transformers and PEFT load adapters and models from the registry with HF_ENDPOINT set to it.

A thin translation onto `registry.services.hub`; every route is an `errors.HubRoute`, which
answers errors the Hub's way."""

from __future__ import annotations

from fastapi import APIRouter

from registry.api.hub import discovery, files, models, write, xet
from registry.api.hub.common import bare_router

router = APIRouter(tags=["hub"])
router.include_router(models.router)
router.include_router(files.router)
router.include_router(discovery.router)
router.include_router(write.router)
router.include_router(xet.router)
router.include_router(bare_router)  # every bare-name form after every `ns/name` form
router.include_router(models.fallback_router)  # last: any other /api/models/... path

__all__ = ["router"]
