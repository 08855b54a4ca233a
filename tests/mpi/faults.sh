#!/usr/bin/env bash
# Faults under mpirun: nothing hangs, the job ends non-zero, checkpoints stay whole.
#   faults.sh BIN_DIR WORK_DIR
# 1. SIGKILL one rank of `mpirun -np 2 mnist_train` mid-run (after the first training
#    checkpoint): mpirun must end the job non-zero within 30 s, no rank may be left, the
#    checkpoints on disk must load, and `mpirun ... --resume OUT/last.kitnn` must end with
#    the uninterrupted run's weights, bit for bit.
# 2. One rank throws (its data folder does not exist): the job ends non-zero within 30 s
#    with that rank's message (the other rank is already waiting for it).
# 3. Ranks that disagree (another --seed, another --limit) are refused with a clear
#    message naming the setting, before any training.
set -uo pipefail
bin=$1 work=$2
source "$(dirname "$0")/common.sh"
rm -rf "$work" && mkdir -p "$work"
synthetic "$work/data" 2000
common=(--model keck --epochs 5 --threads 1 --progress plain)
base=("${common[@]}" --seed 5)
args=("${base[@]}" --data "$work/data")
t0=$(date +%s)

"${MPIRUN[@]}" -np 2 "$bin/mnist_train" "${args[@]}" --out "$work/full" > "$work/full.log" 2>&1 ||
  { tail "$work/full.log"; fail "the uninterrupted run failed"; }

# 1. SIGKILL one rank.
"${MPIRUN[@]}" -np 2 "$bin/mnist_train" "${args[@]}" --out "$work/part" > "$work/part.log" 2>&1 &
mpid=$!
for _ in $(seq 1 600); do [[ -f "$work/part/last.kitnn" ]] && break; sleep 0.05; done
[[ -f "$work/part/last.kitnn" ]] || fail "no training checkpoint after 30 s"
ranks=($(pgrep -P "$mpid"))  # mpirun's children: the two ranks
[[ ${#ranks[@]} -eq 2 ]] || fail "expected 2 rank processes under mpirun $mpid, found: ${ranks[*]:-none}"
victim=${ranks[1]}
kill -KILL "$victim"
killed_at=$(date +%s%N)
wait "$mpid"
rc=$?
# The job has ended when mpirun has exited AND no rank process is left (mpirun may exit
# while the other rank is still going down).
alive() { for p in "${ranks[@]}"; do kill -0 "$p" 2> /dev/null && return 0; done; return 1; }
while alive && (( ($(date +%s%N) - killed_at) / 1000000 < 30000 )); do sleep 0.05; done
took=$(( ($(date +%s%N) - killed_at) / 1000000 ))  # ms
echo "killed rank pid $victim in epoch $(grep -c '^Epoch' "$work/part.log"): mpirun exited $rc, every rank gone after ${took} ms"
[[ $rc -ne 0 ]] || fail "mpirun exited 0 after a rank was killed"
alive && fail "a rank process is still running 30 s after the kill"
(( took <= 30000 )) || fail "the job took ${took} ms (> 30 s) to end"
for f in last best; do
  "$compare" "$work/part/$f.kitnn" "$work/part/$f.kitnn" 0 > /dev/null ||
    fail "$f.kitnn does not load after the kill"
done
ls "$work/part" | grep -q '\.tmp\.' && echo "(a temporary file of the killed write is left: $(ls "$work/part" | grep '\.tmp\.'))"
"${MPIRUN[@]}" -np 2 "$bin/mnist_train" --resume "$work/part/last.kitnn" --threads 1 --progress plain \
  --data "$work/data" --out "$work/part" > "$work/resume.log" 2>&1 ||
  { tail "$work/resume.log"; fail "the resumed run failed"; }
grep -q "Resuming from" "$work/resume.log" || fail "did not resume"
"$compare" "$work/full/best.kitnn" "$work/part/best.kitnn" 0 ||
  fail "the resumed run differs from the uninterrupted one"
echo "ok: killed, ended in ${took} ms, resumed under mpirun to the same weights"

# 2. A rank that throws.
s=$(date +%s%N)
"${MPIRUN[@]}" -np 1 "$bin/mnist_train" "${args[@]}" --out "$work/t" : \
  -np 1 "$bin/mnist_train" "${base[@]}" --data "$work/no-such-folder" --out "$work/t" > "$work/throw.log" 2>&1
rc=$?
took=$(( ($(date +%s%N) - s) / 1000000 ))
[[ $rc -ne 0 ]] || fail "a rank failed but mpirun exited 0"
(( took <= 30000 )) || fail "the job took ${took} ms to end"
grep -q "\[rank 1 of 2\] mnist_train: error: .*no-such-folder" "$work/throw.log" ||
  { cat "$work/throw.log"; fail "no clear message from the failing rank"; }
echo "ok: a throwing rank ended the job (exit $rc) in ${took} ms"

# 3. Ranks that disagree.
for bad in "--seed 6" "--seed 5 --limit 1500"; do
  "${MPIRUN[@]}" -np 1 "$bin/mnist_train" "${args[@]}" --out "$work/m" : \
    -np 1 "$bin/mnist_train" "${common[@]}" $bad --data "$work/data" --out "$work/m" > "$work/mismatch.log" 2>&1 &&
    fail "ranks with $bad were not refused"
  grep -q "ranks do not run the same training" "$work/mismatch.log" ||
    { cat "$work/mismatch.log"; fail "no clear message for $bad"; }
  grep -q "Epoch 1" "$work/mismatch.log" && fail "training started despite $bad"
  echo "ok: $bad refused: $(grep -o 'rank 1 has [^;(]*' "$work/mismatch.log" | head -1)"
done
echo "PASS in $(( $(date +%s) - t0 )) s"
