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

from twin_assets.serving.snapshot_retention import DEFAULT_KEEP


class ArtifactStoreResource(dg.ConfigurableResource):
    root_dir: str = Field(default=".data/artifacts", description="Local root (TWIN_ARTIFACT_DIR).")
    s3_bucket: str = Field(default="", description="S3 bucket (TWIN_S3_BUCKET). Empty: local only.")
    s3_prefix: str = Field(default="llm-twin", description="Key prefix inside the bucket.")
    s3: S3Resource | None = None
    index_keep: int = Field(
        default=DEFAULT_KEEP,
        ge=1,
        description="Index snapshot versions kept per author after a publish, besides aliased "
        "ones (TWIN_INDEX_KEEP).",
    )
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

        An author purge and the retention of index snapshots call this; versions are otherwise
        immutable. Deleting is `put_dir` in reverse, so that a reader never takes a half-deleted
        version for a complete one: the local copy is renamed aside in one step before it is
        removed, and on S3 the `*card.json` objects go before every other object. A file that
        cannot be removed raises (the caller reports it) rather than passing unnoticed.
        """
        if not PurePosixPath(key).parts:
            raise ValueError("refusing to delete the whole artifact store")
        target = self.local_path(key)
        removed = 0
        if target.exists():
            removed = sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else 1
            aside = target.with_name(f".{target.name}.del-{uuid.uuid4().hex[:8]}")
            os.rename(target, aside)
            if aside.is_dir():
                shutil.rmtree(aside)
            else:
                aside.unlink()
        if self.uses_s3:
            client = self._client()
            prefix = self._s3_key(key).rstrip("/") + "/"
            keys = [
                o["Key"]
                for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.s3_bucket, Prefix=prefix
                )
                for o in page.get("Contents", [])
            ]
            cards = [k for k in keys if k.endswith("card.json")]
            rest = [k for k in keys if not k.endswith("card.json")]
            # separate requests: S3 gives no order within one; at most 1000 keys per request
            for batch in [cards[i : i + 1000] for i in range(0, len(cards), 1000)] + [
                rest[i : i + 1000] for i in range(0, len(rest), 1000)
            ]:
                resp = client.delete_objects(
                    Bucket=self.s3_bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                failed = resp.get("Errors", [])
                if failed:
                    first = failed[0]
                    raise OSError(
                        f"S3 refused to delete {len(failed)} object(s) under {self.uri(key)}, e.g. "
                        f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
                    )
            removed = max(removed, len(keys))
        return removed

    def list_children(self, key: str) -> list[str]:
        """Names directly under `key`, sorted: the local mirror's and, when configured, S3's
        (another worker may have published what this mirror lacks, and a mirror may hold what
        S3 no longer does). Hidden names (staging and deletion leftovers) are not listed."""
        names: set[str] = set()
        target = self.local_path(key)
        if target.is_dir():
            names.update(p.name for p in target.iterdir() if not p.name.startswith("."))
        if self.uses_s3:
            prefix = self._s3_key(key).rstrip("/") + "/"
            pages = (
                self._client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.s3_bucket, Prefix=prefix, Delimiter="/")
            )
            for page in pages:
                names.update(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
                names.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        return sorted(n for n in names if n and not n.startswith("."))

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

    def get_json(self, key: str, *, mirror: bool = True) -> object:
        """A JSON file; `mirror=False` reads S3 without writing the local mirror, for a file
        (such as a version's card) whose lone copy would make `get_dir` take its directory for
        a complete download."""
        path = self.local_path(key)
        if self.uses_s3 and (self._is_alias(key) or not path.exists()):
            # aliases always come from S3 (the local copy may be stale); the mirror is refreshed
            body = self._client().get_object(Bucket=self.s3_bucket, Key=self._s3_key(key))["Body"].read()
            if not mirror:
                return json.loads(body)
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
