// generate_diff_distill.js: Hugging Face's ids for the R1 distills' tokenizers on the
// differential corpus.
//
// Usage: npm install && node generate_diff_distill.js [out-file]   (needs the zstd program)
// Reads ../../data/tokenizer/diff-corpus.bin.zst (generate_diff.js: the differential corpus of
// the DeepSeek tokenizers, 25,000+ strings) and the distill tokenizers that
// make_distill_tokenizers.js writes to ../../data/tokenizer/distill-{qwen,llama}; writes
// ../../data/tokenizer/distill-diff-corpus.bin.zst by default.
//
// The strings: every string of the DeepSeek corpus, then two kinds for the distills: every added
// token of either distill alone, glued and spaced, truncated and nested ('distill-added'), and
// text around Unicode normalisation ('nfc': decomposed and precomposed letters, Hangul jamo,
// combining marks of Unicode 9.0 and of later versions in and out of canonical order, marks
// right after an added token). For each tokenizer it records Hugging Face's ids (npm
// `tokenizers`) in the three modes of generate_diff.js (special, added, plain), in the same
// format, plus a trailer for the decode round trip: Hugging Face's decode of each set's ids
// (special tokens kept) for every string where that differs from the string itself (NFC, for
// Qwen):
//   "R1TOKDEC", u32 n_sets_decoded, n_sets_decoded x (u32 set index, u32 n,
//   n x (u32 string index, u32 len, bytes)).
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

const here = __dirname;
const dataDir = path.join(here, '../../data/tokenizer');
const outPath = process.argv[2] || path.join(dataDir, 'distill-diff-corpus.bin.zst');

function unzstd(file) {
    return execFileSync('zstd', ['-d', '-q', '-c', file], { maxBuffer: 1 << 30 });
}

// The DeepSeek corpus: strings and kinds (its ids are not needed here).
const strings = [];
const kinds = [];
const kindNames = [];
{
    const b = unzstd(path.join(dataDir, 'diff-corpus.bin.zst'));
    let p = 0;
    const u32 = () => { const v = b.readUInt32LE(p); p += 4; return v; };
    const bytes = (n) => { const s = b.subarray(p, p + n); p += n; return s; };
    if (bytes(8).toString('latin1') !== 'R1TOKDF1') throw new Error('bad corpus magic');
    const nSets = u32(), nKinds = u32(), n = u32();
    for (let i = 0; i < nSets; i++) bytes(u32());
    for (let i = 0; i < nKinds; i++) kindNames.push(bytes(u32()).toString('utf8'));
    for (let i = 0; i < n; i++) {
        kinds.push(u32());
        strings.push(bytes(u32()).toString('utf8'));
        for (let k = 0; k < nSets; k++) {
            const m = u32();
            if (!(m & 0x80000000)) bytes(4 * m);
        }
    }
    if (p !== b.length) throw new Error('trailing bytes in the DeepSeek corpus');
}
const nBase = strings.length;

const toks = [['qwen', 'distill-qwen'], ['llama', 'distill-llama']].map(([name, dir]) =>
    [name, JSON.parse(unzstd(path.join(dataDir, dir, 'tokenizer.json.zst')).toString('utf8'))]);

// xorshift32, seeded apart from generate_diff.js's, so the corpus is the same on every run.
let seed = 0x2545f491;
function rnd(n) {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
}
function pick(a) { return a[rnd(a.length)]; }
function kind(name) { kindNames.push(name); return kindNames.length - 1; }
function add(k, s) { strings.push(s); kinds.push(k); }

const addedSet = new Set();
for (const [, j] of toks) for (const a of j.added_tokens) addedSet.add(a.content);
const ADDED = [...addedSet].sort();
const FILL = ['', '', ' ', '\n', '  ', 'a', '1', '12345', 'e\u0301', '\u0301', '<', '>', '|', '｜',
    '▁', 'Hello', ' world', '中文', "'s", "'LL"];
let k = kind('distill-added');
for (const t of ADDED) {
    add(k, t);
    add(k, 'a' + t + 'b');
    add(k, ' ' + t + ' \n' + t + t);
}
for (let i = 0; i < 2000; i++) {
    const n = 1 + rnd(6);
    let s = '';
    for (let j = 0; j < n; j++) {
        const t = pick(ADDED);
        switch (rnd(6)) {
        case 0: s += t.slice(0, 1 + rnd(t.length - 1)); break;
        case 1: s += t.slice(rnd(t.length - 1)); break;
        case 2: s += t.slice(0, t.length >> 1) + pick(ADDED) + t.slice(t.length >> 1); break;
        default: s += t;
        }
        s += pick(FILL);
    }
    add(k, s);
}
// Normalisation: pieces whose NFC differs, or differs between Unicode 9.0 and later tables.
const marks9 = [0x300, 0x301, 0x302, 0x303, 0x308, 0x30a, 0x316, 0x323, 0x327, 0x328, 0x334,
    0x338, 0x345, 0x5b0, 0x5bc, 0x64b, 0x651, 0x93c, 0x94d, 0x9bc, 0xe38, 0xe48, 0x302a, 0x3099,
    0x309a, 0x1d165, 0x1d16e];
const marksLater = [0x7fd, 0x898, 0x8d3, 0x9fe, 0xc3c, 0xd3b, 0x1abf, 0x1ac1, 0x1aeb, 0x1df6,
    0x1df9, 0x1dfa, 0x10d24, 0x10eab, 0x10f46, 0x11070, 0x1e4ec, 0x1e4ed, 0x1e5ee, 0x16ff0,
    0x113b8, 0x113c2, 0x16d63, 0x16d67, 0x105d2, 0x1611e, 0x1611f];
const starters = ['a', 'e', 'o', 'A', 'E', 'u', 'n', 'c', 's', 'z', 'I', 'ı', 'ø', 'Ω', 'α', 'ω',
    'и', 'у', 'ज', 'क', 'ক', 'ཀ', 'か', 'ハ', '\u1100', '\u1112', '\uac00', '\ud7a3', '1', ' ',
    '\u0bc6', '\u0bbe', '\u0cbf', '\u0cd5', '\u{11099}', '\u{110ba}', '\u{105d2}', '\u{113c2}'];
const precomposed = ['é', 'Å', 'Ω', 'Å', 'ǖ', 'ệ', 'ﬁ', 'ｶﾞ', '가', '각', 'が', 'ガ', '\u0344',
    '\u0374', '\u037e', '\u0387', '\u2000', '\u2126', '\u212b', '\u2329', '\uf900', '\ufb1d',
    '\u{1d15e}', '\u{2f800}', 'ṩ', 'ḍ̇', 'q̣̇'];
function mark() { return String.fromCodePoint(rnd(3) ? pick(marks9) : pick(marksLater)); }
k = kind('nfc');
for (const p of precomposed) {
    add(k, p);
    add(k, p.normalize('NFD'));
    add(k, 'x' + p.normalize('NFD') + 'y ' + p);
}
for (let i = 0; i < 3000; i++) {
    const n = 1 + rnd(8);
    let s = '';
    for (let j = 0; j < n; j++) {
        switch (rnd(7)) {
        case 0: s += pick(precomposed).normalize(pick(['NFC', 'NFD', 'NFKD'])); break;
        case 1: s += pick(ADDED) + mark(); break;
        case 2: s += '\u1100' + String.fromCodePoint(0x1161 + rnd(21)) + (rnd(2) ? String.fromCodePoint(0x11a8 + rnd(27)) : ''); break;
        default: {
            s += pick(starters);
            const m = rnd(4);
            for (let q = 0; q < m; q++) s += mark();
        }
        }
        s += pick(['', '', ' ', "'s", '12', '\n', 'x']);
    }
    add(k, s);
}

function variant(json, keep) {
    const j = JSON.parse(JSON.stringify(json));
    j.added_tokens = j.added_tokens.filter(keep);
    const full = Tokenizer.fromString(JSON.stringify(json));
    const part = Tokenizer.fromString(JSON.stringify(j));
    const memo = new Map();
    const map = (id) => {
        let v = memo.get(id);
        if (v === undefined) {
            v = full.tokenToId(part.idToToken(id));
            if (v === null || v === undefined) throw new Error('no id for ' + part.idToToken(id));
            memo.set(id, v);
        }
        return v;
    };
    return [part, map];
}
const sets = [];
for (const [name, json] of toks) {
    sets.push([name + ' special', Tokenizer.fromString(JSON.stringify(json)), (id) => id]);
    sets.push([name + ' added', ...variant(json, (a) => !a.special)]);
    sets.push([name + ' plain', ...variant(json, () => false)]);
}

function u32(v) { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; }
function str(s) { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u32(b.length), b]); }

async function main() {
    const n = strings.length;
    const ids = sets.map(() => new Array(n));
    const CH = 500;
    for (let si = 0; si < sets.length; si++) {
        for (let i = 0; i < n; i += CH) {
            const encs = await sets[si][1].encodeBatch(strings.slice(i, i + CH), { addSpecialTokens: false });
            encs.forEach((e, j) => { ids[si][i + j] = Array.from(e.getIds(), sets[si][2]); });
        }
    }
    const parts = [Buffer.from('R1TOKDF1'), u32(sets.length), u32(kindNames.length), u32(n)];
    for (const [name] of sets) parts.push(str(name));
    for (const name of kindNames) parts.push(str(name));
    let nIds = 0;
    for (let i = 0; i < n; i++) {
        parts.push(u32(kinds[i]), str(strings[i]));
        for (let si = 0; si < sets.length; si++) {
            const a = ids[si][i];
            let same = -1;
            for (let sj = 0; sj < si && same < 0; sj++) {
                const b = ids[sj][i];
                if (b.length === a.length && b.every((v, x) => v === a[x])) same = sj;
            }
            if (same >= 0) { parts.push(u32(0x80000000 + same)); continue; }
            const b = Buffer.alloc(4 * (a.length + 1));
            b.writeUInt32LE(a.length, 0);
            a.forEach((v, x) => b.writeUInt32LE(v, 4 * (x + 1)));
            parts.push(b);
            nIds += a.length;
        }
    }
    // Decode round trip of every set's ids (numbered as in the full file), by Hugging Face with
    // the full file.
    const decoded = [];
    for (let si = 0; si < sets.length; si++) {
        const diff = [];
        const full = sets[si - (si % 3)][1];
        for (let i = 0; i < n; i += CH) {
            const dec = await full.decodeBatch(ids[si].slice(i, i + CH), false);
            dec.forEach((d, j) => { if (d !== strings[i + j]) diff.push([i + j, d]); });
        }
        decoded.push([si, diff]);
    }
    parts.push(Buffer.from('R1TOKDEC'), u32(decoded.length));
    for (const [si, diff] of decoded) {
        parts.push(u32(si), u32(diff.length));
        for (const [i, d] of diff) parts.push(u32(i), str(d));
    }
    const raw = Buffer.concat(parts);
    const zst = execFileSync('zstd', ['-19', '-q', '-c'], { input: raw, maxBuffer: 1 << 30 });
    fs.writeFileSync(outPath, zst);
    const perKind = kindNames.map((name, i) => `${name} ${kinds.filter((x) => x === i).length}`);
    console.log(`${n} strings (${nBase} of the DeepSeek corpus; ${perKind.join(', ')}), ${sets.length} id sets, ${nIds} distinct ids stored`);
    for (const [si, diff] of decoded)
        console.log(`${sets[si][0]}: Hugging Face's decode differs from the text on ${diff.length} strings`);
    console.log(`${raw.length} bytes -> ${outPath} (${zst.length} bytes zstd)`);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
