# Shared by the example pipelines (sourced, with $OUT set): a step that a rerun skips.
# step NAME COMMAND...: run COMMAND unless $OUT/.done/NAME says it was done; record its
# wall time there. UNTIL=NAME stops the script (exit 0) once step NAME is done or was
# done before: e.g. tokens made on a CPU, the LMs then trained on a GPU.
step() {  # step NAME COMMAND...: run unless done before; record its wall time
  local name=$1; shift
  if [ -f "$OUT/.done/$name" ]; then
    echo "== $name: built before ($(cat "$OUT/.done/$name") s), kept"
  else
    echo "== $name"
    local t=$(date +%s)
    "$@"
    echo $(( $(date +%s) - t )) > "$OUT/.done/$name"
  fi
  if [ "${UNTIL:-}" = "$name" ]; then
    echo "== stopped after $name (UNTIL=$name); run again without UNTIL to go on"
    exit 0
  fi
}
