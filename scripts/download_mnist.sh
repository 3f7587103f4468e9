#!/usr/bin/env bash
# Downloads the full MNIST (60,000 training and 10,000 test images) into DIR and checks
# the SHA-256 sums of the official files. Then: bittorch-mnist --data-dir DIR
# Usage: scripts/download_mnist.sh DIR
set -euo pipefail

if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
  echo "Usage: $0 DIR   (downloads the full MNIST into DIR)" >&2
  exit 2
fi
dir="$1"
mkdir -p "$dir"

mirrors=(
  "https://ossci-datasets.s3.amazonaws.com/mnist"
  "https://storage.googleapis.com/cvdf-datasets/mnist"
  "https://yann.lecun.com/exdb/mnist"
)
declare -A sha256=(
  [train-images-idx3-ubyte.gz]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
  [train-labels-idx1-ubyte.gz]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
  [t10k-images-idx3-ubyte.gz]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
  [t10k-labels-idx1-ubyte.gz]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
)

command -v curl >/dev/null || { echo "download_mnist.sh: curl is required" >&2; exit 1; }
for file in "${!sha256[@]}"; do
  target="$dir/$file"
  if [[ -f "$target" ]] && echo "${sha256[$file]}  $target" | sha256sum -c --quiet - 2>/dev/null; then
    echo "$file: already there, checksum ok"
    continue
  fi
  ok=0
  for mirror in "${mirrors[@]}"; do
    echo "$file: downloading from $mirror"
    if curl -fsSL --retry 2 -o "$target.part" "$mirror/$file" &&
       echo "${sha256[$file]}  $target.part" | sha256sum -c --quiet -; then
      mv "$target.part" "$target"
      ok=1
      break
    fi
    echo "$file: failed or wrong checksum from $mirror" >&2
    rm -f "$target.part"
  done
  [[ $ok -eq 1 ]] || { echo "download_mnist.sh: could not get $file from any mirror" >&2; exit 1; }
done
echo "MNIST is in $dir: run bittorch-mnist --data-dir $dir"
