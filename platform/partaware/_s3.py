"""s3fs with bounded waits: imported only when an ``s3://`` URI is opened (s3fs is heavy).

Why a subclass: botocore adds ``Expect: 100-continue`` to every upload, and aiohttp waits for the
``100 Continue`` with no timeout, so a server that accepts the connection and never answers hangs a PUT
forever, whatever ``read_timeout`` says. The header only saves re-sending a body the server would
refuse; without it an upload fails within the read timeout like any other call. s3fs's own retry loop
is turned off (``retries = 1``): botocore's bounded retries (``S3Limits``) are the only ones.
"""

from __future__ import annotations

from typing import Any

import aiobotocore.session
from fsspec.asyn import sync_wrapper
from s3fs import S3FileSystem


def _no_expect_header(params: dict[str, Any], **_kwargs: Any) -> None:
    params.get("headers", {}).pop("Expect", None)


class BoundedS3FileSystem(S3FileSystem):
    """``S3FileSystem`` whose uploads never wait for ``100-continue`` and whose calls s3fs does not retry."""

    retries = 1

    async def set_session(self, refresh: bool = False, kwargs: dict | None = None) -> Any:
        if self.session is None:
            session = aiobotocore.session.AioSession(**self.kwargs)
            session.register("before-call.s3", _no_expect_header)  # runs after botocore's add_expect_header
            self.session, self._session_is_owned = session, False  # s3fs must not replace it on refresh
        return await super().set_session(refresh, kwargs or {})

    _connect = set_session
    connect = sync_wrapper(set_session)
