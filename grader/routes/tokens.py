"""The caller's own API token."""

from fastapi import APIRouter, Response, status

from grader import auth
from grader.deps import BearerDep, CurrentUser, SessionDep

router = APIRouter(prefix="/api", tags=["tokens"])


@router.delete(
    "/token",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"description": "no token, or an unknown, expired or revoked one"}},
)
def revoke_this_token(session: SessionDep, _: CurrentUser, credentials: BearerDep) -> Response:
    """Revoke the token this request is made with (it leaked, or its script is retired).

    A new one comes from `grader token create`.
    """
    auth.revoke_token(session=session, token=credentials.credentials)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
