#!/bin/bash
# Builds the images on the local base and checks them for real (`make test-images`):
#   1. the engine (started here with the vfs driver if none answers), the local base image;
#   2. the API image and the CPU worker image, timed, their sizes;
#   3. the API container on the host's network against this machine's Postgres: time to ready,
#      a real strip posted and its answer checked, /readyz, /metrics, no torch in it;
#   4. the worker container's `worker --once` against the same database;
#   5. the compose stack (Postgres, the API, two workers, Mosquitto) up, a strip through it,
#      the broker connected, and down again with its volumes.
# The figures land in var/test-images/report.json; REUSE_IMAGES=1 skips the builds where the
# images exist (while working on the checks). Needs root (the engine), Postgres on
# 127.0.0.1:5432 and ../shared/data/severstal-samples.
set -euo pipefail
cd "$(dirname "$0")/.."

work=var/test-images
base="${BASE_IMAGE:-strip-inspection-base:bookworm}"
api_image=strip-inspection-api
worker_image=strip-inspection-worker:cpu
postgres_url="${TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432}"
database=strip_inspection_images
strips=../shared/data/severstal-samples/images
api_port=8000
compose_port=18000
mkdir -p "$work"
report="$work/report.json"
echo '{}' > "$report"

say() { echo "[test-images] $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, $2))"; }  # seconds since $1, $2 decimals
record() { python3 - "$report" "$@" <<'PY'
import json, sys
path, key, value = sys.argv[1], sys.argv[2], sys.argv[3]
report = json.load(open(path))
try:
    report[key] = json.loads(value)
except json.JSONDecodeError:
    report[key] = value
json.dump(report, open(path, "w"), indent=2)
PY
}
image_mib() { docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.0f", $1 / 1048576}'; }
port_free() { ! (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[ -d "$strips" ] || fail "$strips is missing: the shared data sets sit in ../shared/data"
strip="$(ls "$strips"/*.png | head -n 1)"

cleanup() {
    docker rm --force si-test-api >/dev/null 2>&1 || true
    [ -f "$work/compose.env" ] && compose down --volumes >/dev/null 2>&1 || true
    [ -n "${index_pid:-}" ] && kill "$index_pid" 2>/dev/null || true
}
trap cleanup EXIT

# 1. The engine and the base.
if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (vfs storage, no iptables, no default bridge)"
    nohup dockerd --storage-driver=vfs --iptables=false --bridge=none > "$work/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || fail "dockerd did not start; see $work/dockerd.log"
fi
docker image inspect "$base" >/dev/null 2>&1 || sh deploy/base-image.sh "$base"

# The CPU build of torch: PyTorch's CPU index unless TORCH_CPU_INDEX names another; on machines
# that reach neither, a one-package index of the wheel this machine's pip finds, on loopback.
if [ -z "${TORCH_CPU_INDEX:-}" ]; then
    torch_version="$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])')"
    mkdir -p "$work/torch-index/torch"
    .venv/bin/pip download --quiet --no-deps --dest "$work/torch-index/torch" "torch==${torch_version}+cpu"
    index_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 -m http.server "$index_port" --bind 127.0.0.1 --directory "$work/torch-index" \
        > "$work/torch-index.log" 2>&1 &
    index_pid=$!
    TORCH_CPU_INDEX="http://127.0.0.1:${index_port}/"
fi

# 2. Build, timed.
build() {  # name, then docker build arguments
    local name="$1" start
    shift
    start="$(now)"
    docker build --no-cache --network host --build-arg BASE_IMAGE="$base" "$@" . \
        > "$work/build-$name.log" 2>&1 \
        || fail "building $name: see $work/build-$name.log"
    record "build_seconds_$name" "$(since "$start" 1)"
}
if [ "${REUSE_IMAGES:-0}" = 1 ] && docker image inspect "$api_image" "$worker_image" >/dev/null 2>&1; then
    say "REUSE_IMAGES=1: checking the images already built"
else
    say "building the API image"
    build api --target api --tag "$api_image"
    say "building the CPU worker image"
    build worker_cpu --target worker --build-arg WORKER_TORCH=cpu \
        --build-arg TORCH_CPU_INDEX="$TORCH_CPU_INDEX" --tag "$worker_image"
fi
record api_image_mib "$(image_mib "$api_image")"
record worker_cpu_image_mib "$(image_mib "$worker_image")"

if docker run --rm "$api_image" python -c "import torch" 2>/dev/null; then
    fail "torch imports in the API image"
fi
docker run --rm "$worker_image" python -c "import torch, torch_pruning, onnx, safetensors" \
    || fail "the worker image lacks its training packages"

# 3. The API container against this machine's Postgres.
psql "postgresql://${postgres_url#*://}/postgres" -q -c "DROP DATABASE IF EXISTS $database" \
    -c "CREATE DATABASE $database" >/dev/null
database_url="$postgres_url/$database"
key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
entry="$(printf '%s' "$key" | .venv/bin/python -m service hash-key --quiet --name test-images --role admin)"
port_free "$api_port" || fail "port $api_port is taken: the API container binds it on the host's network"

say "running the API container"
start="$(now)"
docker run --detach --name si-test-api --network host \
    -e DATABASE_URL="$database_url" -e MIGRATE_ON_START=true -e API_KEYS="[$entry]" \
    "$api_image" >/dev/null
for _ in $(seq 600); do
    curl -fs "127.0.0.1:$api_port/readyz" >/dev/null && break
    sleep 0.1
done
curl -fs "127.0.0.1:$api_port/readyz" >/dev/null || { docker logs si-test-api; fail "the API never became ready"; }
record seconds_run_to_ready "$(since "$start" 2)"

post_strip() {  # port; prints the answer's JSON
    curl -fsS -X POST "127.0.0.1:$1/v1/inspect?camera_id=images-test&line_id=line-1" \
        -H "Authorization: Bearer $key" -H "Content-Type: image/png" --data-binary "@$strip"
}
check_answer() {
    python3 -c '
import json, sys
answer = json.load(sys.stdin)
assert answer["model"]["name"] and answer["inspection_id"], answer
assert isinstance(answer["defects"], list) and answer["has_defect"] == bool(answer["defects"]), answer
for defect in answer["defects"]:
    assert defect["encoded_pixels"] and defect["area_px"] > 0, defect
print(len(answer["defects"]), answer["timings_ms"]["total"])'
}
start="$(now)"
answer="$(post_strip "$api_port")" || { docker logs si-test-api; fail "the strip was refused"; }
record seconds_first_answer "$(since "$start" 3)"
record first_answer_defects_and_server_ms "$(echo "$answer" | check_answer | tr ' ' ,)"
stored="$(echo "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["inspection_id"])')"
curl -fsS -H "Authorization: Bearer $key" "127.0.0.1:$api_port/v1/inspections/$stored" >/dev/null \
    || fail "the inspection was not stored"
grep -q '"status": *"ready"' <<< "$(curl -fsS -H "Authorization: Bearer $key" "127.0.0.1:$api_port/readyz")" \
    || fail "/readyz is not ready"
grep -q '^strip_inspection_images_inspected_total' <<< "$(curl -fsS "127.0.0.1:$api_port/metrics")" \
    || fail "/metrics lacks the inspections counter"
for _ in $(seq 120); do
    [ "$(docker inspect --format '{{.State.Health.Status}}' si-test-api)" = healthy ] && break
    sleep 1
done
[ "$(docker inspect --format '{{.State.Health.Status}}' si-test-api)" = healthy ] \
    || fail "the API container's HEALTHCHECK never passed"
docker rm --force si-test-api >/dev/null

# 4. The worker container against the same database: it checks the schema, finds the queue
# empty and exits.
say "running the worker container once"
docker run --rm --network host -e DATABASE_URL="$database_url" "$worker_image" \
    python -m service worker --once > "$work/worker-once.log" 2>&1 \
    || { cat "$work/worker-once.log"; fail "worker --once failed"; }

# 5. The compose stack, on local stand-ins for the Postgres and Mosquitto images.
say "building the stand-ins for the postgres and mosquitto images"
docker build --network host --build-arg BASE_IMAGE="$base" -f deploy/standins/postgres.Dockerfile \
    -t strip-inspection-postgres-standin deploy/standins > "$work/build-postgres.log" 2>&1 \
    || fail "building the postgres stand-in: see $work/build-postgres.log"
docker build --network host --build-arg BASE_IMAGE="$base" -f deploy/standins/mosquitto.Dockerfile \
    -t strip-inspection-mosquitto-standin deploy/standins > "$work/build-mosquitto.log" 2>&1 \
    || fail "building the mosquitto stand-in: see $work/build-mosquitto.log"
cat > "$work/compose.env" <<EOF
API_KEYS=[$entry]
MQTT_URL=mqtt://mqtt:1883
EOF
compose() {
    POSTGRES_IMAGE=strip-inspection-postgres-standin MOSQUITTO_IMAGE=strip-inspection-mosquitto-standin \
    API_IMAGE="$api_image" WORKER_IMAGE="$worker_image" ENV_FILE="$work/compose.env" \
    API_PORT="$compose_port" MQTT_PORT=$((compose_port + 1)) DATA_DIR="$(cd ../shared/data && pwd)" POSTGRES_PASSWORD=images-test \
        docker-compose --project-name si-test --profile line-events "$@"
}
port_free "$compose_port" || fail "port $compose_port is taken"
say "compose up: Postgres, the API, two workers, Mosquitto"
start="$(now)"
compose up --detach --no-build --scale worker=2 > "$work/compose-up.log" 2>&1 \
    || { cat "$work/compose-up.log"; fail "compose up"; }
for _ in $(seq 900); do
    curl -fs "127.0.0.1:$compose_port/readyz" >/dev/null && break
    sleep 0.2
done
curl -fs "127.0.0.1:$compose_port/readyz" >/dev/null || { compose logs; fail "the compose API never became ready"; }
record seconds_compose_up_to_ready "$(since "$start" 1)"
post_strip "$compose_port" | check_answer >/dev/null || { compose logs api; fail "compose: the strip was refused"; }
[ "$(compose ps --quiet worker | wc -l)" = 2 ] || fail "compose: two workers expected"
for worker in $(compose ps --quiet worker); do
    [ "$(docker inspect --format '{{.State.Running}}' "$worker")" = true ] \
        || { compose logs worker; fail "compose: a worker is not running"; }
done
broker_connected() {
    grep -q '^strip_inspection_mqtt_connected 1' <<< "$(curl -fsS "127.0.0.1:$compose_port/metrics")"
}
for _ in $(seq 50); do
    broker_connected && break
    sleep 0.2
done
broker_connected || fail "compose: the API is not connected to the broker"
compose down --volumes > "$work/compose-down.log" 2>&1 || fail "compose down"
[ -z "$(docker ps --all --quiet --filter label=com.docker.compose.project=si-test)" ] \
    || fail "compose down left containers"

say "all checks passed"
cat "$report"
