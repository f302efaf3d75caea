"""The artifact store: versioned datasets and models. A local directory by default, S3 when a
bucket is configured (through dagster-aws's `S3Resource`, so credentials/endpoint follow the
usual AWS configuration, including a local emulator's endpoint URL).

Keys are POSIX paths such as `datasets/maya-kowalski/instruction/<version>/train.parquet`.
Implements `twin_assets.domain.stores.ArtifactStore`, the interface the logic packages take.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field


class ArtifactStoreResource(dg.ConfigurableResource):
    root_dir: str = Field(default=".data/artifacts", description="Local root (TWIN_ARTIFACT_DIR).")
    s3_bucket: str = Field(default="", description="S3 bucket (TWIN_S3_BUCKET). Empty: local only.")
    s3_prefix: str = Field(default="llm-twin", description="Key prefix inside the bucket.")
    s3: S3Resource | None = None
    # Optional mirror of datasets on the Hugging Face Hub (a private dataset repo), used when an
    # asset's `push_to_hub` config is on and both are set.
    hf_repo: str = Field(default="", description="Hub dataset repo id (TWIN_HF_REPO). Empty: no mirror.")
    hf_token: str = Field(default="", description="Hub token (HF_TOKEN, secret).")

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
        """Publish a directory under `key` (copying it into the local root if elsewhere).

        Readers take a top-level `*card.json` as "this version is complete", so the card must
        be the LAST thing to appear: the local copy is built in a hidden sibling and renamed
        into place, and on S3 the cards are uploaded after every other file.
        """
        target = self.local_path(key)
        if local_dir is not None and Path(local_dir).resolve() != target:
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
            shutil.copytree(local_dir, staging)
            self._swap_in(staging, target)
        if self.uses_s3:
            client = self._client()
            files = [p for p in sorted(target.rglob("*")) if p.is_file()]
            cards = [p for p in files if p.parent == target and p.name.endswith("card.json")]
            for path in [p for p in files if p not in cards] + cards:
                rel = path.relative_to(target).as_posix()
                client.upload_file(str(path), self.s3_bucket, self._s3_key(f"{key}/{rel}"))
        return self.uri(key)

    @staticmethod
    def _swap_in(staging: Path, target: Path) -> None:
        """Rename a fully written `staging` dir to `target`, replacing any previous copy."""
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
        os.rename(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def put_json(self, key: str, obj: object) -> str:
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        if self.uses_s3:
            self._client().upload_file(str(path), self.s3_bucket, self._s3_key(key))
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store one file (e.g. a plot) under `key`, locally and on S3 when configured."""
        path = self.local_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if self.uses_s3:
            self._client().upload_file(str(path), self.s3_bucket, self._s3_key(key))
        return self.uri(key)

    def delete_prefix(self, key: str) -> int:
        """Remove every file under `key`, locally and on S3; returns how many files went.

        Only an author purge calls this: versions are otherwise immutable and never deleted.
        """
        if not PurePosixPath(key).parts:
            raise ValueError("refusing to delete the whole artifact store")
        target = self.local_path(key)
        removed = sum(1 for p in target.rglob("*") if p.is_file()) if target.exists() else 0
        shutil.rmtree(target, ignore_errors=True)
        if self.uses_s3:
            client = self._client()
            prefix = self._s3_key(key).rstrip("/") + "/"
            s3_removed = 0
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.s3_bucket, Prefix=prefix
            ):
                objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objects:
                    client.delete_objects(Bucket=self.s3_bucket, Delete={"Objects": objects, "Quiet": True})
                    s3_removed += len(objects)
            removed = max(removed, s3_removed)
        return removed

    # -- read --------------------------------------------------------------------------------
    @staticmethod
    def _is_alias(key: str) -> bool:
        """Alias files (`<key>/aliases/<name>.json`) are the only keys rewritten in place."""
        return "aliases" in PurePosixPath(key).parts[:-1]

    def exists(self, key: str) -> bool:
        """Version content is immutable, so a local copy answers; an alias is asked of S3 (when
        configured), since another worker may have moved it since our mirror was written."""
        if self.uses_s3 and self._is_alias(key):
            resp = self._client().list_objects_v2(Bucket=self.s3_bucket, Prefix=self._s3_key(key), MaxKeys=1)
            return any(o["Key"] == self._s3_key(key) for o in resp.get("Contents", []))
        if self.local_path(key).exists():
            return True
        if self.uses_s3:
            resp = self._client().list_objects_v2(Bucket=self.s3_bucket, Prefix=self._s3_key(key), MaxKeys=1)
            return resp.get("KeyCount", 0) > 0
        return False

    def get_json(self, key: str) -> object:
        path = self.local_path(key)
        if self.uses_s3 and (self._is_alias(key) or not path.exists()):
            # aliases always come from S3 (the local copy may be stale); the mirror is refreshed
            body = self._client().get_object(Bucket=self.s3_bucket, Key=self._s3_key(key))["Body"].read()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
            tmp.write_bytes(body)
            os.replace(tmp, path)
            return json.loads(body)
        return json.loads(path.read_text())

    def get_dir(self, key: str) -> Path:
        """Local directory holding `key`, downloaded from S3 when not present locally.

        Downloaded into a hidden sibling and renamed, so an interrupted download never looks
        like a complete local copy. A stored key that would land outside the directory (`..`,
        absolute) is refused: a bucket's content must not write anywhere else on the worker.
        """
        target = self.local_path(key)
        if target.exists() or not self.uses_s3:
            return target
        client = self._client()
        prefix = self._s3_key(key).rstrip("/") + "/"
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        staging.mkdir()
        root = staging.resolve()
        downloaded = 0
        try:
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.s3_bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(prefix) :]
                    if not rel or rel.endswith("/"):
                        continue  # "directory" marker objects
                    dest = (root / rel).resolve()
                    if ".." in PurePosixPath(rel).parts or not dest.is_relative_to(root):
                        raise ValueError(
                            f"refusing S3 object {obj['Key']!r}: it would be written outside {target}"
                        )
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(self.s3_bucket, obj["Key"], str(dest))
                    downloaded += 1
            if downloaded:  # nothing stored: leave no empty dir that would pass for a copy
                self._swap_in(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def write_alias(self, key: str, alias: str, version: str) -> str:
        """Point `<key>/<alias>` (e.g. latest, production) at a version."""
        return self.put_json(f"{key}/aliases/{alias}.json", {"version": version})

    def read_alias(self, key: str, alias: str) -> str | None:
        if not self.exists(f"{key}/aliases/{alias}.json"):
            return None
        return str(self.get_json(f"{key}/aliases/{alias}.json")["version"])  # type: ignore[index]
