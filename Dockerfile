# The API server image: no torch, since the server never imports it.
FROM python:3.11.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
COPY cli ./cli
COPY migrations ./migrations
# ADAPTERS_HOME (the secret key, upload staging) exists and belongs to the user before a volume is
# mounted there: a new named volume takes the owner of the folder it covers.
RUN pip install --no-cache-dir . && useradd --create-home registry \
  && install -d -o registry -g registry -m 0700 /home/registry/data
USER registry
ENV ADAPTERS_HOME=/home/registry/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
# `serve` applies pending migrations before it starts listening.
CMD ["adapters", "serve", "--host", "0.0.0.0", "--port", "8000"]
