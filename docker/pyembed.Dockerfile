# The pyembed image: the CLI, worker and embedding server.
FROM python:3.11-slim
# torch is pinned and installed first: an unpinned resolve pulls a CUDA build (~3 GB).
# Point TORCH_INDEX_URL at PyTorch's CPU wheel index to get the small CPU build.
ARG TORCH_INDEX_URL=""
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
WORKDIR /app
RUN pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
COPY pyproject.toml README.md ./
COPY pyembed ./pyembed
COPY sql ./sql
COPY migrations ./migrations
RUN pip install --no-cache-dir ".[embed,onnx,train,serve,report]" && useradd --create-home pyembed
USER pyembed
ENTRYPOINT ["pyembed"]
CMD ["--help"]
