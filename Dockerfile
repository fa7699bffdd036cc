# syntax=docker/dockerfile:1
# nbserve in a container, with TF Serving's conventions (tensorflow/serving's Dockerfile):
#   docker build -t nbserve .
#   docker run -p 8500:8500 -p 8501:8501 -v "$PWD/export:/models/model" nbserve
#   docker run ... -e MODEL_NAME=half_plus_two -v "$PWD/hp2:/models/half_plus_two" nbserve
#   docker run ... -v "$PWD/config:/config" nbserve --model_config_file=/config/models.config
#   docker run ... nbserve --num_workers=4   # 4 serving processes on the same ports (README)
# The server binds 0.0.0.0 inside the container (the container's network is the boundary);
# REST on 8501 (/v1/models/..., /healthz, /readyz), gRPC on 8500.

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODEL_NAME=model \
    MODEL_BASE_PATH=/models

# An unprivileged user that owns nothing but its home; the models are mounted read-only.
RUN groupadd --system --gid 10001 nbserve \
    && useradd --system --uid 10001 --gid nbserve --home-dir /home/nbserve --create-home \
        --shell /usr/sbin/nologin nbserve \
    && mkdir -p "${MODEL_BASE_PATH}" \
    && chown nbserve:nbserve "${MODEL_BASE_PATH}"

WORKDIR /opt/nbserve
COPY pyproject.toml README.md ./
COPY nbserve ./nbserve
RUN pip install --no-cache-dir .

COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/nbserve_entrypoint.sh

USER 10001:10001
WORKDIR /home/nbserve

EXPOSE 8500 8501

# Ready = every configured model has an AVAILABLE version (/readyz answers 503 until then).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('NBSERVE_REST_API_PORT', '8501'), timeout=4)"]

ENTRYPOINT ["/usr/local/bin/nbserve_entrypoint.sh"]
