#!/usr/bin/env bash
# Seed corpora for `make fuzz`: one valid file of every format tmac reads, made from the tiny
# test model, so the fuzzers start from deep inside each parser.
set -euo pipefail
cd "$(dirname "$0")/.."
c=fuzz/corpus
mkdir -p $c/model_file $c/tokenizer $c/tokenizer_bin $c/capi build
tmac="cargo run --quiet --release --bin tmac --"
cargo run --quiet --release --example tiny_model -- $c/model_file/tiny.gguf
$tmac quantize $c/model_file/tiny.gguf $c/model_file/tiny.tmac --type tq 2>/dev/null
$tmac quantize $c/model_file/tiny.gguf $c/model_file/tiny-q3.tmac --type q3 --group 16 2>/dev/null
$tmac export --llama2c $c/model_file/tiny.gguf $c/model_file/tiny.bin build/fuzz-tokenizer.bin 2>/dev/null
for t in v1 v2 q4v1; do
  $tmac quantize $c/model_file/tiny.bin $c/model_file/tiny.$t -z build/fuzz-tokenizer.bin --type $t 2>/dev/null
done
# the tokenizer_bin target reads the vocabulary size from its first two bytes
python3 - <<'PY'
import struct
d = open("build/fuzz-tokenizer.bin", "rb").read()
n, p = 0, 4
while p < len(d):
    p += 8 + struct.unpack_from("<i", d, p + 4)[0]
    n += 1
open("fuzz/corpus/tokenizer_bin/seed", "wb").write(struct.pack("<H", n) + d)
PY
printf 'Hello <|im_start|>user\n 123 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87' > $c/tokenizer/seed
printf '\x10\x04\x00hi\x02\x08\x00\x01hey\x02\x02\x00\x03\x00\x00' > $c/capi/seed
