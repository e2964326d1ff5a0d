// generate_ids.js: reference token ids from Hugging Face's Rust tokenizers for libr1's tests.
//
// Usage: npm install && node generate_ids.js [tokenizer.json] [out-dir]
// Defaults: ../../data/tokenizer/tokenizer.json (DeepSeek-R1) and ../../data/tokenizer.
// Writes broad-ids-r1.json: [{"text": ..., "ids": [...]}, ...], encode(text, null,
// {addSpecialTokens: false}) (0.23 spelling of encode(text, false)), i.e. no BOS
// and added tokens in the text parsed. The string set is deterministic (seeded generator).
'use strict';

const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const here = __dirname;
const tokPath = process.argv[2] || path.join(here, '../../data/tokenizer/tokenizer.json');
const outDir = process.argv[3] || path.join(here, '../../data/tokenizer');

// xorshift32 so the set is the same on every run and machine.
let seed = 0x2545f491;
function rnd(n) {
    seed ^= seed << 13; seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5; seed >>>= 0;
    return seed % n;
}
function pick(a) { return a[rnd(a.length)]; }

const strings = [];
function add(s) { strings.push(s); }

// Scripts and writing systems.
add('你好，世界！这是一个测试。');
add('中文和English混合的句子123个字');
add('日本語のテキスト：ひらがな、カタカナ、漢字。');
add('ｶﾀｶﾅ半角とカタカナ全角ー');
add('한국어 문장입니다. 안녕하세요!');
add('ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ');
add('हिन्दी में लिखा गया वाक्य। नमस्ते');
add('العربية تكتب من اليمين إلى اليسار ١٢٣٤٥');
add('עברית נכתבת מימין לשמאל, שלום!');
add('Русский текст с цифрами 2024 и знаками «кавычек».');
add('Ελληνικά: αβγδε ΑΒΓΔΕ');
add('Tiếng Việt có dấu: Xin chào thế giới');
add('ქართული ენა, Հայերեն լեզու, አማርኛ');
add('Mixed: abcΑΒΓабв你好こんにちは안녕ไทย');
// Emoji, ZWJ sequences, flags, skin tones, variation selectors.
add('😀😃😄 emoji 🎉🎊');
add('👨‍👩‍👧‍👦 family, 👩🏽‍💻 coder, 🏳️‍🌈 flag');
add('🇫🇷🇯🇵🇺🇸 flags');
add('❤️ ❤ ☺️ ✔︎ 1️⃣ #️⃣');
add('a😀b😀c 😀 😀');
// Combining marks.
add('e\u0301 e\u0301\u0301 cafe\u0301 caf\u00e9');
add('Z\u0351\u0352\u0353a\u0300\u0301\u0302l\u0303\u0304g\u0305o\u0306');
add('\u0301 leading combining mark');
add('n\u0303o\u0308 \u1100\u1161\u11a8');
add('ﬁ ligature, Å vs A\u030a, Ω vs \u2126');
// Digits of every length, in several contexts.
for (let n = 1; n <= 30; n++) {
    let d = '';
    for (let i = 0; i < n; i++) d += String((i * 7 + n) % 10);
    add(d);
    add(' ' + d + ' ');
    add('x' + d + 'y');
}
add('１２３４５ fullwidth, ٣٤٥٦ Arabic-Indic, ४५६ Devanagari, ²³ superscripts, ½ ⅓, Ⅻ');
add('3.14159 -42 +7 1e10 0x1F 1,000,000 10%');
add('2024-01-15T12:34:56Z');
// Whitespace.
for (let n = 1; n <= 12; n++) {
    add(' '.repeat(n));
    add('a' + ' '.repeat(n) + 'b');
    add('\n'.repeat(n));
    add('\t'.repeat(n) + 'x');
}
add('\r\n\r\n');
add('line1\r\nline2\rline3\n');
add('  \n  \n\n   ');
add('a \n b \t\n c');
add('\u0085');
add('a\u0085b');
add(' \u0085 ');
add('\u0085\n');
add('\n\u0085');
add('\u00a0\u0085\u2028');
add('\ufeff');
add('\ufeffhello');
add('hello \ufeff world');
add(' \ufeff ');
add('\u3000');
add('\u3000\u3000abc\u3000');
add('日本\u3000語');
add(' \u3000 \u00a0 ');
add('\u2028\u2029');
add('a\u2000b\u200ac\u202fd\u205fe');
add('\u180e \u180e');
add('\u200b\u200c\u200d zero width');
add('\t\t\tindented\ttext\t');
add('trailing spaces   ');
add('   leading spaces');
add('\v\f vertical tab and form feed');
add('\u0000 nul \u0001 ctl \u007f del');
// Punctuation and symbols.
add('Hello, world! How are you? I\'m fine... really?!');
add('"quoted" \'single\' «guillemets» „low“ ‘curly’');
add('!!!???... ---- ____ ==== ****');
add('$100 €50 £30 ¥1000 ₹500');
add('a+b=c; x*y/z; 5>3<7; a&&b||c');
add('(parentheses) [brackets] {braces} <angles>');
add('#hashtag @mention $var %pct ^caret ~tilde `tick`');
add('.hidden ,comma :colon ;semi -dash /slash');
add('→ ← ↑ ↓ ⇒ ∀∃∈∉ ∑∏∫ ≤≥≠ ±×÷');
add('©®™ °C µm §1 ¶ †‡ •·');
add('“Smart quotes” — em dash – en dash … ellipsis');
// Code.
add('int main(void) {\n    printf("hello\\n");\n    return 0;\n}\n');
add('def f(x):\n    """Docstring."""\n    return [i**2 for i in range(x) if i % 2 == 0]\n');
add('const f = async (a, b) => { await g(a?.b ?? 0); };\n');
add('fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![1, 2, 3];\n    Ok(())\n}');
add('<div class="x">\n  <a href="https://example.com/?q=1&r=2">link</a>\n</div>');
add('SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;');
add('#!/bin/sh\nfor f in *.c; do gcc -O2 -c "$f" || exit 1; done\n');
add('{"key": [1, 2.5, true, null], "nested": {"a": "b"}}');
add('\tif (x) {\n\t\treturn;\n\t}\n');
add('x = [\n    1,\n    2,\n]\n\n\n# comment\n');
add('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n');
add('$$\\frac{a}{b} + \\sum_{i=0}^{n} x_i^2$$');
// URLs, paths, mail.
add('https://www.example.com/path/to/page.html?query=value&x=1#frag');
add('http://localhost:8080/api/v1/users/42');
add('ftp://user:pass@host.example.org/file.tar.gz');
add('mailto:someone@example.com, other.person+tag@mail.co.uk');
add('C:\\Users\\name\\Documents\\file.txt and /usr/local/lib/libr1.so.1');
add('git@github.com:owner/repo.git');
// Added tokens in the text.
add('<｜begin▁of▁sentence｜>');
add('<｜begin▁of▁sentence｜><｜User｜>What is 1+1?<｜Assistant｜><think>\n');
add('<think>\nreasoning\n</think>\n\nanswer<｜end▁of▁sentence｜>');
add('a<think>b</think>c');
add('<<think>> <</think>>');
add('<think><think></think></think>');
add('<｜User｜><｜User｜><｜Assistant｜>');
add('<|EOT|> and <｜EOT｜>');
add('<｜User');
add('｜User｜>');
add('<｜place▁holder▁no▁798｜><｜place▁holder▁no▁5｜>');
add('<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>');
add('<｜fim▁begin｜>def f():\n<｜fim▁hole｜>\n<｜fim▁end｜>');
add('text <｜end▁of▁sentence｜> text');
add(' <think> ');
add('<｜▁pad▁｜>');
add('<think');
add('think>');

// Random strings over a pool that mixes categories and the tricky whitespace.
const pool = [
    'a', 'b', 'Z', 'é', 'ß', 'я', 'ω', '中', '文', 'あ', 'カ', 'ー', '한', 'ก', 'ा', 'न', 'ع', 'ש',
    '0', '1', '9', '٣', '²', '½', '１', ' ', ' ', ' ', '  ', '\t', '\n', '\r', '\r\n', '\u0085',
    '\ufeff', '\u3000', '\u00a0', '\u2028', '\u200d', '\u0301', '\u0308', '!', '?', '.', ',', '-',
    '_', '\'', '"', '(', ')', '[', '{', '<', '>', '/', '\\', '#', '$', '%', '&', '*', '+', '=',
    '@', '^', '`', '|', '~', '€', '©', '→', '😀', '👍🏽', '‍', '️', '¿', '¡', '。', '、', '「',
    'the', 'ing', ' of', 'tion', '<think>', '<｜User｜>', 'http', '://', '123', '4567',
];
for (let i = 0; i < 400; i++) {
    const len = 1 + rnd(40);
    let s = '';
    for (let j = 0; j < len; j++) s += pick(pool);
    add(s);
}

// Long inputs.
add('a'.repeat(3000));
add(' '.repeat(3000) + 'x');
add('7'.repeat(1000));
add('\n'.repeat(500) + ' '.repeat(500));
add('ab'.repeat(1500));
{
    const parts = strings.slice(0, strings.length);
    let big = '';
    let k = 0;
    while (Buffer.byteLength(big, 'utf8') < 100 * 1024) {
        big += parts[(k * 131) % parts.length];
        big += pick([' ', '\n', '', '. ', '\n\n']);
        k++;
    }
    add(big);
}

const tok = Tokenizer.fromFile(tokPath);

async function main() {
    const out = [];
    for (const text of strings) {
        const enc = await tok.encode(text, null, { addSpecialTokens: false });
        const rec = { text, ids: Array.from(enc.getIds()) };
        // cJSON cuts strings at NUL, so such texts also carry their UTF-8 bytes in hex.
        if (text.includes('\u0000')) rec.hex = Buffer.from(text, 'utf8').toString('hex');
        out.push(rec);
    }
    const body = '[\n' + out.map((r) => JSON.stringify(r)).join(',\n') + '\n]\n';
    const file = path.join(outDir, 'broad-ids-r1.json');
    fs.writeFileSync(file, body);
    console.log(`${out.length} strings -> ${file} (${body.length} chars)`);
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
