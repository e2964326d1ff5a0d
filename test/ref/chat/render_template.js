// render_template.js: reference chat renderings from the real DeepSeek chat_template strings.
//
// Usage: npm install && node render_template.js [out.json]
// Default output: ../../data/chat/renderings.json, an array of
// {"flavour": "r1"|"v3", "bos": ..., "messages": [{"role", "content"}], "add_generation_prompt",
//  "expected"} that test/test_chat.c compares byte for byte with lib/text/chat.c.
//
// The templates are rendered by Hugging Face's own Jinja engine (@huggingface/jinja), so the
// expectations come from the template text, not from our reading of it:
// - V3: the chat_template of DeepSeek-V3's tokenizer_config.json, committed as
//   test/data/tokenizer/tokenizer_config.json.
// - R1: the chat_template of the revised deepseek-ai/DeepSeek-R1 tokenizer_config.json (the
//   revision that joins system prompts with "\n\n" and opens "<think>\n" in the generation
//   prompt), as quoted in a public template table labelled "deepseek-r1". Only its system, user
//   and assistant-text branches are exercised; the tool branches are out of libr1's scope.
'use strict';

const fs = require('fs');
const path = require('path');
const { Template } = require('@huggingface/jinja');

const here = __dirname;
const outPath = process.argv[2] || path.join(here, '../../data/chat/renderings.json');
const v3ConfigPath = path.join(here, '../../data/tokenizer/tokenizer_config.json');

const R1_TEMPLATE = [
    String.raw`{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}`,
    String.raw`{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}`,
    String.raw`{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}`,
    String.raw`{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}`,
    String.raw`{%- else %}{% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %}`,
    String.raw`{%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}`,
    String.raw`{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}`,
    String.raw`{{'<｜User｜>' + message['content']}}{%- endif %}`,
    String.raw`{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}`,
    String.raw`{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}{%- if message['content'] is none %}`,
    String.raw`{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '` + '```json' + String.raw`' + '\n' + tool['function']['arguments'] + '\n' + '` + '```' + String.raw`' + '<｜tool▁call▁end｜>'}}`,
    String.raw`{%- else %}{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '` + '```json' + String.raw`' + '\n' + tool['function']['arguments'] + '\n' + '` + '```' + String.raw`' + '<｜tool▁call▁end｜>'}}`,
    String.raw`{%- endif %}{%- set ns.is_first = true -%}{%- else %}`,
    String.raw`{{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '` + '```json' + String.raw`' + '\n' + tool['function']['arguments'] + '\n' + '` + '```' + String.raw`' + '<｜tool▁call▁end｜>'}}`,
    String.raw`{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}`,
    String.raw`{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %}`,
    String.raw`{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}`,
    String.raw`{%- else %}{% set content = message['content'] %}{% if '</think>' in content %}`,
    String.raw`{% set content = content.split('</think>')[-1] %}{% endif %}`,
    String.raw`{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}`,
    String.raw`{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}`,
    String.raw`{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}`,
    String.raw`{%- set ns.is_output_first = false %}{%- else %}`,
    String.raw`{{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %}`,
    String.raw`{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}`,
    String.raw`{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %}`,
].join('');

const BOS = '<｜begin▁of▁sentence｜>';
const templates = {
    r1: new Template(R1_TEMPLATE),
    v3: new Template(JSON.parse(fs.readFileSync(v3ConfigPath, 'utf8')).chat_template),
};

const S = (content) => ({ role: 'system', content });
const U = (content) => ({ role: 'user', content });
const A = (content) => ({ role: 'assistant', content });

// Conversations: [messages, add_generation_prompt]. Each is rendered with both templates.
const conversations = [
    [[U('What is 1+1?')], true],
    [[S('You are a helpful assistant.'), U('What is 1+1?')], true],
    [[U('What is 1+1?'), A('<think>\nSimple arithmetic.\n</think>\n\n1+1 = 2.'), U('And 2+2?')], true],
    [[S('First rule.'), S('Second rule.'), U('Hi')], true],
    [[U('Hi'), S('A system prompt given late.'), U('Again')], true],
    [[S('a'), U('q1'), S('b'), A('r1'), S('c'), U('q2')], true],
    [[U('q'), A('<think>one</think>two</think>\n\nthree')], false],
    [[U('q'), A('<think>one</think>two</think>\n\nthree'), U('next')], true],
    [[U('q'), A('no reasoning here'), U('more')], true],
    [[U('q'), A('</think>'), U('more')], true],
    [[U('')], true],
    [[S(''), U('x')], true],
    [[S(''), S(''), U('x')], true],
    [[U('q'), A(''), U('r')], true],
    [[U('你好，世界！请用中文回答。'), A('<think>\n用户在打招呼。\n</think>\n\n你好！😀 Ça va? Ελληνικά, עברית, e\u0301'), U('🧪 ∑ x² — “quotes”')], true],
    [[U('Text with <｜User｜> and <｜Assistant｜> written literally.')], true],
    [[U('q'), A('<think>\nunfinished reasoning without a close tag')], true],
    [[U('q'), A('<think>\nreasoning\n</think>\n\nanswer')], false],
    [[U('q'), A('<think>\nreasoning\n</think>\n\nanswer')], true],
    [[], true],
    [[], false],
    [[S('sys'), U('q1'), A('<think>\nr1\n</think>\n\na1'), U('q2'), A('<think>\nr2\n</think>\n\na2'),
      U('q3'), A('<think>\nr3\n</think>\n\na3'), U('q4')], true],
    [[U('  \n\t leading and trailing whitespace \n\n')], true],
    [[U('q'), A('<think>x</think>\n\n  spaced answer  \n\n</think>\n\n')], true],
    [[U('user mentions </think> in the question')], true],
    [[S('system mentions </think> too'), U('q')], true],
    [[A('assistant speaks first'), U('then the user')], true],
    [[U('one'), U('two'), U('three')], true],
    [[U('Line one\nLine two\r\nLine three')], false],
];

const out = [];
for (const [messages, addGen] of conversations) {
    for (const flavour of ['r1', 'v3']) {
        const expected = templates[flavour].render({
            messages,
            add_generation_prompt: addGen,
            bos_token: BOS,
        });
        out.push({ flavour, bos: BOS, messages, add_generation_prompt: addGen, expected });
    }
}
fs.mkdirSync(path.dirname(outPath), { recursive: true });
fs.writeFileSync(outPath, JSON.stringify(out, null, 1) + '\n');
console.log(`wrote ${out.length} renderings to ${outPath}`);
