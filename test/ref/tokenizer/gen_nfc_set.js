// gen_nfc_set.js: lib/text/tokenizer_nfc_set.c, the code points Hugging Face's NFC normalizer acts on.
//
// Usage: npm install && node gen_nfc_set.js [tokenizer.json] [out.c]
// Defaults: ../../data/tokenizer/tokenizer.json (any tokenizer.json will do: only its vocabulary
// is needed to build a Tokenizer) and ../../../lib/text/tokenizer_nfc_set.c; runs clang-format on it.
//
// Hugging Face's tokenizers (0.23.2) normalise with the crate unicode-normalization-alignments
// 0.1.12, whose tables are Unicode 9.0; libr1 normalises with the system's libutf8proc (2.8:
// Unicode 15.0). Normalisation data never changes for a character once assigned (Unicode's
// stability policy), so the two agree on every character Unicode 9.0 had; a character assigned
// later is, for Hugging Face, an inert starter that nothing reorders or composes across. This set
// is every code point Hugging Face's NFC does something with: a non-zero canonical combining
// class, a canonical decomposition, or a place in one (a composition partner). libr1 hands runs
// of these code points to utf8proc and keeps every other code point as it is. The set is taken
// from Hugging Face's own normalizers, per code point:
//   combining class: NFC("\u0345" + c) reorders when 0 < ccc(c) < 240 (U+0345 has 240), and
//                    NFC(c + "\u0334") reorders when ccc(c) > 1 (U+0334 has 1);
//   decomposition:   NFD(c) != c, and every code point of NFD(c) is a partner.
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

const here = __dirname;
const tokPath = process.argv[2] || path.join(here, '../../data/tokenizer/tokenizer.json');
const outPath = process.argv[3] || path.join(here, '../../../lib/text/tokenizer_nfc_set.c');

const base = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
base.added_tokens = [];
function normalizer(type) {
    const j = JSON.parse(JSON.stringify(base));
    j.normalizer = { type };
    return Tokenizer.fromString(JSON.stringify(j)).getNormalizer();
}
const nfc = normalizer('NFC');
const nfd = normalizer('NFD');

// Probes are joined by U+0001 (combining class 0, no decomposition, composes with nothing), so
// a batch normalises as its probes would one by one.
const SEP = '\u0001';
const set = new Set();
const CH = 4096;
for (let c0 = 0; c0 <= 0x10ffff; c0 += CH) {
    const cps = [];
    for (let c = c0; c < c0 + CH && c <= 0x10ffff; c++)
        if ((c < 0xd800 || c > 0xdfff) && c !== 1) cps.push(c);
    const probes = [];
    for (const c of cps) {
        const s = String.fromCodePoint(c);
        probes.push('\u0345' + s, s + '\u0334', s);
    }
    const joined = probes.join(SEP);
    const outC = nfc.normalizeString(joined).split(SEP);
    const outD = nfd.normalizeString(joined).split(SEP);
    if (outC.length !== probes.length || outD.length !== probes.length)
        throw new Error('a probe crossed the separator');
    cps.forEach((c, i) => {
        const s = String.fromCodePoint(c);
        if (outC[3 * i] !== '\u0345' + s || outC[3 * i + 1] !== s + '\u0334') set.add(c);
        const d = outD[3 * i + 2];
        if (d !== s) {
            set.add(c);
            for (const p of d) set.add(p.codePointAt(0));
        }
    });
}
const cps = [...set].sort((a, b) => a - b);
const r = [];
for (const c of cps) {
    if (r.length && r[r.length - 1][1] + 1 === c) r[r.length - 1][1] = c;
    else r.push([c, c]);
}
const hex = (v) => '0x' + v.toString(16);
const src = `/* tokenizer_nfc_set.c: the code points Hugging Face's NFC acts on (generated). */
/* Written by test/ref/tokenizer/gen_nfc_set.js from Hugging Face tokenizers 0.23.2 (NFC of
 * Unicode 9.0); do not edit. ${cps.length} code points in ${r.length} ranges. */
#include "tokenizer_normalize.h"

const uint32_t r1_tokenizer__nfc_ranges[] = {${r.map(([a, b]) => hex(a) + ', ' + hex(b)).join(', ')}};

const size_t r1_tokenizer__n_nfc_ranges =
    sizeof r1_tokenizer__nfc_ranges / sizeof r1_tokenizer__nfc_ranges[0] / 2;
`;
fs.writeFileSync(outPath, src);
try {
    execFileSync('clang-format', ['-i', outPath]);
} catch (e) {
    console.error('clang-format failed or is missing: format ' + outPath + ' by hand');
}
console.log(`${cps.length} code points in ${r.length} ranges -> ${outPath}`);
