#!/bin/sh
# check_doc_paths.sh SOURCE_ROOT: fails when a document, comment or script of the repository points
# at something a user of the repository does not have: the authors' machine (/work/..., a
# ../shared folder beside the checkout) or the specification kept there ("spec §N",
# deepseek-models.md). The repository's own account of the model is docs/model.md.
set -eu
cd "$1"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files -- README.md meson.build meson_options.txt docs include lib backends \
        examples pkgconfig test .ci)
else
    files=$(find README.md meson.build meson_options.txt docs include lib backends examples \
        pkgconfig test .ci -type f)
fi
# Generated or binary data is left out: test data, the ABI dump (it records build paths),
# models, npm packages; and this script, which names the patterns.
files=$(echo "$files" |
    grep -v -E '^test/data/|^test/abi/|/node_modules/|\.(r1m|zst|f32|bin)$|^test/check_doc_paths\.sh$')
hits=$(echo "$files" | tr '\n' '\0' |
    xargs -0 grep -n -I -E '/work/|\.\./shared|shared/spec|spec §|deepseek-models\.md' || true)
if [ -n "$hits" ]; then
    echo "$hits"
    echo "FAIL: the lines above point outside the repository; say what is needed in its own docs"
    echo "(the model's mathematics: docs/model.md, cited as docs/model.md §N)"
    exit 1
fi
echo "$(echo "$files" | wc -l) files point only inside the repository"
