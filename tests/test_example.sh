#!/bin/sh
# test_example.sh - examples/llama_ft as a user runs it (from the repo root,
# after make has built build/llama_ft and build/llama_ft_asan):
#  - stop at step k (--stop-after) and --resume to step n gives bitwise the
#    weights of an uninterrupted run to n (shuffled data, cosine schedule,
#    warmup, clipping by norm and value, weight decay), also across an epoch,
#    and with AdaLomo/AdamW state, bf16/f16 storage, stochastic rounding,
#    micro-batches and loss scaling;
#  - --eval prints the machine-readable eval_loss=<float> tokens=<int> line;
#  - --mc prints a multiple-choice accuracy;
#  - bad data (malformed line, id >= vocab, empty file, bad labels) is refused
#    with file:line and the value, and the ASan+UBSan build reports nothing.
BIN=${LLAMA_FT:-build/llama_ft}
ASAN=${LLAMA_FT_ASAN:-build/llama_ft_asan}
T=build/tmp_example
MODEL=tests/ref/llama_gqa          # a transformers-made Llama, vocab 61
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }

rm -rf $T; mkdir -p $T
# 40 lines of varying length, with some labels masked
awk 'BEGIN { srand(7); for (i = 0; i < 40; i++) { n = 5 + int(rand() * 14); s = "{\"input_ids\": [";
     l = "], \"labels\": [";
     for (j = 0; j < n; j++) { v = int(rand() * 61); s = s (j ? ", " : "") v; l = l (j ? ", " : "") (j < 2 ? -100 : v) }
     print s l "]}" } }' > $T/train.jsonl
head -n 8 $T/train.jsonl > $T/eval.jsonl

ARGS="--model $MODEL --data $T/train.jsonl --seq-len 16 --batch 4 --steps 16 --lr 0.05 --schedule cosine --warmup 3 \
      --clip-norm 0.5 --clip-value 0.05 --weight-decay 0.01 --seed 3"
$BIN $ARGS --out $T/full > $T/full.log 2>&1
check "[ -f $T/full/model.safetensors ]" "uninterrupted run wrote no checkpoint: $(tail -n 3 $T/full.log)"
for k in 6 12; do     # 10 steps make one epoch: k = 12 resumes inside the second epoch
    rm -rf $T/part.checkpoint $T/part
    $BIN $ARGS --out $T/part --stop-after $k > $T/part.log 2>&1
    check "grep -q 'stopping after $k steps' $T/part.log" "--stop-after $k did not stop: $(tail -n 2 $T/part.log)"
    $BIN $ARGS --out $T/part --resume $T/part.checkpoint > $T/resume.log 2>&1
    check "grep -q 'resuming from' $T/resume.log" "resume did not start: $(tail -n 3 $T/resume.log)"
    check "cmp -s $T/full/model.safetensors $T/part/model.safetensors" \
          "stop at $k + resume != uninterrupted run (weights differ)"
done
# the same with optimizer state, 16-bit storage, stochastic rounding, micro-batches, loss scaling
for extra in "--optimizer adalomo --dtype bf16 --stochastic-rounding --micro-batches 2 --lr 0.01" \
             "--optimizer adamw --dtype f16 --loss-scale 1024 --loss-scale-window 3 --lr 0.003"; do
    rm -rf $T/full2 $T/part2 $T/part2.checkpoint
    $BIN $ARGS $extra --out $T/full2 > $T/full2.log 2>&1
    $BIN $ARGS $extra --out $T/part2 --stop-after 7 > $T/part2.log 2>&1
    check "[ -f $T/part2.checkpoint/trainer.safetensors ]" "$extra: no trainer state in the checkpoint: $(tail -n 2 $T/part2.log)"
    $BIN $ARGS $extra --out $T/part2 --resume $T/part2.checkpoint > $T/resume2.log 2>&1
    check "cmp -s $T/full2/model.safetensors $T/part2/model.safetensors" \
          "$extra: stop + resume != uninterrupted run: $(tail -n 2 $T/resume2.log)"
done
check "[ \$(grep -c '^[0-9]' $T/full.log.csv) -eq 16 ]" "the CSV log must have one line per step"
check "grep -q 'step 16/16' $T/full.log" "progress line"

# eval: machine-readable line, and the same number twice
$BIN --model $T/full --eval $T/eval.jsonl --seq-len 16 --batch 4 > $T/eval.log 2>&1
check "grep -Eq '^eval_loss=[0-9]+\.[0-9]+ tokens=[0-9]+$' $T/eval.log" "eval line: $(tail -n 1 $T/eval.log)"
$BIN --model $T/full --eval $T/eval.jsonl --seq-len 16 --batch 2 > $T/eval2.log 2>&1
check "[ \"\$(tail -n 1 $T/eval.log)\" = \"\$(tail -n 1 $T/eval2.log)\" ]" "eval must not depend on the batch size"

# multiple choice
printf '{"prompt": [1, 2, 3], "candidates": [[4, 5], [9], [7, 8, 9]], "answer": 0}\n{"prompt": [10, 11], "candidates": [[12], [13]], "answer": 1}\n' > $T/mc.jsonl
$BIN --model $MODEL --mc $T/mc.jsonl --seq-len 8 --batch 2 > $T/mc.log 2>&1
check "grep -Eq 'multiple choice: [0-9]/2 correct, accuracy' $T/mc.log" "mc: $(tail -n 1 $T/mc.log)"

# bad inputs: refused with file:line and the value, no sanitizer report
printf '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 2,, 3]}\n' > $T/malformed.jsonl
printf '{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5]}\n{"input_ids": [7, 61, 2]}\n' > $T/vocab.jsonl
: > $T/empty.jsonl
printf '{"input_ids": [1, 2, 3], "labels": [1, 2]}\n' > $T/labels.jsonl
for case in "malformed.jsonl:2:" "vocab.jsonl:3: input_ids[1] = 61" "empty.jsonl: no examples" "labels.jsonl:1:"; do
    f=${case%%:*}
    want=${case#*:}; want="$f:$want"
    for b in $BIN $ASAN; do
        $b --model $MODEL --data $T/$f --seq-len 8 --batch 2 --steps 1 --out $T/x > $T/err.log 2>&1
        rc=$?
        check "[ $rc -ne 0 ] && grep -qF '$want' $T/err.log" "$b on $f: expected '$want', got: $(cat $T/err.log | head -n 3)"
        check "! grep -q 'Sanitizer' $T/err.log" "$b on $f: sanitizer report"
    done
done
$ASAN --model $MODEL --data $T/train.jsonl --seq-len 8 --batch 2 --steps 2 --out $T/asan_ok > $T/asan.log 2>&1
check "[ \$? -eq 0 ] && ! grep -q Sanitizer $T/asan.log" "ASan build on good data: $(tail -n 3 $T/asan.log)"

echo "test_example: $pass passed, $fail failed"
[ $fail -eq 0 ]
