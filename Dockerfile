# obt-eval on a Hugging Face Docker Space (also any Docker host): the web app on port 7860, as user 1000,
# artifacts under /data. Build: docker build -t obt-eval .   Run: docker run -p 7860:7860 -v obt:/data obt-eval
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/user \
    PATH=/home/user/.local/bin:$PATH

# Spaces run containers as uid 1000 (hub-docs spaces-sdks-docker.md)
RUN useradd -m -u 1000 user \
    && mkdir -p /data /home/user/db \
    && chown user:user /data /home/user/db

# CPU torch by default; for a GPU Space build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "torch==2.13.*" --index-url "$TORCH_INDEX"

WORKDIR /home/user/app
COPY --chown=user . .
RUN pip install -e ".[redis]" "gradio[oauth]"

USER user
# Artifacts (corpora, features, units, vocoders, stimuli, studies, job logs) on the persistent volume;
# the live SQLite database on local disk: never on a Storage Bucket mount, which has no file locking
# (reference listening-tests.md §5). Set OBT_EVAL_BACKUP_REPO + the HF_TOKEN secret for snapshots to a
# private dataset; a restarted Space restores the latest snapshot when its local database is missing.
ENV OBT_EVAL_HOME=/data/workspace \
    OBT_EVAL_DB=sqlite:////home/user/db/obt_eval.db \
    GRADIO_SERVER_NAME=0.0.0.0 \
    PORT=7860 \
    HF_HUB_DISABLE_TELEMETRY=1

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz')"
CMD ["python", "app.py"]
