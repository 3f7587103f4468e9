#!/usr/bin/env bash
# The tree is formatted as .clang-format says: lists every C++/CUDA source that clang-format
# would change (fix with: clang-format -i <file>). Skips with a message without clang-format.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if ! command -v clang-format >/dev/null; then
  echo "clang-format not found: format check skipped"
  exit 0
fi
mapfile -t files < <(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh' 2>/dev/null ||
  find include src apps bench tests \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \))
unformatted=()
for file in "${files[@]}"; do
  clang-format --dry-run --Werror "$file" >/dev/null 2>&1 || unformatted+=("$file")
done
if ((${#unformatted[@]})); then
  echo "not formatted as .clang-format says ($(clang-format --version)):"
  printf '  %s\n' "${unformatted[@]}"
  exit 1
fi
echo "${#files[@]} files formatted"
