# localhost-ai with the llama-cpp backend and the demo model.
#   docker build -t localhost-ai .
#   docker run -p 8080:8080 -v "$PWD/models:/models" localhost-ai
FROM python:3.11-slim

# llama-cpp-python is built from source: a compiler and cmake are needed once.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY localhost_ai ./localhost_ai
# AVX2 rather than -march=native: llama.cpp's AMX kernels crash on Q4_K weights (README).
# EXTRAS: the package's extras to install; examples/ray builds with "demo,ray".
ARG EXTRAS=demo
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" pip install --no-cache-dir ".[${EXTRAS}]"

# Beyond loopback a key is required: docker run -e API_KEY=... (or -e INSECURE_NO_KEY=true
# for a container nothing else can reach); without either the server says so and exits.
ENV MODELS_PATH=/models \
    ADDRESS=0.0.0.0:8080
VOLUME /models
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz')"
ENTRYPOINT ["localhost-ai", "serve"]
