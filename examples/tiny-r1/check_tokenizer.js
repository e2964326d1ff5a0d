// Compare the tiny-r1 Python encoder (bpe.py) with Hugging Face's Rust
// tokenizers library (npm package `tokenizers`) on the same strings.
//
//   python3 make_tokenizer_cases.py > out/cases.json     (texts + Python ids)
//   node check_tokenizer.js hf/tokenizer.json out/cases.json
//
// cases.json: [{"text": ..., "ids": [...]}, ...]. Encodes with
// addSpecialTokens=false (the texts already contain BOS etc.), as the
// engine encodes a rendered chat template. Also decodes every id list back
// and checks it round-trips to the text. Exit status 0 iff all agree.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [tokPath, casesPath] = process.argv.slice(2);
  if (!tokPath || !casesPath) {
    console.error('usage: node check_tokenizer.js TOKENIZER_JSON CASES_JSON');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const cases = JSON.parse(fs.readFileSync(casesPath, 'utf8'));
  let bad = 0;
  let badDecode = 0;
  for (const c of cases) {
    const enc = await tok.encode(c.text, null, { addSpecialTokens: false });
    const ids = Array.from(enc.getIds());
    const same = ids.length === c.ids.length && ids.every((v, i) => v === c.ids[i]);
    if (!same) {
      bad++;
      if (bad <= 5) {
        console.log('MISMATCH', JSON.stringify(c.text));
        console.log('  rust  ', JSON.stringify(ids));
        console.log('  python', JSON.stringify(c.ids));
      }
    }
    const back = await tok.decode(ids, false);
    if (back !== c.text) {
      badDecode++;
      if (badDecode <= 5) console.log('DECODE MISMATCH', JSON.stringify(c.text), JSON.stringify(back));
    }
  }
  const total = cases.length;
  console.log(`${total - bad} passed, ${bad} failed` + ` (decode round trip: ${total - badDecode}/${total})`);
  process.exit(bad === 0 && badDecode === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(1); });
