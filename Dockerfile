# lc2d-serve container image: an ONNX Runtime + FastAPI server with a model baked in.
#
#   docker build -t lc2d-serve .                              # CPU, serves the digits model
#   docker build -t lc2d-serve:gpu --build-arg GPU=1 .        # onnxruntime-gpu on CUDA 13 + cuDNN 9
#   docker run --rm -p 8000:8000 -p 8001:8001 lc2d-serve      # HTTP on 8000, gRPC on 8001
#
# Stages: `requirements` turns pyproject.toml into pip requirement files; `builder` installs the
# `train` extra (TensorFlow), builds the project wheel, trains and exports the default model;
# `serve` starts from python:3.11-slim (or the CUDA runtime base) and installs only the base
# dependencies, the wheel and the exported model. No TensorFlow, no compiler, no source tree
# reaches the serving image. See docs/deployment.md.

ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim
ARG CUDA_IMAGE=docker.io/nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
# GPU=1: onnxruntime-gpu on the CUDA runtime base. Empty (the default): CPU on python:3.11-slim.
# onnxruntime-gpu from PyPI is built for one CUDA major (13 for 1.31); the build checks that
# CUDA_IMAGE has the same one (nvidia/cuda images set CUDA_VERSION).
ARG GPU=
ARG SERVE_IMAGE=${GPU:+$CUDA_IMAGE}

# ---------------------------------------------------------------------------------------------
# pyproject.toml -> requirement files, so that dependency layers depend on pyproject.toml only.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /requirements
COPY pyproject.toml ./
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
open('base.txt', 'w').write('\n'.join(p['dependencies']) + '\n'); \
open('train.txt', 'w').write('\n'.join(p['optional-dependencies']['train']) + '\n')" \
 && sed -E 's/^onnxruntime($|[^-a-z_])/onnxruntime-gpu\1/' base.txt > base-gpu.txt \
 && grep -q '^onnxruntime-gpu' base-gpu.txt \
 && rm pyproject.toml

# ---------------------------------------------------------------------------------------------
# Builder: TensorFlow + Keras 3 + tf2onnx. Builds the wheel, trains and exports the baked model.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES="" \
    PATH=/opt/train/bin:$PATH
COPY --from=requirements /requirements/ /requirements/
# dependencies first, in a layer of their own: a code change does not reinstall TensorFlow
RUN python3 -m venv /opt/train \
 && pip install -r /requirements/base.txt -r /requirements/train.txt "setuptools>=68" wheel
WORKDIR /src
# The whole (filtered, see .dockerignore) context: the packages, and any .npz / .keras a build
# argument below names.
COPY . ./
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && pip install --no-deps /wheels/*.whl

# What the image serves: /models/<MODEL_NAME>/1/model.onnx, made by
#   lc2d train --dataset <TRAIN_DATASET> ... && lc2d export ...  (TRAIN_DATASET: digits or a .npz)
# or, when KERAS_MODEL names a .keras file in the build context, by exporting that file.
ARG MODEL_NAME=digits
ARG TRAIN_DATASET=digits
ARG TRAIN_EPOCHS=30
ARG TRAIN_SEED=0
ARG KERAS_MODEL=
ARG EXPORT_ARGS=
RUN set -eu; \
    keras_file="${KERAS_MODEL:-/tmp/train/${MODEL_NAME}.keras}"; \
    if [ -z "${KERAS_MODEL}" ]; then \
        lc2d train --dataset "${TRAIN_DATASET}" --epochs "${TRAIN_EPOCHS}" --seed "${TRAIN_SEED}" \
            --out "$keras_file" --report "/models/${MODEL_NAME}/1/train-report.json"; \
    fi; \
    lc2d export "$keras_file" -o "/models/${MODEL_NAME}/1/model.onnx" \
        --report "/models/${MODEL_NAME}/1/export-report.json" ${EXPORT_ARGS}; \
    rm -rf /tmp/train; \
    ls -lR /models

# ---------------------------------------------------------------------------------------------
# The serving image: python:3.11-slim, or the CUDA runtime base when GPU=1.
FROM ${SERVE_IMAGE:-$PYTHON_IMAGE} AS serve
ARG GPU
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ARG CUDA_MATCH_CHECK="import os, sys; from onnxruntime.capi.build_and_package_info import cuda_version as ort; \
base = os.environ['CUDA_VERSION']; ok = ort.split('.')[0] == base.split('.')[0]; \
sys.exit(0 if ok else f'onnxruntime-gpu is built for CUDA {ort}; CUDA_IMAGE has CUDA {base}: pick a CUDA_IMAGE of the same major')"
# python:3.11-slim has Python and pip; the CUDA base (Ubuntu 24.04) gets Python 3.12 from apt.
# /opt/venv has neither pip nor setuptools: the base's pip installs into it (pip --python).
RUN case "${GPU}" in "" | 1) ;; *) echo "GPU: expected 1 (GPU image) or empty (CPU image), received '${GPU}'" >&2; exit 2;; esac \
 && if ! python3 -c "import venv, pip" 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3 -m venv --without-pip /opt/venv
# base dependencies only, in a layer of their own: onnxruntime (onnxruntime-gpu when GPU=1),
# FastAPI, uvicorn, numpy, pydantic, ... uvloop's extension ships 13 MB of debug sections: they
# are stripped (binutils comes and goes in this layer). Only uvloop's: stripping the libraries
# that auditwheel patched (numpy's OpenBLAS) breaks them. ONNX Runtime's offline tooling
# (transformers, quantization, tools: 9 MB) is not needed to serve, nor are NumPy's test suites
# (17 MB) and the source maps of the offline Swagger UI (6 MB). Byte code is compiled for
# everything else.
COPY --from=requirements /requirements/ /tmp/requirements/
RUN python3 -m pip --python /opt/venv/bin/python install --no-compile -r "/tmp/requirements/base${GPU:+-gpu}.txt" \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
 && find /opt/venv -type f -path '*/site-packages/uvloop/*.so' -exec strip --strip-debug {} + \
 && apt-get purge -y --auto-remove binutils \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
 && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && rm -rf "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" "$site/onnxruntime/tools" \
 && find "$site/numpy" -type d -name tests -prune -exec rm -rf {} + \
 && find "$site" -type f -name '*.js.map' -delete \
 && /opt/venv/bin/python -c "import numpy, onnxruntime, uvloop, httptools, fastapi" \
 && /opt/venv/bin/python -m compileall -q -j 0 -x '/tests?/' /opt/venv/lib \
 && rm -rf /tmp/requirements \
 && if [ -n "${GPU}" ] && [ -n "${CUDA_VERSION:-}" ]; then /opt/venv/bin/python -c "$CUDA_MATCH_CHECK"; fi
RUN groupadd --gid 10001 lc2d \
 && useradd --uid 10001 --gid lc2d --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin lc2d
# the project itself, as a wheel: no source tree, no build tools
COPY --from=builder /wheels/ /tmp/wheels/
RUN python3 -m pip --python /opt/venv/bin/python install --no-deps /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels
# the baked model repository; a volume mounted on /models replaces it
COPY --from=builder /models/ /models/
# only now: until here `python3` is the base's, which has pip
ENV PATH=/opt/venv/bin:$PATH

USER 10001:10001
# HTTP (REST) and gRPC (Open Inference Protocol + grpc.health.v1)
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]
CMD ["lc2d", "serve", "--model-repository", "/models", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "8001"]
