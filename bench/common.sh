# Helpers shared by the bench scripts (sourced, not run).

HZ=$(getconf CLK_TCK)
# CPU ticks (user + sys) of the given processes, summed; a gone process counts 0.
ticks() { local s=0; for p in "$@"; do s=$(( s + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo $s; }
# Resident memory of a process in KiB.
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Cores used between two samples: cores TICKS1 TICKS0 WALL1 WALL0 (wall in seconds).
cores() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v w1="$3" -v w0="$4" 'BEGIN {printf "%.3f", (a-b)/hz/(w1-w0)}'; }
# A field of a JSON file: json FILE "['calls']['answered']" ("?" when missing).
json() { python3 -c "import json,sys; d=json.load(open('$1')); print(eval('d'+sys.argv[1]))" "$2" 2>/dev/null || echo "?"; }
