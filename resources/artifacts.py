"""The artifact store: versioned datasets and models. A local directory by default, S3 when a
bucket is configured (through dagster-aws's `S3Resource`, so credentials/endpoint follow the
usual AWS configuration, including a local emulator's endpoint URL).

Keys are POSIX paths such as `datasets/maya-kowalski/instruction/<version>/train.parquet`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field


class ArtifactStoreResource(dg.ConfigurableResource):
    root_dir: str = Field(default=".data/artifacts", description="Local root (TWIN_ARTIFACT_DIR).")
    s3_bucket: str = Field(default="", description="S3 bucket (TWIN_S3_BUCKET). Empty: local only.")
    s3_prefix: str = Field(default="llm-twin", description="Key prefix inside the bucket.")
    s3: S3Resource | None = None

    # -- local -------------------------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        """Local mirror of a key. Writers write here first; S3 is synced from it."""
        path = Path(self.root_dir).resolve() / key
        if ".." in Path(key).parts:
            raise ValueError(f"artifact key may not contain '..': {key}")
        return path

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_bucket)

    def _client(self):
        return (self.s3 or S3Resource()).get_client()

    def _s3_key(self, key: str) -> str:
        return f"{self.s3_prefix.strip('/')}/{key}" if self.s3_prefix else key

    def uri(self, key: str) -> str:
        if self.uses_s3:
            return f"s3://{self.s3_bucket}/{self._s3_key(key)}"
        return self.local_path(key).as_uri()

    # -- write -------------------------------------------------------------------------------
    def put_dir(self, key: str, local_dir: Path | None = None) -> str:
        """Publish a directory under `key` (copying it into the local root if elsewhere)."""
        target = self.local_path(key)
        if local_dir is not None and Path(local_dir).resolve() != target:
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(local_dir, target)
        if self.uses_s3:
            client = self._client()
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    rel = path.relative_to(target).as_posix()
                    client.upload_file(str(path), self.s3_bucket, self._s3_key(f"{key}/{rel}"))
        return self.uri(key)

    def put_json(self, key: str, obj: object) -> str:
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        if self.uses_s3:
            self._client().upload_file(str(path), self.s3_bucket, self._s3_key(key))
        return self.uri(key)

    # -- read --------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        if self.local_path(key).exists():
            return True
        if self.uses_s3:
            resp = self._client().list_objects_v2(
                Bucket=self.s3_bucket, Prefix=self._s3_key(key), MaxKeys=1
            )
            return resp.get("KeyCount", 0) > 0
        return False

    def get_json(self, key: str) -> object:
        path = self.local_path(key)
        if not path.exists() and self.uses_s3:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._client().download_file(self.s3_bucket, self._s3_key(key), str(path))
        return json.loads(path.read_text())

    def get_dir(self, key: str) -> Path:
        """Local directory holding `key`, downloaded from S3 when not present locally."""
        target = self.local_path(key)
        if target.exists() or not self.uses_s3:
            return target
        client = self._client()
        prefix = self._s3_key(key).rstrip("/") + "/"
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.s3_bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):]
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(self.s3_bucket, obj["Key"], str(dest))
        return target

    def write_alias(self, key: str, alias: str, version: str) -> str:
        """Point `<key>/<alias>` (e.g. latest, production) at a version."""
        return self.put_json(f"{key}/aliases/{alias}.json", {"version": version})

    def read_alias(self, key: str, alias: str) -> str | None:
        if not self.exists(f"{key}/aliases/{alias}.json"):
            return None
        return str(self.get_json(f"{key}/aliases/{alias}.json")["version"])  # type: ignore[index]
