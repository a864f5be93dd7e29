# Shared by the example pipelines (sourced, with $OUT set): a step that a rerun skips.
# step NAME COMMAND...: run COMMAND unless $OUT/.done/NAME says it was done; record its
# wall time there.
step() {  # step NAME COMMAND...: run unless done before; record its wall time
  local name=$1; shift
  if [ -f "$OUT/.done/$name" ]; then
    echo "== $name: built before ($(cat "$OUT/.done/$name") s), kept"
    return
  fi
  echo "== $name"
  local t=$(date +%s)
  "$@"
  echo $(( $(date +%s) - t )) > "$OUT/.done/$name"
}
