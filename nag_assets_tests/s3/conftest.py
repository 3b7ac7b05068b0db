"""A real S3-compatible HTTP server on loopback (moto), started and stopped by the tests.

Credentials and region come from the environment, as they would in production; the endpoint
from AWS_ENDPOINT_URL or from StorageResource.endpoint_url, as each test chooses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import s3fs
from moto.server import ThreadedMotoServer

from nag_assets_tests.defs.conftest import tiny_model_dir, wiki_pool  # noqa: F401

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "nag-test-key",
    "AWS_SECRET_ACCESS_KEY": "nag-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
}


@dataclass
class S3:
    endpoint: str
    client: object  # boto3 S3 client bound to the endpoint

    def bucket(self) -> str:
        """A new, empty bucket (s3fs cannot create one on us-east-1; boto3 can)."""
        name = f"nag-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def upload(self, local: Path, bucket: str, prefix: str) -> None:
        """Every file under `local`, at the same relative path under s3://bucket/prefix/."""
        for p in sorted(local.rglob("*")):
            if p.is_file():
                key = f"{prefix}/{p.relative_to(local).as_posix()}"
                self.client.put_object(Bucket=bucket, Key=key, Body=p.read_bytes())

    def keys(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{prefix}/"
        )
        objects = [o for page in pages for o in page.get("Contents", [])]
        return sorted(o["Key"][len(prefix) + 1 :] for o in objects)


@pytest.fixture(scope="package")
def s3() -> Iterator[S3]:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in AWS_ENV.items():
            mp.setenv(k, v)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            s3fs.S3FileSystem.clear_instance_cache()
            yield S3(endpoint, boto3.client("s3", endpoint_url=endpoint))
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()
