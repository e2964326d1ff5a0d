#!/bin/sh
# check_format.sh: every C/C++ source of the project matches .clang-format.
set -eu
top=$1
command -v clang-format >/dev/null || { echo "clang-format is not installed"; exit 1; }
cd "$top"
# Tracked files when this is a git checkout (work in progress of others is not judged), else all.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    files=$(git ls-files -- 'include/*' 'lib/*' 'backends/*' 'examples/*' 'test/*' |
            grep -E '\.(c|h|cpp|cu)$' | grep -v '^test/data/' | sort)
else
    files=$(find include lib backends examples test -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.cu' \) \
            -not -path 'test/data/*' -not -path '*/node_modules/*' | sort)
fi
clang-format --dry-run --Werror $files
echo "$(echo "$files" | wc -l) files formatted per .clang-format"
