"""Models on gs:// staged once per machine into a local, verified cache, then loaded from disk.

TensorFlow's own gs:// support ignores STORAGE_EMULATOR_HOST and reads every file again in every worker
process; Beam's FileSystems honours the emulator and the pipeline's credentials. Staging takes a file lock,
so processes starting together download a model once, and writes a manifest of sizes and SHA-256 digests
that every later process checks before trusting the copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

MANIFEST = "tfx-inference-manifest.json"
_CHUNK = 8 * 1024 * 1024


def cache_root() -> str:
    return os.environ.get("TFX_INFERENCE_MODEL_CACHE", os.path.join(tempfile.gettempdir(), "tfx-inference-models"))


def local_model_path(uri: str) -> str:
    """Where the model is loaded from: the path itself when local, a cache folder named after the URI for gs://."""
    if not uri.startswith("gs://"):
        return uri
    uri = uri.rstrip("/")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return os.path.join(cache_root(), f"{uri.rsplit('/', 1)[-1]}-{digest}")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(local: str) -> bool:
    try:
        with open(os.path.join(local, MANIFEST)) as f:
            manifest = json.load(f)
        return all(
            os.path.getsize(os.path.join(local, name)) == entry["size"]
            and _sha256(os.path.join(local, name)) == entry["sha256"]
            for name, entry in manifest.items()
        )
    except (OSError, ValueError, KeyError):
        return False


def _download(uri: str, destination: str) -> dict:
    prefix = uri.rstrip("/") + "/"
    files = FileSystems.match([prefix + "**"])[0].metadata_list
    if not files:
        raise FileNotFoundError(f"model {uri} has no files")
    manifest = {}
    for metadata in files:
        name = metadata.path[len(prefix) :]
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        digest, size = hashlib.sha256(), 0
        source = FileSystems.open(metadata.path, compression_type=CompressionTypes.UNCOMPRESSED)
        with source, open(target, "wb") as out:
            for chunk in iter(lambda source=source: source.read(_CHUNK), b""):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if size != metadata.size_in_bytes:
            raise OSError(f"model file {metadata.path}: read {size} bytes, the object has {metadata.size_in_bytes}")
        manifest[name] = {"size": size, "sha256": digest.hexdigest()}
    return manifest


def stage_model(uri: str, local: str | None = None) -> str:
    """The local directory holding the model at `uri`, downloading and verifying it first if needed."""
    local = local or local_model_path(uri)
    if local == uri:
        return local
    parent = os.path.dirname(local)
    os.makedirs(parent, exist_ok=True)
    with open(f"{local}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _verified(local):
            return local
        staging = tempfile.mkdtemp(dir=parent, prefix=".staging-")
        try:
            manifest = _download(uri, staging)
            with open(os.path.join(staging, MANIFEST), "w") as f:
                json.dump(manifest, f)
            if os.path.exists(local):
                shutil.rmtree(local)  # an earlier copy that failed verification
            os.rename(staging, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return local
