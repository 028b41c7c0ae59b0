"""The transformers engine through its real adapter, with tiny random GLM, GLM-4 and Qwen2 models
built here (a byte-level BPE trained on a few sentences plus each family's chat template).

Random weights say nothing sensible, so these assert structure: deltas stream as text, the chat
template is applied, cancellation stops ``generate``, sharing is safe, and bad folders are refused.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assistant.config import LLM, Settings
from assistant.engines import transformers_lm
from assistant.engines.transformers_lm import TransformersModel
from assistant.stages import GenerateError, LanguageModel, Message, ModelMissingError

pytestmark = pytest.mark.slow

torch: Any = None
transformers: Any = None


@pytest.fixture(scope="module", autouse=True)
def heavy_imports() -> None:
    """Imported when a test here runs, not at collection: torch and transformers take seconds to
    import, and a run that deselects these slow tests should not pay for them."""
    global torch, transformers
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

CORPUS = [
    "The front desk opens at eight thirty and closes at six.",
    "Visitors sign in at reception and get a badge.",
    "Business travel needs approval in the OA system before booking.",
    "前台早上八点半开门，晚上六点下班。",
    "访客请在前台登记并领取访客证。",
    "出差须先在OA提交申请并经直属上级审批。",
] * 4

QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GLM_TEMPLATE = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
FAMILIES = {
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], "<|im_end|>", QWEN_TEMPLATE),
    "glm": (["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"], "<|user|>", GLM_TEMPLATE),
    "glm4": (["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"], "<|user|>", GLM_TEMPLATE),
}


def build_tiny(folder: Path, family: str) -> Path:
    """A complete offline chat model folder: tokenizer (+ chat template) and random weights."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials, eos, template = FAMILIES[family]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos, pad_token="<|endoftext|>")
    tok.chat_template = template
    tok.save_pretrained(folder)

    size = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "eos_token_id": tok.convert_tokens_to_ids(eos),
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(0)
    if family == "qwen2":
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**size))
    elif family == "glm":
        model = transformers.GlmForCausalLM(transformers.GlmConfig(head_dim=8, **size))
    else:
        model = transformers.Glm4ForCausalLM(transformers.Glm4Config(head_dim=8, **size))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-lms")
    for family in FAMILIES:
        build_tiny(root / "models" / f"tiny-{family}", family)
    return root


def settings_for(root: Path, family: str, **llm: object) -> Settings:
    return Settings(root=root, llm=LLM(engine="transformers", model=f"tiny-{family}", device="cpu", **llm))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def qwen(tiny_root: Path) -> TransformersModel:
    return TransformersModel.from_settings(settings_for(tiny_root, "qwen2", temperature=0.0))


async def collect(stream: AsyncIterator[str]) -> list[str]:
    return [d async for d in stream]


MESSAGES = [Message("system", "Answer briefly."), Message("user", "When does the front desk open?")]


@pytest.mark.parametrize("family, cls", [("glm", "GlmForCausalLM"), ("glm4", "Glm4ForCausalLM"), ("qwen2", "Qwen2ForCausalLM")])
async def test_each_family_loads_natively_and_streams(tiny_root: Path, family: str, cls: str) -> None:
    model = TransformersModel.from_settings(settings_for(tiny_root, family))
    assert isinstance(model, LanguageModel)
    assert type(model.model).__name__ == cls  # transformers' own class, no remote code
    assert model.device == "cpu" and model.dtype == torch.float32
    deltas = await collect(model.stream(MESSAGES, max_tokens=24))
    assert deltas and all(isinstance(d, str) and d for d in deltas)
    assert 0 < model.generated_tokens <= 24
    model.close()


async def test_a_temperature_given_to_stream_overrides_the_configured_one(tiny_root: Path) -> None:
    greedy = TransformersModel.from_settings(settings_for(tiny_root, "qwen2", temperature=0.0))
    hot = TransformersModel.from_settings(settings_for(tiny_root, "qwen2", temperature=5.0))
    expected = "".join(await collect(greedy.stream(MESSAGES, max_tokens=12)))
    got = ["".join(await collect(hot.stream(MESSAGES, max_tokens=12, temperature=0.0))) for _ in range(2)]
    assert got == [expected, expected]
    greedy.close()
    hot.close()


def test_chat_template_is_applied(qwen: TransformersModel, tiny_root: Path) -> None:
    prompt = qwen.render(MESSAGES)
    assert prompt == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhen does the front desk open?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    glm = TransformersModel.from_settings(settings_for(tiny_root, "glm"))
    assert glm.render(MESSAGES).startswith("[gMASK]<sop><|system|>\nAnswer briefly.<|user|>\n")
    glm.close()


async def test_closing_the_stream_stops_generate(tiny_root: Path) -> None:
    # min_new_tokens keeps the random model from ending early: left alone it would run 400 tokens.
    model = TransformersModel.from_settings(settings_for(tiny_root, "qwen2"))
    model._generate_options = {"min_new_tokens": 400}
    stream = model.stream(MESSAGES, max_tokens=400)
    got = [await anext(stream) for _ in range(2)]
    await stream.aclose()
    await model.idle()
    assert got
    assert model.generated_tokens < 100


async def test_cancelling_the_consumer_stops_generate(tiny_root: Path) -> None:
    model = TransformersModel.from_settings(settings_for(tiny_root, "glm4"))
    model._generate_options = {"min_new_tokens": 400}

    async def consume() -> None:
        async for _ in model.stream(MESSAGES, max_tokens=400):
            pass

    # Wait for tokens, not for a delta: a random tiny model may write no word boundary, and the
    # streamer then sends its text only at the end, when there is nothing left to stop.
    task = asyncio.create_task(consume())
    for _ in range(6000):
        if model.generated_tokens >= 3:
            break
        await asyncio.sleep(0.01)
    assert model.generated_tokens >= 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await model.idle()
    assert model.generated_tokens < 100


async def test_concurrent_callers_get_what_they_get_alone(qwen: TransformersModel) -> None:
    other = [Message("user", "访客在哪里登记？")]
    solo_a = "".join(await collect(qwen.stream(MESSAGES, max_tokens=12)))
    solo_b = "".join(await collect(qwen.stream(other, max_tokens=12)))
    together = await asyncio.gather(*(collect(qwen.stream(m, max_tokens=12)) for m in (MESSAGES, other, MESSAGES)))
    assert ["".join(t) for t in together] == [solo_a, solo_b, solo_a]


def test_chatglm3_needs_explicit_trust(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "chatglm3-6b"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "chatglm", "auto_map": {"AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"}})
    )
    settings = Settings(root=tmp_path, llm=LLM(engine="transformers", model="chatglm3-6b"))
    with pytest.raises(GenerateError) as info:
        TransformersModel.from_settings(settings)
    assert info.value.code == "llm-untrusted-code"
    assert "trust_remote_code = true" in info.value.message


def test_missing_folder_is_a_model_missing_error(tmp_path: Path) -> None:
    settings = Settings(root=tmp_path, llm=LLM(engine="transformers", model="glm-4-9b-chat-hf"))
    with pytest.raises(ModelMissingError, match="glm-4-9b-chat-hf"):
        TransformersModel.from_settings(settings)


def test_device_and_dtype_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert transformers_lm.pick_device("auto") == "cpu"
    assert transformers_lm.pick_dtype("auto", "cpu") == torch.float32
    assert transformers_lm.pick_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(GenerateError, match="no CUDA"):
        transformers_lm.pick_device("cuda")
    with pytest.raises(GenerateError, match="not a torch dtype"):
        transformers_lm.pick_dtype("float17", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert transformers_lm.pick_device("auto") == "cuda"
    assert transformers_lm.pick_dtype("auto", "cuda") == torch.bfloat16
