# bash completion for brr-release and supervisord-lite.
# Install: source this file, or copy it to /etc/bash_completion.d/.

_brr_root() {
  local i
  for ((i = 1; i < COMP_CWORD; i++)); do
    [ "${COMP_WORDS[i]}" = "--root" ] && { echo "${COMP_WORDS[i + 1]}"; return; }
  done
  echo "${BRR_ROOT:-}"
}

_brr_release_ids() {
  local root; root=$(_brr_root)
  [ -d "$root/releases" ] && (cd "$root/releases" && ls -d v[0-9]* 2>/dev/null)
}

_brr_release() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local commands="init build release config scale activate deploy rollback releases show diff prune verify import run"
  case "$prev" in
    --root|--env-file|-o|--output) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    build|deploy) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    activate|rollback|show|diff|--release) COMPREPLY=($(compgen -W "$(_brr_release_ids)" -- "$cur")); return ;;
    config) COMPREPLY=($(compgen -W "set unset" -- "$cur")); return ;;
    import) COMPREPLY=($(compgen -W "procfile supervisord" -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "--root --json --help --activate --wait --timeout --no-signal --set --unset --env-file --show-values --keep --build --group --release" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$commands" -- "$cur"))
  fi
}

_supervisord_lite() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  case "$prev" in
    --root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "--root --json --wait --timeout --follow -f -n --watch --pass-env --plugin --help" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "run status reload restart stop start logs shutdown" -- "$cur"))
  fi
}

complete -F _brr_release brr-release
complete -F _supervisord_lite supervisord-lite
