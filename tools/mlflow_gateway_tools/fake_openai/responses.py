"""OpenAI-shaped response bodies with token counts derived from the text.

Deterministic on purpose: the same request always yields the same reply and counts, so
tests can compute expected usage by hand.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

# What the real API answers for an alias: its current dated snapshot.
SNAPSHOTS = {
    "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "gpt-4": "gpt-4-0613",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "o3": "o3-2025-04-16",
    "o4-mini": "o4-mini-2025-04-16",
    "gpt-5": "gpt-5-2025-08-07",
    "gpt-5-mini": "gpt-5-mini-2025-08-07",
}
EMBEDDING_MODELS = ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")
# What OpenAI's legacy /v1/completions serves (the lab's completions endpoint uses davinci-002).
COMPLETIONS_MODELS = ("davinci-002", "babbage-002", "gpt-3.5-turbo-instruct")
DEFAULT_REPLY_TOKENS = 24
TOKENS_PER_MESSAGE = 3  # role and separators, as OpenAI's own counting adds
REPLY_PRIMING_TOKENS = 3
REASONING_TOKENS_PER_VISIBLE_TOKEN = 2
EMBEDDING_DIMENSIONS = 8

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Words and punctuation marks; close enough to BPE for a fake, and exact for tests."""
    return len(_TOKEN.findall(text))


def snapshot_of(model: str) -> str:
    return SNAPSHOTS.get(model, model)


def is_reasoning_model(model: str) -> bool:
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


def text_of_content(content: Any) -> str:
    """Message content is a string or a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


def prompt_tokens_of_messages(messages: Iterable[Mapping[str, Any]]) -> int:
    return REPLY_PRIMING_TOKENS + sum(
        TOKENS_PER_MESSAGE + count_tokens(text_of_content(message.get("content")))
        for message in messages
    )


def prompt_key(model: str, prompt: Any) -> str:
    """A stable key for a prompt, used to emulate prompt caching on repeats."""
    return hashlib.sha256(repr((model, prompt)).encode()).hexdigest()


def reply_words(prompt_text: str, limit: int | None) -> list[str]:
    """The fake answer: a fixed opening that echoes the prompt, cut to `limit` tokens."""
    words = ["Fake", "answer", "about", ":", *_TOKEN.findall(prompt_text)]
    filler = ["lorem", "ipsum", "dolor", "sit", "amet"]
    while len(words) < DEFAULT_REPLY_TOKENS:
        words.append(filler[len(words) % len(filler)])
    return words[: min(limit or DEFAULT_REPLY_TOKENS, DEFAULT_REPLY_TOKENS)]


def usage_block(
    prompt_tokens: int, visible_tokens: int, cached_tokens: int, reasoning: bool
) -> dict[str, Any]:
    reasoning_tokens = visible_tokens * REASONING_TOKENS_PER_VISIBLE_TOKEN if reasoning else 0
    completion_tokens = visible_tokens + reasoning_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _envelope(kind: str, model: str) -> dict[str, Any]:
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {
        "id": f"{prefix}-fake{uuid.uuid4().hex[:20]}",
        "object": kind,
        "created": int(time.time()),
        "model": snapshot_of(model),
        "system_fingerprint": "fp_fake",
    }


def chat_completion(model: str, words: list[str], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        **_envelope("chat.completion", model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def chat_chunks(model: str, words: list[str], usage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The chunk sequence of a streamed chat: role, one word per chunk, stop, usage."""
    envelope = _envelope("chat.completion.chunk", model)

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            **envelope,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks += [
        chunk({"content": word if i == 0 else " " + word}, None) for i, word in enumerate(words)
    ]
    chunks.append(chunk({}, "stop"))
    if usage is not None:
        chunks.append({**envelope, "choices": [], "usage": usage})
    return chunks


def text_completion(model: str, words: list[str], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        **_envelope("text_completion", model),
        "choices": [
            {"index": 0, "text": " ".join(words), "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": usage,
    }


def text_completion_chunks(
    model: str, words: list[str], usage: dict[str, Any] | None
) -> list[dict[str, Any]]:
    envelope = _envelope("text_completion", model)
    chunks = [
        {
            **envelope,
            "choices": [
                {
                    "index": 0,
                    "text": word if i == 0 else " " + word,
                    "logprobs": None,
                    "finish_reason": "stop" if i == len(words) - 1 else None,
                }
            ],
        }
        for i, word in enumerate(words)
    ]
    if usage is not None:
        chunks.append({**envelope, "choices": [], "usage": usage})
    return chunks


def embedding_vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


def embeddings(model: str, inputs: list[str], dimensions: int | None) -> dict[str, Any]:
    prompt_tokens = sum(count_tokens(text) for text in inputs)
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_vector(text, dimensions or EMBEDDING_DIMENSIONS),
            }
            for index, text in enumerate(inputs)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_list() -> dict[str, Any]:
    names = [*SNAPSHOTS, *SNAPSHOTS.values(), *COMPLETIONS_MODELS, *EMBEDDING_MODELS]
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake-openai"}
            for name in names
        ],
    }


def error_body(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}
