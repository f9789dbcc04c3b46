"""An IMDSv2 client on urllib: a session token first (PUT), then GETs that carry it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

DEFAULT_ENDPOINT = "http://169.254.169.254/"
ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"  # noqa: S105 - a header name
TOKEN_TTL_SECONDS = 21600


class ImdsError(Exception):
    """The metadata service could not be reached or answered with an error."""


class ImdsClient:
    def __init__(self, endpoint: str | None = None, timeout: float = 2.0) -> None:
        base = endpoint or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
        if not base.startswith(("http://", "https://")):
            raise ImdsError(f"IMDS endpoint must be http(s): {base!r}")
        self.base = base.rstrip("/") + "/"
        self.timeout = timeout
        self._token: str | None = None
        # The metadata service is link-local: an HTTP(S)_PROXY in the environment must not apply.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> str | None:
        """The text at latest/<path>, or None when the service answers 404."""
        for attempt in (1, 2):
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                self.base + "latest/" + path.lstrip("/"),
                headers={TOKEN_HEADER: self._session_token(refresh=attempt == 2)},
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    return str(response.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return None
                if error.code == 401 and attempt == 1:
                    continue  # the token expired: get a new one and ask again
                raise ImdsError(f"IMDS GET {path}: HTTP {error.code}") from error
            except (urllib.error.URLError, OSError) as error:
                raise ImdsError(f"IMDS GET {path}: {error}") from error
        raise ImdsError(f"IMDS GET {path}: token refused")

    def get_json(self, path: str) -> dict[str, Any] | None:
        text = self.get(path)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError as error:
            raise ImdsError(f"IMDS {path} is not JSON: {text[:200]!r}") from error
        return value if isinstance(value, dict) else None

    def _session_token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
                self.base + "latest/api/token",
                method="PUT",
                headers={TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)},
            )
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    self._token = response.read().decode("utf-8")
            except (urllib.error.URLError, OSError) as error:
                raise ImdsError(f"IMDS token: {error}") from error
        return self._token


def instance_id(client: ImdsClient | None = None) -> str:
    value = (client or ImdsClient()).get("meta-data/instance-id")
    if value is None:
        raise ImdsError("IMDS has no instance-id")
    return value


def ami_id(client: ImdsClient | None = None) -> str | None:
    """The id of the AMI the instance booted from; None when the service has none."""
    return (client or ImdsClient()).get("meta-data/ami-id") or None


def spot_instance_action(client: ImdsClient | None = None) -> dict[str, Any] | None:
    """{"action": "terminate"|"stop"|"hibernate", "time": ...} once a notice is out, else None."""
    return (client or ImdsClient()).get_json("meta-data/spot/instance-action")


def rebalance_recommendation(client: ImdsClient | None = None) -> dict[str, Any] | None:
    """{"noticeTime": ...} once EC2 recommends a rebalance, else None."""
    return (client or ImdsClient()).get_json("meta-data/events/recommendations/rebalance")
