"""POST /admin/reload: swap the weights while serving, for an operator (RELIGHT_ADMIN_RELOAD=true; absent otherwise).

Off by default, because SIGHUP already does the same for whoever may signal the process (the operator, the
orchestrator) and an HTTP endpoint widens that to whoever can reach the port. On, it needs X-API-Key where
RELIGHT_API_KEY is set, and it only names files in RELIGHT_WEIGHTS's folder, never paths: what may be served is
what the operator put beside the weights. It answers after the swap, with the weights that serve from then on.
"""

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from service.batching.handle import NotAccepting, SwapBusy, SwapRefused
from service.http.openapi import error_response
from service.http.routes import require_api_key, unavailable
from service.http.state import State

router = APIRouter()


class ReloadRequest(BaseModel):
    weights: str | None = Field(
        None,
        description="a weight file's name in RELIGHT_WEIGHTS's folder; absent: re-read RELIGHT_WEIGHTS",
        examples=["stacked_dmshn.safetensors"],
    )


@router.post(
    "/admin/reload",
    summary="Swap to a weight file while serving; answers with the live weights after it",
    responses={
        401: error_response(401, "Missing or wrong X-API-Key."),
        409: error_response(409, "Another swap is in progress (SIGHUP's or another call's); nothing was tried."),
        422: error_response(422, "The file was refused (the reason); the old weights keep serving."),
        503: error_response(503, "The service is shutting down."),
    },
    dependencies=[Depends(require_api_key)],
)
async def reload(state: State, request: ReloadRequest | None = None) -> dict:
    try:
        model = await state.model.reload(request.weights if request else None)
    except SwapBusy as busy:
        raise HTTPException(409, str(busy)) from None
    except SwapRefused as refusal:
        raise HTTPException(422, f"weights swap refused: {refusal}; the old weights keep serving") from None
    except NotAccepting:
        raise unavailable("the service is shutting down", retry_after=5) from None
    return {"weights": model.get("weights_tag"), "weights_sha256": model.get("weights_sha256"),
            "weights_since": model.get("weights_since")}  # fmt: skip
