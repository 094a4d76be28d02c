#!/usr/bin/env bash
# `make container-check`: build the Dockerfile for real and prove the image serves.
#
# No Docker engine is needed, and nothing outside this repository: the image is built with
# buildah (`buildah bud --isolation chroot`, no daemon) and its own CMD run with `buildah run`
# on this machine's network. buildah is installed with apt-get when missing (as root). The base
# image python:3.11-slim is pulled; where no registry answers, a stand-in with the same Python
# (Debian bookworm's 3.11, made with debootstrap, once per machine) is committed under its name.
# While the container is up this script sends real predictions (four handwritten digits from
# scikit-learn's digits set, 8x8x1, scaled by 1/16 as in training) and checks the answers. Then
# it checks what the image promises (non-root user, port, healthcheck, no TensorFlow, no
# compiler) and prints its size.
#
# usage: scripts/container-check.sh                  # the whole check (from anywhere)
#        scripts/container-check.sh --predict URL    # only the prediction check, against URL
# environment: WAIT_S (seconds to wait for readiness, default 180), SIZE_LIMIT_MB (500)
set -euo pipefail

IMAGE=localhost/lc2d-serve-check:latest
BASE_IMAGE=docker.io/library/python:3.11-slim
PORT=8000
SIZE_LIMIT_MB=${SIZE_LIMIT_MB:-500}
WAIT_S=${WAIT_S:-180}
LOG=${TMPDIR:-/tmp}/lc2d-container-check.log

predict() {
  local url=$1 answer
  answer=$(python3 -c 'import json, sys; print(json.dumps({"instances": json.loads(sys.argv[1])}))' \
      "$(digits_json)" | curl -fsS --max-time 30 -H 'Content-Type: application/json' \
      --data-binary @- "$url/predict")
  python3 - "$answer" <<'EOF'
import json, math, sys
answer = json.loads(sys.argv[1])
problems = []
predictions, labels = answer.get("predictions"), answer.get("labels")
if not isinstance(predictions, list) or len(predictions) != 4:
    problems.append(f"expected 4 predictions, received {predictions!r:.200}")
else:
    for i, row in enumerate(predictions):
        if len(row) != 10 or not math.isclose(sum(row), 1.0, abs_tol=1e-3) or min(row) < 0:
            problems.append(f"prediction {i}: expected 10 probabilities summing to 1, received {row}")
if labels != ["0", "1", "2", "3"]:
    problems.append(f"expected labels ['0', '1', '2', '3'], received {labels!r}")
if problems:
    sys.exit("prediction check failed: " + "; ".join(problems))
print(f"POST /predict: labels {labels}, top probabilities "
      f"{[round(max(r), 3) for r in predictions]}")
EOF
}

# The first four images of scikit-learn's digits (labels 0, 1, 2, 3) as 8x8x1 instances in [0, 1].
digits_json() {
  python3 - <<'EOF'
import json
rows = [
    [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
     0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0],
    [0, 0, 0, 12, 13, 5, 0, 0, 0, 0, 0, 11, 16, 9, 0, 0, 0, 0, 3, 15, 16, 6, 0, 0, 0, 7, 15, 16, 16, 2, 0, 0,
     0, 0, 1, 16, 16, 3, 0, 0, 0, 0, 1, 16, 16, 6, 0, 0, 0, 0, 1, 16, 16, 6, 0, 0, 0, 0, 0, 11, 16, 10, 0, 0],
    [0, 0, 0, 4, 15, 12, 0, 0, 0, 0, 3, 16, 15, 14, 0, 0, 0, 0, 8, 13, 8, 16, 0, 0, 0, 0, 1, 6, 15, 11, 0, 0,
     0, 1, 8, 13, 15, 1, 0, 0, 0, 9, 16, 16, 5, 0, 0, 0, 0, 3, 13, 16, 16, 11, 5, 0, 0, 0, 0, 3, 11, 16, 9, 0],
    [0, 0, 7, 15, 13, 1, 0, 0, 0, 8, 13, 6, 15, 4, 0, 0, 0, 2, 1, 13, 13, 0, 0, 0, 0, 0, 2, 15, 11, 1, 0, 0,
     0, 0, 0, 1, 12, 12, 1, 0, 0, 0, 0, 0, 1, 10, 8, 0, 0, 0, 8, 4, 5, 14, 9, 0, 0, 0, 7, 13, 13, 9, 0, 0],
]
print(json.dumps([[[[v / 16.0] for v in row[r * 8:(r + 1) * 8]] for r in range(8)] for row in rows]))
EOF
}

# Reads the built image's config and filesystem; fails on a broken promise.
check_image() {
  local config ctr
  config=$(buildah inspect --type image "$IMAGE")
  python3 - "$config" "$PORT" <<'EOF'
import json, sys
c = json.loads(sys.argv[1])
oci, docker = c["OCIv1"]["config"], c["Docker"]["config"]
problems = []
if (oci.get("User") or "root").split(":")[0] in ("root", "0"):
    problems.append(f"expected a non-root user, received {oci.get('User')!r}")
if f"{sys.argv[2]}/tcp" not in (oci.get("ExposedPorts") or {}):
    problems.append(f"port {sys.argv[2]} is not exposed: {oci.get('ExposedPorts')}")
test = (docker.get("Healthcheck") or {}).get("Test") or []
if "/v2/health/ready" not in " ".join(test):
    problems.append(f"expected a HEALTHCHECK on /v2/health/ready, received {test}")
if problems:
    sys.exit("image check failed: " + "; ".join(problems))
print(f"image config: user {oci['User']}, ports {sorted(oci['ExposedPorts'])}, healthcheck {test[-1][-60:]!r}")
EOF
  ctr=$(buildah from "$IMAGE")
  local rc=0
  buildah run --isolation chroot "$ctr" -- python -c "$IMAGE_CONTENTS_CHECK" || rc=$?
  buildah rm "$ctr" >/dev/null 2>&1 || true
  return "$rc"
}

# Runs inside the image, as the image's user.
IMAGE_CONTENTS_CHECK='
import importlib.util, os, shutil, sys
problems = []
if os.getuid() == 0:
    problems.append("runs as root")
heavy = [m for m in ("tensorflow", "keras", "tf2onnx", "onnx", "sklearn") if importlib.util.find_spec(m)]
if heavy:
    problems.append(f"training packages in the serving image: {heavy}")
compilers = [c for c in ("gcc", "cc", "g++", "clang") if shutil.which(c)]
if compilers:
    problems.append(f"compilers in the serving image: {compilers}")
models = sorted(str(p) for p in __import__("pathlib").Path("/models").glob("*/*/model.onnx"))
if not models:
    problems.append("no /models/<name>/<version>/model.onnx baked in")
if problems:
    sys.exit("image contents check failed: " + "; ".join(problems))
import onnxruntime, service.app, lc2d.cli  # noqa: the serving code imports without TensorFlow
print(f"image contents: uid {os.getuid()}, python {sys.version.split()[0]}, onnxruntime "
      f"{onnxruntime.__version__} {onnxruntime.get_available_providers()}, models {models}, "
      "no TensorFlow/Keras/onnx/scikit-learn, no compiler")
'

print_size() {
  echo "# buildah images $IMAGE"
  buildah images "$IMAGE"
  local size
  size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n 1)
  echo "serving image size: $size (target < ${SIZE_LIMIT_MB} MB)"
  python3 - "$size" "$SIZE_LIMIT_MB" <<'EOF'
import re, sys
number, unit = re.fullmatch(r"([\d.]+)\s*([kMG]?B)", sys.argv[1].strip()).groups()
mb = float(number) * {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]
if mb >= float(sys.argv[2]):
    sys.exit(f"image is {mb:.0f} MB, expected under {sys.argv[2]} MB")
EOF
}

say() { echo "container-check: $*"; }
fail() { echo "container-check: $*" >&2; exit 2; }

ensure_buildah() {
  command -v buildah >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || fail "expected buildah on PATH (or root with apt-get to install it), received neither"
  say "installing buildah with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
}

# The base image: pulled, or a stand-in with the same Python committed under the same name.
ensure_base() {
  buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  say "pulling $BASE_IMAGE"
  buildah pull -q "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  say "no registry answered; making a stand-in for $BASE_IMAGE (Debian bookworm, Python 3.11;" \
      "a few minutes, once per machine)"
  command -v debootstrap >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
    || fail "expected debootstrap to make the stand-in base image, received no way to install it"
  local root ctr archive
  root=$(mktemp -d)
  archive=$(mktemp --suffix=.tar)
  debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,curl,passwd,adduser \
      bookworm "$root" http://deb.debian.org/debian >"$LOG" 2>&1 \
    || fail "debootstrap failed; its log is $LOG"
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED  # python:3.11-slim lets pip install system-wide
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ctr=$(buildah from scratch)
  tar -C "$root" -cf "$archive" . && rm -rf "$root"
  buildah add "$ctr" "$archive" / >/dev/null  # a local tar archive is unpacked at /
  rm -f "$archive"
  # the build installs from the same package index as this machine, through its trusted CAs
  buildah copy "$ctr" "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" \
      /etc/ssl/certs/ca-certificates.crt >/dev/null
  buildah config --env LANG=C.UTF-8 --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
      --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
  buildah commit -q "$ctr" "$BASE_IMAGE" >/dev/null
  buildah rm "$ctr" >/dev/null
}

build_image() {
  say "building the Dockerfile (buildah bud --isolation chroot; TensorFlow and the digits model" \
      "are built in the builder stage: several minutes the first time)"
  # the docker image format keeps HEALTHCHECK (buildah drops it in the default OCI format)
  buildah bud --isolation chroot --format docker --pull=never --layers -t "$IMAGE" . >"$LOG" 2>&1 \
    || { tail -n 30 "$LOG" >&2; fail "the image did not build; the full log is $LOG"; }
}

# Runs the image's own user and command in a process group of its own, waits for readiness,
# runs the prediction check, and stops the whole group (buildah run and the server inside).
run_image() {
  local user command ctr group rc=0
  read -r user command < <(buildah inspect --type image "$IMAGE" | python3 -c '
import json, shlex, sys
config = json.load(sys.stdin)["OCIv1"]["config"]
print(config.get("User") or "root", shlex.join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])))')
  ctr=$(buildah from "$IMAGE")
  say "running as $user: $command"
  setsid bash -c "exec buildah run --isolation chroot --user $user $ctr -- $command" >"$LOG" 2>&1 &
  group=$!
  for _ in $(seq "$WAIT_S"); do
    if curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/v2/health/ready"; then
      say "GET /v2/health/ready answered 200"
      predict "http://127.0.0.1:$PORT" || rc=$?
      break
    fi
    kill -0 "$group" 2>/dev/null || { rc=1; break; }
    sleep 1
  done
  kill -TERM -- "-$group" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 -- "-$group" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$group" 2>/dev/null || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
  if [ "$rc" != 0 ]; then
    tail -n 30 "$LOG" >&2
    fail "the container did not serve correctly within ${WAIT_S} s; its log is $LOG"
  fi
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  if curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$PORT/"; then
    fail "expected port $PORT to be free for the container; something already answers there" \
         "(stop it first, e.g. a local 'make serve')"
  fi
  ensure_buildah
  ensure_base
  build_image
  run_image
  check_image
  print_size
  say "OK"
}

if [ "${1:-}" = "--predict" ]; then
  predict "${2:?usage: $0 --predict URL}"
else
  main "$@"
fi
