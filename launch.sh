#!/usr/bin/env bash
# vit-locality launcher.
#
#   ./launch.sh test [pytest args]                    make .venv if missing, install, run the tests
#       (one pytest-xdist worker per core unless the args give -n)
#   ./launch.sh train CONFIG [--workdir=DIR] [--config.x=y ...]    make .venv if missing, train
#   ./launch.sh tpu --name=NAME --zone=ZONE (--config=CONFIG | --sweep=SWEEP_FILE)
#       [--accelerator=v4-8] [--version=tpu-ubuntu2204-base] [--workdir=DIR] [--dry-run] [-- ARGS]
#       on a Cloud TPU VM, created when missing: copy the repository to every worker, pip install
#       it with jax[tpu], run `vit_locality.main --multihost` (or `vit_locality.sweep
#       --multihost`; ARGS are passed on) on all workers with the log in DIR/launch.log, then
#       copy DIR back from worker 0. DIR defaults to runs/<config name>[_<arg>] or
#       runs/<sweep name>; a relative DIR is in the repository copy. A gs://BUCKET/PATH DIR is
#       shared by the workers and stays there (the log is ~/vit-locality/launch.log on each
#       worker); slices with several workers (a size above 8: v4-16, v5litepod-16, ...) need one.
#       --dry-run prints the gcloud commands ("+ " lines) and runs none.
#
# .venv is (re)installed whenever pyproject.toml changes. PYTHON picks the interpreter that
# creates it (default python3; Python >= 3.10). `test` and `train` preload tcmalloc when it is
# installed (Debian/Ubuntu package libtcmalloc-minimal4) and LD_PRELOAD is unset: see
# preload_tcmalloc.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PYTHON=${PYTHON:-python3}

ensure_venv() {
  local stamp
  stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [[ -f "$stamp" ]]; then return; fi
  echo "Installing vit-locality and its dependencies into $VENV ..." >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e '.[test]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
}

# XLA:CPU takes fresh memory for its temporaries at every step; glibc hands it back to the kernel
# and the next step pays a page fault per 4 KiB (about 500,000 faults and 1.3 s of kernel time
# per step of the default ViT on 2 cores). tcmalloc keeps that memory: no faults, and the CPU
# step goes from about 2.7 s to 2.0 s (benchmarks/README.md). Accelerator steps are unaffected.
preload_tcmalloc() {
  [[ -z ${LD_PRELOAD:-} ]] || return 0
  local lib
  for lib in /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/*/libtcmalloc.so.4; do
    if [[ -f $lib ]]; then
      export LD_PRELOAD=$lib
      return 0
    fi
  done
}

usage() {
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
  exit 2
}

die() {  # one-line error, exit status 2
  echo "error: $*" >&2
  exit 2
}

# The words, each single-quoted where a POSIX shell needs it, joined by spaces.
quote() {
  local word words=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      words+=("$word")
    else
      words+=("'${word//\'/\'\\\'\'}'")
    fi
  done
  echo "${words[*]}"
}

REMOTE_DIR=vit-locality # the repository copy on every TPU worker, in the home directory
dry_run=0
tmp_dir="" # holds the repository tarball; removed at exit

gcloud_run() {  # prints "+ gcloud ARGS" and runs it, unless --dry-run
  echo "+ $(quote gcloud "$@")"
  [[ $dry_run == 1 ]] || gcloud "$@"
}

pack_repo() {  # $1: a .tar.gz of the files git tracks or would track (so no .venv, runs/)
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' file; do
      if [[ -e $file ]]; then printf '%s\0' "$file"; fi
    done |
    tar -czf "$1" --null -T -
}

tpu() {
  local name="" zone="" accelerator=v4-8 version=tpu-ubuntu2204-base config="" sweep=""
  local workdir="" extra=() missing=() joined
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --name=*) name=${1#*=} ;;
      --zone=*) zone=${1#*=} ;;
      --accelerator=*) accelerator=${1#*=} ;;
      --version=*) version=${1#*=} ;;
      --config=*) config=${1#*=} ;;
      --sweep=*) sweep=${1#*=} ;;
      --workdir=*) workdir=${1#*=} ;;
      --dry-run) dry_run=1 ;;
      --) shift; extra=("$@"); break ;;
      *) die "./launch.sh tpu: unknown argument '$1' (training arguments go after --)" ;;
    esac
    shift
  done
  [[ -n $name ]] || missing+=("--name=NAME")
  [[ -n $zone ]] || missing+=("--zone=ZONE")
  [[ -n $config || -n $sweep ]] || missing+=("--config=CONFIG or --sweep=SWEEP_FILE")
  if [[ ${#missing[@]} -gt 0 ]]; then
    printf -v joined '%s, ' "${missing[@]}"
    die "./launch.sh tpu needs ${joined%, }; e.g. ./launch.sh tpu --name=vit" \
      "--zone=us-central2-b --config=configs/cifar100_modern.py"
  fi
  [[ -z $config || -z $sweep ]] || die "./launch.sh tpu takes --config or --sweep, not both"

  # The training command, run from the repository copy on every worker.
  local train stem arg
  if [[ -n $config ]]; then
    stem=${config%%:*}
    stem=${stem##*/}
    arg=${config#"${config%%:*}"}
    arg=${arg#:}
    workdir=${workdir:-runs/${stem%.py}${arg:+_${arg//[^[:alnum:]=.-]/_}}}
    train=(python3 -m vit_locality.main --multihost "--config=$config" "--workdir=$workdir")
  else
    stem=${sweep##*/}
    workdir=${workdir:-runs/${stem%.py}}
    train=(python3 -m vit_locality.sweep "$sweep" "--root=$workdir" --multihost)
  fi
  train+=("${extra[@]}")
  local install="mkdir -p $REMOTE_DIR && tar -xzf $REMOTE_DIR.tar.gz -C $REMOTE_DIR"
  install+=" && cd $REMOTE_DIR && python3 -m pip install --quiet --upgrade pip"
  install+=" && python3 -m pip install --quiet -e . \"jax[tpu]\""
  local remote=0 run log
  [[ $workdir != gs://* ]] || remote=1
  if [[ ${accelerator##*-} =~ ^[0-9]+$ && ${accelerator##*-} -gt 8 && $remote == 0 ]]; then
    die "./launch.sh tpu: --accelerator=$accelerator has several workers, which must share" \
      "the workdir: use --workdir=gs://BUCKET/PATH"
  fi
  run="cd $REMOTE_DIR && set -o pipefail"
  if [[ $remote == 1 ]]; then
    log=launch.log
  else
    log=$workdir/launch.log
    run+=" && mkdir -p $(quote "$workdir")"
  fi
  run+=" && $(quote "${train[@]}") 2>&1 | tee -a $(quote "$log")"
  local remote_workdir=$workdir local_parent=runs # an absolute DIR comes back into runs/
  if [[ $workdir != /* ]]; then
    remote_workdir=$REMOTE_DIR/$workdir
    local_parent=$(dirname "$workdir")
  fi

  local tarball=$REMOTE_DIR.tar.gz # what --dry-run shows; the real one is in a temporary dir
  if [[ $dry_run == 0 ]]; then
    command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI"
    tmp_dir=$(mktemp -d)
    trap 'rm -rf "$tmp_dir"' EXIT
    tarball=$tmp_dir/$REMOTE_DIR.tar.gz
    pack_repo "$tarball"
  fi
  local at=("--zone=$zone") status=0
  local describe=(compute tpus tpu-vm describe "$name" "${at[@]}")
  echo "+ $(quote gcloud "${describe[@]}")"
  if [[ $dry_run == 1 ]] || ! gcloud "${describe[@]}" >/dev/null 2>&1; then
    gcloud_run compute tpus tpu-vm create "$name" "${at[@]}" \
      "--accelerator-type=$accelerator" "--version=$version"
  fi
  gcloud_run compute tpus tpu-vm scp "$tarball" "$name:$REMOTE_DIR.tar.gz" "${at[@]}" --worker=all
  gcloud_run compute tpus tpu-vm ssh "$name" "${at[@]}" --worker=all "--command=$install"
  gcloud_run compute tpus tpu-vm ssh "$name" "${at[@]}" --worker=all "--command=$run" || status=$?
  [[ $remote == 0 ]] || return "$status" # the results are in the bucket
  [[ $dry_run == 1 ]] || mkdir -p "$local_parent"
  gcloud_run compute tpus tpu-vm scp --recurse "$name:$remote_workdir" "$local_parent" \
    "${at[@]}" --worker=0
  return "$status"
}

mode=${1:-}
[[ -n "$mode" ]] || usage
shift
case "$mode" in
  test)
    ensure_venv
    preload_tcmalloc
    # One xdist worker per core, a test module to a worker (its trained fixtures made once).
    # Given -n (e.g. -n 0: in this process), the caller's choice stands.
    parallel=(-n auto --dist loadfile)
    for arg in "$@"; do
      [[ $arg == -n* || $arg == --numprocesses* ]] && parallel=()
    done
    exec "$VENV/bin/python" -m pytest "${parallel[@]}" "$@"
    ;;
  train)
    [[ $# -ge 1 ]] || { echo "error: ./launch.sh train needs a config, e.g. configs/cifar100_modern.py" >&2; exit 2; }
    config=$1
    shift
    ensure_venv
    preload_tcmalloc
    exec "$VENV/bin/python" -m vit_locality.main --config="$config" "$@"
    ;;
  tpu)
    tpu "$@"
    ;;
  *)
    echo "error: unknown mode '$mode'; allowed: test, train, tpu" >&2
    usage
    ;;
esac
