#!/usr/bin/env python3
"""Writes tiny seed files for the model-file fuzz targets (valid files of every format and
version, plus a few targeted malformations), so a campaign starts from inputs that reach
deep into the parsers and the forward pass.

    fuzz/make_seeds.py OUT_ROOT      # writes OUT_ROOT/fuzz_model_llama2c/seed-*, ...
    fuzz/make_seeds.py --valid-only OUT_ROOT
                                     # only the seeds the parsers accept (no "bad-*" file),
                                     # plus a few well-formed inputs for the targets whose
                                     # every input is valid (arena, generate, api): the
                                     # starting corpus of scripts/mutation-test.sh --mode search

Also writes OUT_ROOT/fuzz_kernels/seed-*: one input per kernel, shape class and value mode of
fuzz/fuzz_kernels.c (its parameters are drawn from the input's tail, in the order listed at
each run_* function there; kernel_input() below mirrors that encoding).

Deterministic (fixed PRNG), every file well under 64 KiB. Formats as documented at the top
of src/model/llama2c.c, src/model/gguf.c and src/model/tokenizer.c.
"""
import os
import random
import struct
import sys

rng = random.Random(42)


def floats(n, scale=0.5):
    return struct.pack("<%df" % n, *[rng.uniform(-scale, scale) for _ in range(n)])


def norms(n):
    return struct.pack("<%df" % n, *[1.0 + rng.uniform(-0.1, 0.1) for _ in range(n)])


class Cfg:
    def __init__(self, dim=8, hidden=12, layers=1, heads=2, kv_heads=1, vocab=16, seq=4):
        self.dim, self.hidden, self.layers = dim, hidden, layers
        self.heads, self.kv_heads, self.vocab, self.seq = heads, kv_heads, vocab, seq
        self.hs = dim // heads
        self.kv_dim = kv_heads * self.hs

    def header(self, vocab_field=None):
        v = self.vocab if vocab_field is None else vocab_field
        return struct.pack("<7i", self.dim, self.hidden, self.layers, self.heads,
                           self.kv_heads, v, self.seq)


def llama2c_v0(c, shared=True):
    d, L = c.dim, c.layers
    out = [c.header(c.vocab if shared else -c.vocab)]
    out.append(floats(c.vocab * d))
    out.append(norms(L * d))
    out.append(floats(L * d * d))
    out.append(floats(L * c.kv_dim * d))
    out.append(floats(L * c.kv_dim * d))
    out.append(floats(L * d * d))
    out.append(norms(L * d))
    out.append(floats(L * c.hidden * d))
    out.append(floats(L * d * c.hidden))
    out.append(floats(L * c.hidden * d))
    out.append(norms(d))
    out.append(floats(c.seq * c.hs // 2))
    out.append(floats(c.seq * c.hs // 2))
    if not shared:
        out.append(floats(c.vocab * d))
    return b"".join(out)


def ak42_header(c, version, shared, group=0):
    h = struct.pack("<Ii", 0x616B3432, version) + c.header() + struct.pack("<B", shared)
    if version == 2:
        h += struct.pack("<i", group)
    return h + b"\0" * (256 - len(h))


def matrices(c, shared):
    d, L = c.dim, c.layers
    m = [(c.vocab, d)]
    m += [(d, d)] * L + [(c.kv_dim, d)] * L + [(c.kv_dim, d)] * L + [(d, d)] * L
    m += [(c.hidden, d)] * L + [(d, c.hidden)] * L + [(c.hidden, d)] * L
    if not shared:
        m.append((c.vocab, d))
    return m


def llama2c_v1(c, shared=True):
    d, L = c.dim, c.layers
    out = [ak42_header(c, 1, 1 if shared else 0), norms(L * d), norms(L * d), norms(d)]
    out += [floats(r * k) for r, k in matrices(c, shared)]
    return b"".join(out)


def llama2c_v2(c, group, shared=True):
    d, L = c.dim, c.layers
    out = [ak42_header(c, 2, 1 if shared else 0, group), norms(L * d), norms(L * d), norms(d)]
    for r, k in matrices(c, shared):
        n = r * k
        out.append(bytes(rng.randrange(256) for _ in range(n)))
        out.append(struct.pack("<%df" % (n // group), *[rng.uniform(0.001, 0.02) for _ in range(n // group)]))
    return b"".join(out)


def tokenizer_pieces(vocab, byte_fallback=False):
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
    if byte_fallback:
        pieces += [b"<0x%02X>" % i for i in range(256)]
    base = [b" ", b"e", b"t", b"a", b" t", b"th", b"he", b" the", b"o", b"\xc3\xa1", b"Ol",
            b"\xe2\x96\x81", b"n", b"s", b" a", b"in", b"er", b"re"]
    i = 0
    while len(pieces) < vocab:
        pieces.append(base[i] if i < len(base) else b"p%d" % i)
        i += 1
    return pieces[:vocab]


def tokenizer_bin(pieces, max_len=None):
    if max_len is None:
        max_len = max(len(p) for p in pieces)
    out = [struct.pack("<i", max_len)]
    for i, p in enumerate(pieces):
        out.append(struct.pack("<fi", -float(i), len(p)) + p)
    return b"".join(out)


# ---- GGUF ----
GT_U32, GT_I32, GT_F32, GT_STRING, GT_ARRAY = 4, 5, 6, 8, 9


def gstr(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("<Q", len(s)) + s


def kv(key, typ, val):
    b = gstr(key) + struct.pack("<I", typ)
    if typ == GT_U32:
        b += struct.pack("<I", val)
    elif typ == GT_I32:
        b += struct.pack("<i", val)
    elif typ == GT_F32:
        b += struct.pack("<f", val)
    elif typ == GT_STRING:
        b += gstr(val)
    elif typ == GT_ARRAY:
        et, items = val
        b += struct.pack("<IQ", et, len(items))
        for it in items:
            if et == GT_STRING:
                b += gstr(it)
            elif et == GT_F32:
                b += struct.pack("<f", it)
            elif et == GT_I32:
                b += struct.pack("<i", it)
    return b


def f16_bytes(n):
    return struct.pack("<%de" % n, *[rng.uniform(-0.5, 0.5) for _ in range(n)])


def q8_0_bytes(rows, cols):
    out = []
    for _ in range(rows * cols // 32):
        out.append(struct.pack("<e", rng.uniform(0.001, 0.02)))
        out.append(bytes(rng.randrange(256) for _ in range(32)))
    return b"".join(out)


def gguf(c, wtype=0, version=3, shared=True, alignment=32, with_tokenizer=True, extra_kv=()):
    pieces = tokenizer_pieces(c.vocab)
    meta = [
        kv("general.architecture", GT_STRING, "llama"),
        kv("general.alignment", GT_U32, alignment),
        kv("llama.embedding_length", GT_U32, c.dim),
        kv("llama.feed_forward_length", GT_U32, c.hidden),
        kv("llama.block_count", GT_U32, c.layers),
        kv("llama.attention.head_count", GT_U32, c.heads),
        kv("llama.attention.head_count_kv", GT_U32, c.kv_heads),
        kv("llama.context_length", GT_U32, c.seq),
        kv("llama.rope.dimension_count", GT_U32, c.hs),
        kv("llama.rope.freq_base", GT_F32, 10000.0),
        kv("llama.attention.layer_norm_rms_epsilon", GT_F32, 1e-5),
    ]
    if with_tokenizer:
        meta += [
            kv("tokenizer.ggml.model", GT_STRING, "llama"),
            kv("tokenizer.ggml.tokens", GT_ARRAY, (GT_STRING, pieces)),
            kv("tokenizer.ggml.scores", GT_ARRAY, (GT_F32, [-float(i) for i in range(c.vocab)])),
            kv("tokenizer.ggml.token_type", GT_ARRAY, (GT_I32, [1] * c.vocab)),
            kv("tokenizer.ggml.bos_token_id", GT_U32, 1),
            kv("tokenizer.ggml.eos_token_id", GT_U32, 2),
        ]
    meta += list(extra_kv)
    d = c.dim
    tensors = [("token_embd.weight", c.vocab, d, False), ("output_norm.weight", 1, d, True)]
    if not shared:
        tensors.append(("output.weight", c.vocab, d, False))
    for l in range(c.layers):
        p = "blk.%d." % l
        tensors += [(p + "attn_norm.weight", 1, d, True), (p + "attn_q.weight", d, d, False),
                    (p + "attn_k.weight", c.kv_dim, d, False), (p + "attn_v.weight", c.kv_dim, d, False),
                    (p + "attn_output.weight", d, d, False), (p + "ffn_norm.weight", 1, d, True),
                    (p + "ffn_gate.weight", c.hidden, d, False), (p + "ffn_down.weight", d, c.hidden, False),
                    (p + "ffn_up.weight", c.hidden, d, False)]
    infos, data = [], b""
    for name, rows, cols, is_norm in tensors:
        t = 0 if is_norm else wtype
        if t == 0:
            blob = norms(cols) if is_norm else floats(rows * cols)
        elif t == 1:
            blob = f16_bytes(rows * cols)
        else:
            blob = q8_0_bytes(rows, cols)
        off = len(data)
        if rows == 1:
            dims = struct.pack("<IQ", 1, cols)
        else:
            dims = struct.pack("<IQQ", 2, cols, rows)
        infos.append(gstr(name) + dims + struct.pack("<IQ", t, off))
        data += blob
        data += b"\0" * (-len(data) % alignment)
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * (-len(head) % alignment)
    return head + data


VALID_ONLY = False


def write(root, target, name, blob):
    if VALID_ONLY and name.startswith("bad-"):
        return  # a malformation: not a valid seed
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    assert len(blob) < 65536, (target, name, len(blob))
    prefix = "seed-" if VALID_ONLY else "fuzzseed-"
    with open(os.path.join(d, prefix + name), "wb") as f:
        f.write(blob)


def producer_seeds(root):
    """Targets whose parameters all come from fuzz_producer (fuzz_helpers.h) accept every byte
    string as a well-formed input: a few deterministic ones of different lengths, so each
    draws different parameter classes (arena sizes, operation mixes, configs, samplers)."""
    prng = random.Random(7)
    sizes = {"fuzz_arena_alloc": (64, 256, 1024, 4096), "fuzz_arena_reset": (64, 256, 1024, 4096),
             "fuzz_generate": (256, 1024, 2048, 4096), "fuzz_api": (64, 256, 1024, 4096)}
    for target, lengths in sizes.items():
        for n in lengths:
            write(root, target, "random-%d" % n, bytes(prng.randrange(256) for _ in range(n)))


def main():
    global VALID_ONLY
    args = sys.argv[1:]
    if args[:1] == ["--valid-only"]:
        VALID_ONLY = True
        args = args[1:]
    if len(args) == 2 and args[1] == "fuzz_kernels":
        kernel_seeds(args[0])
        return
    if len(args) == 2 and args[1] == "fuzz_bpe":
        bpe_seeds(args[0])
        return
    if len(args) != 1:
        sys.exit("usage: make_seeds.py [--valid-only] OUT_ROOT")
    root = args[0]
    if VALID_ONLY:
        producer_seeds(root)
    T = "fuzz_model_llama2c"
    c = Cfg()
    v0 = llama2c_v0(c)
    write(root, T, "v0-shared", v0)
    write(root, T, "v0-unshared", llama2c_v0(c, shared=False))
    write(root, T, "v0-mha-2layers", llama2c_v0(Cfg(dim=8, hidden=8, layers=2, heads=2, kv_heads=2, vocab=8, seq=3)))
    write(root, T, "v1-shared", llama2c_v1(c))
    write(root, T, "v1-unshared", llama2c_v1(c, shared=False))
    cq = Cfg(dim=8, hidden=16, vocab=16)
    write(root, T, "v2-group8", llama2c_v2(cq, 8))
    write(root, T, "v2-group4-unshared", llama2c_v2(cq, 4, shared=False))
    # malformed rows of the table: truncated, trailing bytes, n_heads 0, INT_MIN vocab,
    # ak42 with an unknown version
    write(root, T, "bad-truncated", v0[:-5])
    write(root, T, "bad-trailing", v0 + b"\0\0\0\0")
    write(root, T, "bad-nheads0", struct.pack("<7i", 8, 12, 1, 0, 1, 16, 4) + v0[28:])
    write(root, T, "bad-intmin-vocab", struct.pack("<7i", 8, 12, 1, 2, 1, -2**31, 4) + v0[28:])
    v1 = llama2c_v1(c)
    write(root, T, "bad-ak42-v3", v1[:4] + struct.pack("<i", 3) + v1[8:])

    T = "fuzz_gguf"
    write(root, T, "v3-f32", gguf(Cfg()))
    write(root, T, "v2-f32-unshared", gguf(Cfg(), version=2, shared=False))
    write(root, T, "v3-f16", gguf(Cfg(dim=32, hidden=32, heads=2, kv_heads=1, vocab=16, seq=4), wtype=1))
    write(root, T, "v3-q8_0", gguf(Cfg(dim=32, hidden=32, heads=2, kv_heads=1, vocab=16, seq=4), wtype=8))
    write(root, T, "v3-align64", gguf(Cfg(), alignment=64))
    write(root, T, "v3-no-tokenizer", gguf(Cfg(), with_tokenizer=False))
    g = gguf(Cfg())
    write(root, T, "bad-version4", g[:4] + struct.pack("<I", 4) + g[8:])
    write(root, T, "bad-truncated", g[: len(g) // 2])
    write(root, T, "bad-huge-ntensors", g[:8] + struct.pack("<Q", 2**62) + g[16:])
    write(root, T, "bad-huge-nkv", g[:16] + struct.pack("<Q", 2**61 + 3) + g[24:])
    write(root, T, "bad-dup-key", gguf(Cfg(), extra_kv=[kv("llama.block_count", GT_U32, 1)]))
    write(root, T, "bad-align3", gguf(Cfg(), alignment=3))

    T = "fuzz_tokenizer"
    write(root, T, "tok16", tokenizer_bin(tokenizer_pieces(16)))
    write(root, T, "tok-bytefallback", tokenizer_bin(tokenizer_pieces(280, byte_fallback=True)))
    write(root, T, "bad-negative-len", struct.pack("<i", 8) + struct.pack("<fi", 0.0, -1))
    write(root, T, "bad-too-long", tokenizer_bin([b"abcdefgh", b"x"], max_len=4))
    write(root, T, "bad-byte-token", tokenizer_bin([b"<unk>", b"<s>", b"</s>", b"<0x-1>", b"<0xZZ>"]))

    kernel_seeds(root)
    bpe_seeds(root)


# ---- fuzz_bpe: the reference strings of the BPE tests, with each configuration ----

def unescape_line(line):
    if line == "\\e":
        return ""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 1
            c = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[line[i]]
        out.append(c)
        i += 1
    return "".join(out)


def bpe_seeds(root):
    """One seed per reference string of tests/model/bpe (strings.txt, special_strings.txt),
    each with a configuration in its tail, drawn as fuzz/fuzz_bpe.c draws it: pre-tokenizer
    (0..2, the last byte), flags (0..7), merges to learn (0..64), then 4 seed bytes."""
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "tests", "model", "bpe")
    texts = []
    for name in ("strings.txt", "special_strings.txt"):
        with open(os.path.join(data, name), encoding="utf-8") as f:
            for line in f.read().split("\n"):
                if line and not line.startswith("#"):
                    texts.append(unescape_line(line).encode("utf-8"))
    for i, text in enumerate(texts):
        seed = struct.pack("<I", 2654435761 * (i + 1) % 2**32)
        tail = seed[::-1] + bytes([(i * 7) % 65, i % 8, i % 3])
        write(root, "fuzz_bpe", "ref-%03d" % i, text[:512] + tail)


# ---- fuzz_kernels: parameters drawn from the tail (fuzz/fuzz_helpers.h fuzz_producer) ----

def draw_bytes(lo, hi):
    """bytes fuzz_producer_range(lo, hi) consumes"""
    span, n = hi - lo, 0
    while span:
        n += 1
        span >>= 8
    return n


def kernel_input(kernel, mode, draws, payload_len, seed=1):
    """draws: (value, lo, hi) in draw order; the first draw takes the input's last bytes"""
    all_draws = [(kernel, 0, 6), (mode, 0, 3), (seed, 0, 2**32 - 1)] + list(draws)
    tail = b""
    for v, lo, hi in all_draws:
        n = draw_bytes(lo, hi)
        tail = (v - lo).to_bytes(n, "big") + tail
    return bytes(krng.getrandbits(8) for _ in range(payload_len)) + tail


MODES = {"raw": 0, "moderate": 1, "special": 2, "exact": 3}


krng = random.Random(7)


def kernel_seeds(root):
    krng.seed(7)
    T = "fuzz_kernels"
    o = lambda v: (v, 0, 15)  # a float buffer offset
    ob = lambda v: (v, 0, 63)  # a byte buffer offset
    for mode in MODES:
        write(root, T, "quantize-1block-" + mode,
              kernel_input(0, MODES[mode], [(1, 1, 64), o(0), ob(0), o(0)], 200))
        write(root, T, "quantize-9blocks-unaligned-" + mode,
              kernel_input(0, MODES[mode], [(9, 1, 64), o(3), ob(17), o(5)], 1200))
    # matmul: type, cols class, cols, group class, group value, rows, tokens, stride extra,
    # activation form, split, sub-range a, b, offsets w, scales, x, xq, xd, out
    def mm(name, mode, typ, cols_class, cols, gcls=0, gval=1, rows=5, tokens=3, act=0,
           offs=(1, 2, 3, 5, 7, 11)):
        cols_draw = (cols, 1, 2048) if cols_class == 2 else (cols, 1, 32 if cols_class == 0 else 64)
        d = [(typ, 0, 3), (cols_class, 0, 2), cols_draw, (gcls, 0, 4), (gval, 1, 200),
             (rows, 1, 64), (tokens, 1, 8), (1, 0, 3), (act, 0, 2), (2, 0, 255), (1, 0, 255),
             (4, 0, 255), ob(offs[0]), ob(offs[1]), o(offs[2]), ob(offs[3]), o(offs[4]),
             o(offs[5])]
        write(root, T, "matmul-" + name + "-" + mode, kernel_input(1, MODES[mode], d, 2048))
    for mode in ("moderate", "exact", "special"):
        mm("f32-odd", mode, 0, 1, 37)
        mm("f16-odd", mode, 1, 1, 19, rows=9)
        mm("q8_0-float", mode, 2, 0, 2)
        mm("q8_0-int-quantized", mode, 2, 0, 3, act=1)
        mm("q8_0-int-drawn", mode, 2, 0, 2, act=2, tokens=8)
        mm("q8split-g32-int", mode, 3, 0, 2, gcls=0, act=1)
        mm("q8split-g64-float", mode, 3, 0, 1, gcls=1, rows=4)
        mm("q8split-odd-group", mode, 3, 1, 21, gcls=3, gval=7, rows=7)
        mm("f32-with-unused-int8", mode, 0, 0, 1, act=2)
    mm("f32-wide", "moderate", 0, 2, 1500, rows=3, tokens=2)
    mm("q8_0-1row-1token", "raw", 2, 0, 4, rows=1, tokens=1, act=1)
    for mode, n, cls in (("moderate", 1, 0), ("moderate", 33, 0), ("special", 4096, 1),
                         ("raw", 64, 0), ("exact", 7, 0)):
        nd = (n, 1, 64) if cls == 0 else (n, 1, 4096)
        write(root, T, "rmsnorm-%d-%s" % (n, mode),
              kernel_input(2, MODES[mode], [(cls, 0, 1), nd, (0, 0, 4), (n & 1, 0, 1), o(1), o(2),
                                            o(3), o(4)], min(4 * n + 16, 4000)))
    for mode, n, cls in (("moderate", 0, 0), ("moderate", 1, 0), ("special", 7, 0),
                         ("moderate", 300, 1), ("raw", 64, 0), ("special", 1000, 1)):
        nd = (n, 0, 64) if cls == 0 else (n, 0, 2048)
        write(root, T, "softmax-%d-%s" % (n, mode),
              kernel_input(3, MODES[mode], [(cls, 0, 1), nd, o(0), o(5), o(9)], min(4 * n + 16, 4000)))
    for mode, n, cls in (("moderate", 0, 0), ("special", 13, 0), ("special", 1000, 1),
                         ("raw", 61, 0)):
        nd = (n, 0, 64) if cls == 0 else (n, 0, 4096)
        write(root, T, "swiglu-%d-%s" % (n, mode),
              kernel_input(4, MODES[mode], [(cls, 0, 1), nd, o(3), o(0), o(1), o(6)], min(8 * n + 16, 4000)))
    for mode, half, heads in (("moderate", 1, 1), ("moderate", 32, 4), ("special", 3, 5),
                              ("raw", 6, 2)):
        write(root, T, "rope-hs%d-%s" % (2 * half, mode),
              kernel_input(5, MODES[mode], [(half, 1, 128), (heads, 1, 16), o(1), o(2), o(0),
                                            o(3), o(7)], 600))
    for mode, half, npos, extra in (("moderate", 1, 1, 0), ("moderate", 32, 17, 8),
                                    ("special", 5, 200, 3), ("raw", 8, 9, 0), ("exact", 24, 40, 1)):
        write(root, T, "attention-hs%d-pos%d-%s" % (2 * half, npos, mode),
              kernel_input(6, MODES[mode], [(half, 1, 80), (npos, 1, 256), (extra, 0, 40), o(1),
                                            o(2), o(3), o(4), o(5), o(6), o(7)], 3000))


if __name__ == "__main__":
    main()
