// gen_unicode_classes.js: lib/text/tokenizer_unicode.c, the Unicode classes of Hugging Face's regexes.
//
// Usage: npm install && node gen_unicode_classes.js [tokenizer.json] [out.c]
// Defaults: ../../data/tokenizer/tokenizer.json (any tokenizer.json will do: only its vocabulary
// is needed to build a Tokenizer) and ../../../lib/text/tokenizer_unicode.c; runs clang-format on it.
//
// Hugging Face's tokenizers compile pre-tokenizer patterns with Oniguruma, whose Unicode tables
// (16.0 in tokenizers 0.23.2) are newer than those of the PCRE2 libr1 links (10.42: Unicode 14.0),
// so \p{L} and friends disagree on thousands of code points and the pre-tokenizer splits text
// differently. libr1 therefore spells these classes out as explicit ranges. The ranges are taken
// from Hugging Face's own regex engine: for each class, a Split pre-tokenizer with that class as
// its pattern is run over every Unicode scalar value.
'use strict';

const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

const here = __dirname;
const tokPath = process.argv[2] || path.join(here, '../../data/tokenizer/tokenizer.json');
const outPath = process.argv[3] || path.join(here, '../../../lib/text/tokenizer_unicode.c');

const CLASSES = ['L', 'M', 'N', 'P', 'S', 'Z'];
const base = JSON.parse(fs.readFileSync(tokPath, 'utf8'));
base.added_tokens = [];

function members(re) {
    const j = JSON.parse(JSON.stringify(base));
    j.pre_tokenizer = { type: 'Split', pattern: { Regex: re }, behavior: 'Isolated', invert: false };
    const pt = Tokenizer.fromString(JSON.stringify(j)).getPreTokenizer();
    const out = [];
    const CH = 4096;
    // Each code point is followed by U+0001 (in none of the classes), so a one-code-point piece
    // other than U+0001 is a match.
    for (let c0 = 0; c0 <= 0x10ffff; c0 += CH) {
        let s = '';
        for (let c = c0; c < c0 + CH && c <= 0x10ffff; c++)
            if (c < 0xd800 || c > 0xdfff) s += String.fromCodePoint(c) + '\u0001';
        for (const [piece] of pt.preTokenizeString(s)) {
            const cps = [...piece];
            if (cps.length === 1 && piece !== '\u0001') out.push(cps[0].codePointAt(0));
        }
    }
    return out.sort((a, b) => a - b);
}

function ranges(cps) {
    const r = [];
    for (const c of cps) {
        // No range runs across the surrogates (libr1 compares these with PCRE2's runs so).
        if (r.length && r[r.length - 1][1] + 1 === c) r[r.length - 1][1] = c;
        else r.push([c, c]);
    }
    return r;
}

const hex = (v) => '0x' + v.toString(16);
let body = '';
let table = '';
let counts = [];
for (const name of CLASSES) {
    const cps = members('\\p{' + name + '}');
    const r = ranges(cps);
    counts.push(`${name} ${cps.length} code points in ${r.length} ranges`);
    body += `static const uint32_t class_${name}[] = {${r.map(([a, b]) => hex(a) + ', ' + hex(b)).join(', ')}};\n\n`;
    table += `    {'${name}', class_${name}, sizeof class_${name} / sizeof class_${name}[0] / 2},\n`;
}
const src = `/* tokenizer_unicode.c: Unicode classes as Hugging Face's regexes see them (generated). */
/* Written by test/ref/tokenizer/gen_unicode_classes.js from Hugging Face tokenizers 0.23.2
 * (Oniguruma, Unicode 16.0); do not edit. ${counts.join('; ')}. */
#include "tokenizer_unicode.h"

${body}const r1_unicode_class r1_tokenizer__unicode_classes[] = {
${table}};

const size_t r1_tokenizer__n_unicode_classes =
    sizeof r1_tokenizer__unicode_classes / sizeof r1_tokenizer__unicode_classes[0];
`;
fs.writeFileSync(outPath, src);
try {
    execFileSync('clang-format', ['-i', outPath]);
} catch (e) {
    console.error('clang-format failed or is missing: format ' + outPath + ' by hand');
}
console.log(counts.join('\n') + '\n-> ' + outPath);
