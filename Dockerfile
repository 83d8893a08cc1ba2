# twingan on the CPU. The default command runs the demo (synthetic faces, a small model, an HTML report) into
# /out; mount a folder there to keep it:
#   docker build -t twingan . && docker run --rm -v "$PWD/twingan-demo:/out" twingan
# Other commands: docker run --rm -p 7860:7860 -v "$PWD/models:/models" twingan \
#   twingan serve /models/model.safetensors --host 0.0.0.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False

# OpenCV and torch load libgomp; the slim image does not have it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The CPU builds of torch and torchvision (the default ones bring gigabytes of CUDA libraries), in their own layer.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch>=2.6" "torchvision>=0.21"

WORKDIR /src
COPY . /src
RUN pip install "/src[web]" && rm -rf /src

WORKDIR /out
EXPOSE 7860
CMD ["twingan", "demo", "--out", "/out", "device=cpu"]
