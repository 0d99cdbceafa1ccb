#!/bin/sh
# test_options.sh - lomo.h's LOMO_NO_* defines stay true (CONTENTS in lomo.h):
#  - the implementation compiles warning-free (-Wall -Wextra -pedantic -Werror)
#    with each of LOMO_NO_DATA, LOMO_NO_MC, LOMO_NO_TOKENIZER, LOMO_NO_GENERATE
#    alone, with none and with all of them, as C11 and as C++11 (and with
#    LOMO_MPI through mpicc where it is installed);
#  - each define really removes its part's declarations: a file calling one
#    of its functions fails to compile with the define, and compiles without.
# Run from the repository root (make test does).
CC=${CC:-cc}
CXX=${CXX:-c++}
WARN="-Wall -Wextra -pedantic -Werror"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
root=$(pwd)
pass=0; fail=0

ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; sed 's/^/     /' "$tmp/err" | head -n 20; }

printf '#define LOMO_IMPLEMENTATION\n#include "%s/lomo.h"\n' "$root" > "$tmp/impl.c"
cp "$tmp/impl.c" "$tmp/impl.cpp"

ALL="-DLOMO_NO_DATA -DLOMO_NO_MC -DLOMO_NO_TOKENIZER -DLOMO_NO_GENERATE"
for defs in "" "-DLOMO_NO_DATA" "-DLOMO_NO_MC" "-DLOMO_NO_TOKENIZER" "-DLOMO_NO_GENERATE" "$ALL"; do
    name=${defs:-"(none)"}
    if $CC -std=c11 $WARN -fopenmp -O0 $defs -c "$tmp/impl.c" -o "$tmp/x.o" 2> "$tmp/err"; then
        ok "C11   $name"; else bad "C11   $name"; fi
    if $CXX -std=c++11 $WARN -fopenmp -O0 $defs -c "$tmp/impl.cpp" -o "$tmp/x.o" 2> "$tmp/err"; then
        ok "C++11 $name"; else bad "C++11 $name"; fi
done
if command -v mpicc > /dev/null 2>&1; then
    for defs in "" "$ALL"; do
        if mpicc -std=c11 $WARN -O0 -DLOMO_MPI $defs -c "$tmp/impl.c" -o "$tmp/x.o" 2> "$tmp/err"; then
            ok "C11 LOMO_MPI ${defs:-(none)}"; else bad "C11 LOMO_MPI ${defs:-(none)}"; fi
    done
else
    echo "skip LOMO_MPI builds (no mpicc)"
fi

# define : a call into the part it removes
for pair in "LOMO_NO_DATA:return lomo_data_open(\"x\", 0) != 0;" \
            "LOMO_NO_DATA:return lomo_chat_template_detect(\"x\") != 0;" \
            "LOMO_NO_MC:return lomo_mc_open(\"x\", 1) != 0;" \
            "LOMO_NO_TOKENIZER:return lomo_tokenizer_load(\"x\") != 0;" \
            "LOMO_NO_GENERATE:return lomo_generate(0, 0, 0, 0, 0, 0);"; do
    def=${pair%%:*}; body=${pair#*:}
    printf '#include "%s/lomo.h"\nint main(void) { %s }\n' "$root" "$body" > "$tmp/use.c"
    if $CC -std=c11 $WARN -c "$tmp/use.c" -o "$tmp/x.o" 2> "$tmp/err"; then
        ok "without $def: $body"; else bad "without $def: $body (should compile)"; fi
    if $CC -std=c11 $WARN -D$def -c "$tmp/use.c" -o "$tmp/x.o" 2> "$tmp/err"; then
        echo "(it compiled)" > "$tmp/err"; bad "-D$def still declares it: $body"
    else ok "-D$def removes it: $body"; fi
done

echo "test_options: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
