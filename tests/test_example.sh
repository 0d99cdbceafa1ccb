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
#    with file:line and the value, and the ASan+UBSan build reports nothing;
#  - the CLI refuses what it cannot mean (bad numbers, unwritable --out,
#    nothing to evaluate, MC items longer than --seq-len, B x T too large),
#    eval does not depend on the batch size and matches the in-training eval,
#    --save-every saves the last step, SIGTERM leaves a resumable checkpoint,
#    a resumed CSV log has no duplicate rows, and non-finite weights or a run
#    of skipped steps stop training without touching the last checkpoint;
#  - malformed JSON lines for --tokenize, --detokenize and --prompt-ids are
#    refused with file:line and their reason.
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


# ---- the CLI refuses what it cannot mean (issue 10, points 9-15) ----
# numbers are parsed whole and range-checked; the error names the flag and the value
for fv in "--lr abc" "--lr nan" "--lr -1" "--steps -3" "--steps 0" "--batch 2x" "--batch 0" "--seq-len 1" \
          "--epochs 1.5" "--seed -1" "--log-every 0" "--clip-norm inf" "--loss-scale 0" "--micro-batches -2" \
          "--save-every 99999999999" "--max-skipped -1" "--warmup 1e99"; do
    $BIN --model $MODEL --data $T/train.jsonl --out $T/x $fv > $T/err.log 2>&1
    rc=$?
    check "[ $rc -eq 2 ] && grep -qF -- 'llama_ft: $fv:' $T/err.log && ! grep -q '^step ' $T/err.log" \
          "'$fv' must be refused naming the flag (rc $rc): $(head -n 2 $T/err.log)"
done
# --seq-len above max_position_embeddings (64): a warning, not a refusal
$BIN --model $MODEL --data $T/train.jsonl --seq-len 80 --batch 2 --steps 1 --out $T/long > $T/long.log 2>&1
check "[ \$? -eq 0 ] && grep -q 'warning: --seq-len 80 is longer than the model.s max_position_embeddings 64' $T/long.log" \
      "--seq-len 80 > 64: $(head -n 3 $T/long.log)"
# an unwritable --out is found before training
$BIN --model $MODEL --data $T/train.jsonl --seq-len 8 --batch 2 --steps 3 --out $T/no/such/dir/out > $T/unw.log 2>&1
rc=$?
check "[ $rc -ne 0 ] && grep -q -- '--out $T/no/such/dir/out: cannot write' $T/unw.log && ! grep -q '^step ' $T/unw.log" \
      "unwritable --out must fail before training (rc $rc): $(tail -n 2 $T/unw.log)"
: > $T/afile
$BIN --model $MODEL --data $T/train.jsonl --seq-len 8 --batch 2 --steps 3 --out $T/afile > $T/unw.log 2>&1
rc=$?
check "[ $rc -ne 0 ] && grep -q -- '--out $T/afile exists and is not a directory' $T/unw.log && ! grep -q '^step ' $T/unw.log" \
      "--out naming a file must fail before training (rc $rc): $(tail -n 2 $T/unw.log)"
# the in-training eval and plain --eval print the same number for the same model, file and seq-len
$BIN $ARGS --eval-data $T/eval.jsonl --out $T/full_e > $T/full_e.log 2>&1
$BIN --model $T/full_e --eval $T/eval.jsonl --seq-len 16 --batch 3 > $T/eval3.log 2>&1
check "[ \"\$(grep '^eval_loss=' $T/full_e.log | tail -n 1)\" = \"\$(tail -n 1 $T/eval3.log)\" ]" \
      "in-training eval $(grep '^eval_loss=' $T/full_e.log | tail -n 1) != --eval $(tail -n 1 $T/eval3.log)"
check "cmp -s $T/full/model.safetensors $T/full_e/model.safetensors" "--eval-data changed the trained weights"
# --eval without --seq-len: the model's context (max_position_embeddings 64, under the cap)
$BIN --model $MODEL --eval $T/eval.jsonl --batch 2 > $T/evalctx.log 2>&1
check "grep -q '^eval: seq-len 64 ' $T/evalctx.log && grep -Eq '^eval_loss=[0-9.]+ tokens=[0-9]+$' $T/evalctx.log" \
      "--eval without --seq-len: $(tail -n 2 $T/evalctx.log)"
# nothing counts: an error, not eval_loss=0.000000 tokens=0
printf '{"input_ids": [5]}\n{"input_ids": [1, 2, 3], "labels": [-100, -100, -100]}\n' > $T/nocount.jsonl
$BIN --model $MODEL --eval $T/nocount.jsonl --seq-len 8 --batch 2 > $T/nocount.log 2>&1
rc=$?
check "[ $rc -ne 0 ] && grep -q 'nocount.jsonl: no position counts' $T/nocount.log && ! grep -q '^eval_loss' $T/nocount.log" \
      "eval with nothing counted (rc $rc): $(tail -n 2 $T/nocount.log)"
# a multiple-choice item longer than --seq-len is an error, not silently cut; no leak on any error path
printf '{"prompt": [1, 2, 3, 4, 5, 6], "candidates": [[4, 5], [9]], "answer": 0}\n' > $T/mclong.jsonl
printf '{"prompt": [1, 2], "candidates": [[4, 5], [9]], "answer": 7}\n' > $T/mcbad.jsonl
for b in $BIN $ASAN; do
    $b --model $MODEL --mc $T/mclong.jsonl --seq-len 7 --batch 2 > $T/mcl.log 2>&1
    rc=$?
    check "[ $rc -ne 0 ] && grep -q 'mclong.jsonl: item 0 (counting from 0): prompt (6 tokens) + candidate 0 (2 tokens) = 8 tokens is longer than --seq-len 7' $T/mcl.log && ! grep -q 'multiple choice:' $T/mcl.log" \
          "$b: mc item longer than --seq-len (rc $rc): $(tail -n 2 $T/mcl.log)"
    check "! grep -q 'Sanitizer' $T/mcl.log" "$b: mc too long: sanitizer report: $(grep -A3 Sanitizer $T/mcl.log | head -n 5)"
    $b --model $MODEL --mc $T/mcbad.jsonl --seq-len 8 --batch 2 > $T/mcb.log 2>&1
    rc=$?
    check "[ $rc -ne 0 ] && ! grep -q 'Sanitizer' $T/mcb.log" "$b: bad mc file (rc $rc): $(grep -A3 Sanitizer $T/mcb.log | head -n 5)"
    $b --model $MODEL --mc $T/mc.jsonl --seq-len 8 --batch 2 > $T/mcok.log 2>&1
    check "[ \$? -eq 0 ] && ! grep -q 'Sanitizer' $T/mcok.log" "$b: good mc: $(tail -n 3 $T/mcok.log)"
done
# B x T beyond what the trainer can index: an error naming the sizes, never a crash
for b in $BIN $ASAN; do
    $b --model $MODEL --mc $T/mc.jsonl --batch 65537 --seq-len 65536 > $T/huge.log 2>&1
    rc=$?
    check "[ $rc -eq 1 ] && grep -q '65537 x 65536' $T/huge.log && ! grep -q 'Sanitizer' $T/huge.log" \
          "$b: --batch 65537 --seq-len 65536 (rc $rc): $(tail -n 2 $T/huge.log)"
    $b --model $MODEL --data $T/train.jsonl --batch 65536 --seq-len 65536 --steps 1 --out $T/x > $T/huge.log 2>&1
    rc=$?
    check "[ $rc -eq 1 ] && grep -q '65536 x 65536' $T/huge.log && grep -q 'bytes' $T/huge.log && ! grep -q 'Sanitizer' $T/huge.log" \
          "$b: --batch 65536 --seq-len 65536 (rc $rc): $(tail -n 2 $T/huge.log)"
done
# a failed --resume says why once: no bare "llama_ft: --resume" line after the real error
$BIN $ARGS --out $T/x --resume $T/no_such_checkpoint > $T/res.log 2>&1
check "[ \$? -ne 0 ] && grep -q 'no_such_checkpoint' $T/res.log && ! grep -qx 'llama_ft: --resume' $T/res.log" \
      "failed --resume: $(cat $T/res.log | head -n 3)"
# a trainer state for another optimizer is refused by name
$BIN $ARGS --optimizer adamw --lr 0.003 --out $T/optm --stop-after 2 > $T/optm.log 2>&1
$BIN $ARGS --optimizer lomo --out $T/optm --resume $T/optm.checkpoint > $T/optm2.log 2>&1
check "[ \$? -ne 0 ] && grep -q 'trainer state is for optimizer adamw, this trainer runs lomo' $T/optm2.log" \
      "optimizer mismatch by name: $(tail -n 1 $T/optm2.log)"
# --save-every also saves at the last step; a resume with eval data does not claim "before training"
rm -rf $T/se $T/se.checkpoint
$BIN $ARGS --save-every 5 --out $T/se > $T/se.log 2>&1
check "grep -q 'saved resumable checkpoint $T/se.checkpoint (step 16)' $T/se.log && grep -q '\"step\": 16,' $T/se.checkpoint/trainer_state.json" \
      "--save-every 5 --steps 16 must save at step 16: $(grep saved $T/se.log | tail -n 2)"
rm -rf $T/r1 $T/r1.checkpoint $T/c6
$BIN $ARGS --out $T/r1 --stop-after 6 > $T/r1.log 2>&1
cp -r $T/r1.checkpoint $T/c6
$BIN $ARGS --out $T/r1 --resume $T/r1.checkpoint --stop-after 4 --eval-data $T/eval.jsonl > $T/r2.log 2>&1
check "grep -q 'eval at step 6 (resumed)' $T/r2.log && ! grep -q 'eval before training' $T/r2.log" \
      "resume eval line: $(grep eval $T/r2.log | head -n 2)"
# the run "crashed" after step 10 with its last checkpoint at step 6: the CSV keeps no duplicate rows
$BIN $ARGS --out $T/r1 --resume $T/c6 > $T/r3.log 2>&1
check "[ \$(grep -c '^[0-9]' $T/r1.log.csv) -eq 16 ] && [ -z \"\$(cut -d, -f1 $T/r1.log.csv | sort | uniq -d)\" ] && [ \$(grep -c '^step,' $T/r1.log.csv) -eq 1 ]" \
      "after --resume the CSV must have steps 1..16 once: $(cut -d, -f1 $T/r1.log.csv | tr '\n' ' ')"
check "cmp -s $T/full/model.safetensors $T/r1/model.safetensors" "resume from an older checkpoint != uninterrupted run"
# SIGTERM: the step finishes, a resumable checkpoint is written, exit 143; stdout to a file is not empty
rm -rf $T/sig $T/sig.checkpoint
$BIN --model $MODEL --data $T/train.jsonl --seq-len 16 --batch 4 --steps 200000 --lr 0.01 --log-every 100000 --out $T/sig > $T/sig.log 2>&1 &
pid=$!
n=0; while [ $n -lt 600 ] && ! grep -q '^3,' $T/sig.log.csv 2>/dev/null; do sleep 0.1; n=$((n + 1)); done
kill -TERM $pid; wait $pid; rc=$?
k=$(sed -n 's/.*SIGTERM at step \([0-9]*\).*/\1/p' $T/sig.log)
check "[ $rc -eq 143 ] && [ -n \"$k\" ] && grep -q \"\\\"step\\\": $k,\" $T/sig.checkpoint/trainer_state.json && [ \"\$(tail -n 1 $T/sig.log.csv | cut -d, -f1)\" = \"$k\" ]" \
      "SIGTERM (rc $rc, step '$k'): $(tail -n 2 $T/sig.log)"
check "grep -q '^step 1/200000' $T/sig.log" "stdout redirected to a file must be written line by line: $(head -c 300 $T/sig.log)"
$BIN --model $MODEL --data $T/train.jsonl --seq-len 16 --batch 4 --steps 200000 --lr 0.01 --log-every 100000 --out $T/sig --resume $T/sig.checkpoint --stop-after 1 > $T/sig2.log 2>&1
check "[ \$? -eq 0 ] && grep -q \"resuming from $T/sig.checkpoint at step $k \" $T/sig2.log" "resume after SIGTERM: $(tail -n 2 $T/sig2.log)"

# ---- divergence never costs the last good checkpoint (point 8) ----
# f16, a good checkpoint at step 3, then lr 1e6 unclipped: Inf weights at step 4 stop the run, naming the step
# and the tensor; the step-3 checkpoint is untouched and no model is exported
rm -rf $T/nf $T/nf.checkpoint $T/nf3
F16="--model $MODEL --data $T/train.jsonl --seq-len 16 --batch 4 --steps 16 --dtype f16 --seed 3"
$BIN $F16 --lr 0.01 --out $T/nf --stop-after 3 > $T/nf1.log 2>&1
cp -r $T/nf.checkpoint $T/nf3
$BIN $F16 --lr 1e6 --clip-norm 0 --save-every 1 --out $T/nf --resume $T/nf.checkpoint > $T/nf2.log 2>&1
rc=$?
check "[ $rc -ne 0 ] && grep -q 'step 4: the update (lr 1e+06) left NaN/Inf values in [a-z_.0-9]*weight' $T/nf2.log" \
      "non-finite weights must stop the run naming step 4 and the tensor (rc $rc): $(tail -n 2 $T/nf2.log)"
check "cmp -s $T/nf3/model.safetensors $T/nf.checkpoint/model.safetensors && [ ! -e $T/nf/model.safetensors ]" \
      "after non-finite weights the last good checkpoint must stay and nothing be exported"
# lr 1e38: every step after the first is skipped (NaN loss); 5 in a row stop the run, no checkpoint of them
rm -rf $T/sk $T/sk.checkpoint
$BIN --model $MODEL --data $T/train.jsonl --seq-len 16 --batch 4 --steps 40 --lr 1e38 --clip-norm 0 --save-every 4 --out $T/sk > $T/sk.log 2>&1
rc=$?
check "[ $rc -ne 0 ] && grep -q '5 consecutive steps skipped' $T/sk.log && [ ! -e $T/sk/model.safetensors ] && ! grep -q 'saved resumable checkpoint' $T/sk.log" \
      "consecutive skipped steps must stop the run (rc $rc): $(tail -n 2 $T/sk.log)"
$BIN --model $MODEL --data $T/train.jsonl --seq-len 16 --batch 4 --steps 40 --lr 1e38 --clip-norm 0 --max-skipped 2 --out $T/sk > $T/sk2.log 2>&1
check "[ \$? -ne 0 ] && grep -q 'step 3: 2 consecutive steps skipped' $T/sk2.log" "--max-skipped 2: $(tail -n 1 $T/sk2.log)"

# ---- JSON lines in --tokenize / --detokenize / --prompt-ids (read with lomo.h's JSON reader) ----
# each malformed line is refused with file:line and its reason, exit 1; a good line still works; no sanitizer report
TOK=tests/ref/tok/llama3.json
jl() {   # jl FLAG MODEL LINE WANT [extra flags]: WANT empty = the line must be accepted
    printf '%s\n' "$3" > $T/line.in
    for b in $BIN $ASAN; do
        $b --model $2 $1 $T/line.in $5 > $T/line.out 2> $T/line.err
        rc=$?
        if [ -z "$4" ]; then
            if [ $rc -eq 0 ] && grep -q . $T/line.out && ! grep -q Sanitizer $T/line.err; then ok
            else bad "$b $1 '$3' must be accepted (exit $rc): $(head -n 2 $T/line.err)"; fi
        elif [ $rc -eq 1 ] && grep -qF -- "line.in:1: $4" $T/line.err && ! grep -q Sanitizer $T/line.err; then ok
        else bad "$b $1 '$3': expected 'line.in:1: $4' (exit $rc): $(head -n 2 $T/line.err)"; fi
    done
}
jl --tokenize $TOK '[1]' 'expected a JSON object {"text": ...}'
jl --tokenize $TOK '{"txt": 1}' 'missing "text"'
jl --tokenize $TOK '{"text": 1}' '"text" is not a string'
jl --tokenize $TOK '{"text": "a",}' 'invalid JSON'
jl --tokenize $TOK '{"text": "a\ud800"}' 'invalid JSON'
jl --tokenize $TOK '{"a": [1, {"b": null}], "text": "hi \u00e9\n"}' ''
printf '{"text": "hi \\u00e9\\n"}\n' > $T/tok1.in
$BIN --model $TOK --tokenize $T/tok1.in > $T/tok1.out 2>&1
check "cmp -s $T/line.out $T/tok1.out" "the other members of a {\"text\"} line changed its ids: $(cat $T/line.out) vs $(cat $T/tok1.out)"
jl --detokenize $TOK '{"x": [1]}' 'expected a JSON array of token ids'
jl --detokenize $TOK '[1,]' 'trailing comma'
jl --detokenize $TOK '[1 2]' "expected ',' or ']'"
jl --detokenize $TOK '[1, 2' "expected ',' or ']'"
jl --detokenize $TOK '[1,' 'expected one JSON array per line'
jl --detokenize $TOK '[1] 2' 'expected one JSON array per line'
jl --detokenize $TOK '[1, x]' 'expected integer ids in [0, vocab size)'
jl --detokenize $TOK '[1.5]' 'expected integer ids in [0, vocab size)'
jl --detokenize $TOK '[99999999]' 'expected integer ids in [0, vocab size)'
jl --detokenize $TOK '[-1]' 'expected integer ids in [0, vocab size)'
jl --detokenize $TOK ' [ 40 , 41 ] ' ''
jl --prompt-ids $MODEL '[1.5]' 'ids must be integers' '--max-new-tokens 2'
jl --prompt-ids $MODEL '[3, 61]' 'an id is outside the vocabulary' '--max-new-tokens 2'
jl --prompt-ids $MODEL '[1] x' 'text after the array' '--max-new-tokens 2'
jl --prompt-ids $MODEL '[]' 'the prompt is empty' '--max-new-tokens 2'
jl --prompt-ids $MODEL '{"ids": [1]}' 'expected a JSON array of integers' '--max-new-tokens 2'
jl --prompt-ids $MODEL '[1, "2"]' 'expected a JSON array of integers' '--max-new-tokens 2'
jl --prompt-ids $MODEL '[1, 2, 3]' '' '--max-new-tokens 2'
check "grep -Eqx '\[[0-9]+, [0-9]+\]' $T/line.out" "--prompt-ids --max-new-tokens 2: $(cat $T/line.out)"

echo "test_example: $pass passed, $fail failed"
[ $fail -eq 0 ]
