"""The chat format and byte-level tokenizer of lens-tiny-chat, shared by data building, training and export.

Token ids 0-255 are raw UTF-8 bytes (written in tokenizer.json with the GPT-2 byte-to-unicode alphabet);
the special tokens follow. A conversation renders as
    <|user|>\\n{content}<|end|>\\n<|assistant|>\\n{content}<|end|>\\n
and a generation prompt ends with "<|assistant|>\\n". The model stops by emitting <|end|>.
"""
from __future__ import annotations

import re

SPECIALS = {"<|end|>": 256, "<|user|>": 257, "<|assistant|>": 258, "<|system|>": 259, "<|pad|>": 260}
VOCAB_SIZE = 264
EOS_ID = SPECIALS["<|end|>"]
PAD_ID = SPECIALS["<|pad|>"]

# Jinja chat template (rendered identically by Python's jinja2 and @huggingface/jinja).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


def render_chat(messages, add_generation_prompt: bool = False) -> str:
    out = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    if add_generation_prompt:
        out += "<|assistant|>\n"
    return out


def encode(text: str) -> list[int]:
    ids: list[int] = []
    for part in _SPLIT.split(text):
        if not part:
            continue
        if part in SPECIALS:
            ids.append(SPECIALS[part])
        else:
            ids.extend(part.encode("utf-8"))
    return ids


def encode_chat(messages, add_generation_prompt: bool = False) -> list[int]:
    return encode(render_chat(messages, add_generation_prompt))


def decode(ids) -> str:
    inv = {v: k for k, v in SPECIALS.items()}
    out = bytearray()
    parts = []
    for i in ids:
        if i < 256:
            out.append(i)
        else:
            parts.append(out.decode("utf-8", errors="replace"))
            out = bytearray()
            parts.append(inv.get(i, ""))
    parts.append(out.decode("utf-8", errors="replace"))
    return "".join(parts)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, as used by ByteLevel pre-tokenizers."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))
