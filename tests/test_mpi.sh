#!/bin/sh
# test_mpi.sh - parameter sharding over MPI on this CPU: build/test_mpi under
# mpirun -np 2 and -np 3 (equal to one process on the whole batch), then two
# failure drills: a rank that dies and a rank that stops answering must end
# the job with a clear message, not hang it.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
BIN=${TEST_MPI:-build/test_mpi}
RUN="mpirun --oversubscribe --bind-to none"
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
T=build/tmp_test_mpi; mkdir -p $T
for np in 2 3; do
    timeout 300 $RUN -np $np $BIN > $T/np$np.log 2>&1
    rc=$?
    grep -E "np=|mismatch|sharded save|sharded AdamW|parameter bytes|^test_mpi" $T/np$np.log | sort -u
    line=$(grep -E "^test_mpi_np$np: [0-9]+ passed, [0-9]+ failed" $T/np$np.log)
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/'); f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed$/\1/')
    if [ -n "$line" ] && [ $rc -eq 0 ]; then pass=$((pass + p)); fail=$((fail + f)); else bad "np=$np: rc=$rc"; tail -n 20 $T/np$np.log; fi
done
# a rank dies: mpirun ends the job (nonzero), well before any timeout
start=$(date +%s)
LOMO_COMM_TIMEOUT=120 timeout 100 $RUN -np 2 -x LOMO_TEST_DIE=1 -x LOMO_COMM_TIMEOUT $BIN > $T/die.log 2>&1
rc=$?; took=$(( $(date +%s) - start ))
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $took -lt 60 ]; then ok; echo "a dead rank ends the job in ${took}s (rc $rc)"; else bad "dead rank: rc=$rc after ${took}s"; tail -n 5 $T/die.log; fi
# a rank stops answering: the others time out with a message and abort the job
start=$(date +%s)
timeout 100 $RUN -np 2 -x LOMO_TEST_HANG=1 -x LOMO_COMM_TIMEOUT=3 $BIN > $T/hang.log 2>&1
rc=$?; took=$(( $(date +%s) - start ))
if [ $rc -ne 0 ] && [ $took -lt 60 ] && grep -q "no answer from the other ranks after 3 s" $T/hang.log; then
    ok; echo "a silent rank: $(grep -o 'MPI all_gather: no answer[^:]*' $T/hang.log | head -n 1) (job ended in ${took}s)"
else bad "silent rank: rc=$rc after ${took}s"; tail -n 5 $T/hang.log; fi
# the example under mpirun: --shard with --batch 2 on 2 ranks == one process with --batch 4
EX=${LLAMA_FT_MPI:-build/llama_ft_mpi}
if [ -x "$EX" ] && [ -x build/llama_ft ]; then
    awk 'BEGIN { srand(7); for (i = 0; i < 40; i++) { n = 5 + int(rand() * 14); s = "{\"input_ids\": [";
         for (j = 0; j < n; j++) s = s (j ? ", " : "") int(rand() * 61); print s "]}" } }' > $T/train.jsonl
    ARGS="--model tests/ref/llama_gqa --data $T/train.jsonl --seq-len 16 --steps 6 --lr 0.05 --schedule cosine --clip-norm 0.5"
    rm -rf $T/ex_mpi $T/ex_one
    timeout 300 $RUN -np 2 $EX $ARGS --batch 2 --shard --out $T/ex_mpi > $T/ex_mpi.log 2>&1
    build/llama_ft $ARGS --batch 4 --out $T/ex_one > $T/ex_one.log 2>&1
    res=$(python3 - "$T/ex_mpi/model.safetensors" "$T/ex_one/model.safetensors" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: struct.unpack("<%df" % ((v["data_offsets"][1] - v["data_offsets"][0]) // 4), d[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
try:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    print("%.3g" % max(max(abs(x - y) for x, y in zip(a[k], b[k])) / max(abs(y) for y in b[k]) for k in b))
except Exception as e:
    print("error", e)
PY
)
    if python3 -c "import sys; sys.exit(0 if float('$res') <= 1e-6 else 1)" 2>/dev/null; then
        ok; echo "llama_ft_mpi -np 2 --shard --batch 2 == llama_ft --batch 4: max rel diff $res"
    else bad "llama_ft under mpirun: $res"; tail -n 5 $T/ex_mpi.log; fi
fi
echo "test_mpi: $pass passed, $fail failed"
[ $fail -eq 0 ]
