"""boto3 sessions for the client, and AWS failures turned into errors a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    TokenRetrievalError,
)

from runctl.errors import AwsRequestFailed, AwsUnreachable, NoCredentials, RunctlError

# What `cdk.json` deploys to when runctl:region is not overridden.
DEFAULT_REGION = "us-east-1"
_EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
_INVALID_CODES = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch"}


@dataclass(frozen=True)
class AwsTarget:
    """Where the client talks to: a region and, for emulators and tests, an endpoint URL."""

    region: str | None = None
    endpoint_url: str | None = None  # None: boto3's own (AWS_ENDPOINT_URL when set)
    profile: str | None = None

    def session(self) -> boto3.session.Session:
        with aws_errors():
            session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        if session.region_name is None:
            session = boto3.session.Session(profile_name=self.profile, region_name=DEFAULT_REGION)
        return session

    def client(self, session: boto3.session.Session, service: str) -> Any:
        config = Config(retries={"mode": "standard", "max_attempts": 5})
        return session.client(service, endpoint_url=self.endpoint_url, config=config)


@contextmanager
def aws_errors(doing: str = "") -> Iterator[None]:
    """Turn botocore's credential, network and access failures into one-line RunctlErrors."""
    try:
        yield
    except RunctlError:
        raise
    except (NoCredentialsError, PartialCredentialsError, TokenRetrievalError) as error:
        raise NoCredentials(
            "no AWS credentials found: run `aws configure` (or `aws sso login`), or set "
            "AWS_PROFILE / AWS_ACCESS_KEY_ID"
        ) from error
    except ProfileNotFound as error:
        raise NoCredentials(f"{error}; check AWS_PROFILE or --profile") from error
    except NoRegionError as error:
        raise AwsRequestFailed("no AWS region: set region in .runctl.toml or AWS_REGION") from error
    except EndpointConnectionError as error:
        raise AwsUnreachable(
            f"cannot reach AWS at {error.kwargs.get('endpoint_url', 'its endpoint')}: "
            "check the network (and AWS_ENDPOINT_URL if you set it)"
        ) from error
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", str(error))
        if code in _EXPIRED_CODES:
            raise NoCredentials(
                "your AWS credentials have expired: log in again (`aws sso login`) or refresh them"
            ) from error
        if code in _INVALID_CODES:
            raise NoCredentials(
                f"AWS does not accept these credentials ({code}): check AWS_PROFILE or your keys"
            ) from error
        what = f" while {doing}" if doing else ""
        raise AwsRequestFailed(f"AWS refused a request{what}: {code}: {message}") from error
